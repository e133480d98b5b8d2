"""The doctor over a RecordEngine: find damage, propose and apply repairs.

Checks, in order: the engine's own findings (torn tails, malformed lines,
integrity checks — when the engine offers ``diagnose()``), every record
against its schema, the audit chain, every referenced blob, relationships,
manifests, provenance links and context packages, edges' endpoints, events'
profiles, each profile's stored graph against the replay of its events, and
runs left ``running`` with no sign of life.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import orjson

from keepstone.core.audit import RecordAuditLog, Written, missing_rows, row_mismatch
from keepstone.core.base import RecordContext, parse, review_gate, row
from keepstone.core.events import RecordEventLog
from keepstone.core.paging import scan
from keepstone.core.row_models import MODELS
from keepstone.core.runs import RecordRunStore
from keepstone.engine.spi import Cmp, Delete, Op, Put, Table, WriteBatch
from keepstone.engine.tables import (
    ALL_TABLES,
    ARTIFACTS,
    AUDIT,
    EDGES,
    EVENTS,
    LOG_LINES,
    LOG_REFS,
    MANIFESTS,
    NODES,
    PACKAGES,
    PATHS,
    PROFILES,
    RELATIONSHIPS,
    REVISIONS,
    RUNS,
    SNAPSHOTS,
)
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps, format_timestamp, sha256_digest
from keepstone.schemas.artifacts import ArtifactRevision, Relationship
from keepstone.schemas.audit import ApprovalMarker, LifecycleAction, RowMismatch
from keepstone.schemas.diagnostics import DiagnosisReport, Diagnostic
from keepstone.schemas.logs import LogReference
from keepstone.schemas.memory import EdgeRemoved, EventQuery, MemoryEdge, MemoryEvent
from keepstone.schemas.replay import GraphFold
from keepstone.schemas.runs import ErrorInfo, Run, RunManifest, RunSnapshotRecord

Progress = Callable[[str, int], None]
T = TypeVar("T")


def _repair(op: str, target: str, **params: Any) -> LifecycleAction:
    return LifecycleAction(kind="repair", target=target, params={"op": op, **params})


class RecordDoctor:
    """The doctor (see :class:`keepstone.ports.doctor.Doctor`)."""

    def __init__(
        self,
        ctx: RecordContext,
        events: RecordEventLog,
        audit: RecordAuditLog,
        runs: RecordRunStore,
    ) -> None:
        self._ctx = ctx
        self._events = events
        self._audit = audit
        self._runs = runs
        self._unreadable: list[StorageError] = []
        """``corrupt`` refusals met while reading (a workspace file that is a
        link, say): each becomes a finding, and the checks go on without it."""

    async def _rows(self, table: Table) -> AsyncIterator[bytes]:
        """Every row of ``table``, readable or not (the checks report the bad
        ones); a table the engine refuses as ``corrupt`` ends early, noted."""
        try:
            async for raw in scan(self._ctx.engine, table, skip_unreadable=True):
                yield raw
        except StorageError as exc:
            if exc.code != "corrupt":
                raise
            self._unreadable.append(exc)

    async def diagnose(
        self,
        *,
        stale_after: timedelta = timedelta(hours=1),
        verify_blobs: bool = True,
        progress: Progress | None = None,
    ) -> DiagnosisReport:
        found: list[Diagnostic] = []
        checked: dict[str, int] = {}
        self._unreadable = []
        engine_check = getattr(self._ctx.engine, "diagnose", None)
        if engine_check is not None:
            for item in await engine_check():
                found.append(
                    Diagnostic(
                        code=str(item.get("code", "storage_integrity")),
                        severity=item.get("severity", "error"),
                        location=str(item.get("location") or _where(item)),
                        message=str(item.get("message", "")),
                    )
                )
        written: Written = {}
        verdict = await self._readable(self._audit.walk_chain(written), None)
        rows_checkable = verdict is not None and verdict.ok
        if verdict is not None and not verdict.ok:
            found.append(
                Diagnostic(
                    code="broken_audit_chain",
                    severity="error",
                    location=f"audit:{verdict.first_broken_seq}",
                    message=f"audit record {verdict.first_broken_seq}: {verdict.problem}",
                )
            )
        keys: dict[str, set[str]] = {}
        for table in ALL_TABLES:
            n = 0
            keys[table.name] = set()
            model = MODELS.get(table.name)
            async for raw in self._rows(table):
                n += 1
                try:
                    data = orjson.loads(raw)
                    key = table.key_of(data)
                except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                    found.append(
                        Diagnostic(
                            code="malformed_record",
                            severity="error",
                            location=f"{table.name}:?",
                            message=f"a stored {table.name} row is not a JSON record "
                            f"({raw[:60]!r})",
                        )
                    )
                    continue
                keys[table.name].add(key)
                if rows_checkable and table.name != AUDIT.name:
                    mismatch = row_mismatch(table.name, key, raw, written)
                    if mismatch is not None:
                        found.append(_tampered(mismatch))
                if model is None:
                    continue
                try:
                    parse(model, raw, trusted=False)
                except StorageError as exc:
                    code = (
                        "unknown_schema_version"
                        if exc.code == "unsupported_schema"
                        else "malformed_record"
                    )
                    found.append(
                        Diagnostic(
                            code=code,
                            severity="error",
                            location=f"{table.name}:{key}",
                            message=exc.message,
                        )
                    )
            if rows_checkable and table.name != AUDIT.name:
                found += [_tampered(m) for m in missing_rows(table.name, keys[table.name], written)]
            checked[table.name] = n
            if progress is not None:
                progress("doctor records", n)
        found += await self._check_blobs(verify_blobs, checked)
        found += await self._check_references(keys)
        found += await self._check_graphs(keys)
        found += await self._check_stale_runs(stale_after)
        found += self._unreadable_findings(found)
        found.sort(key=lambda d: (d.code, d.location))
        return DiagnosisReport(
            ok=not any(d.severity == "error" for d in found), checked=checked, diagnostics=found
        )

    async def _readable(self, reading: Awaitable[T], default: T) -> T:
        """``reading``'s result, or ``default`` when the engine refuses it as
        ``corrupt`` (noted for :meth:`_unreadable_findings`)."""
        try:
            return await reading
        except StorageError as exc:
            if exc.code != "corrupt":
                raise
            self._unreadable.append(exc)
            return default

    def _unreadable_findings(self, found: list[Diagnostic]) -> list[Diagnostic]:
        """One finding per place a read was refused, unless already reported there."""
        out: list[Diagnostic] = []
        seen = {d.location for d in found}
        for exc in self._unreadable:
            where = str(exc.details.get("file") or "store")
            if where in seen:
                continue
            seen.add(where)
            out.append(
                Diagnostic(
                    code="storage_integrity",
                    severity="error",
                    location=where,
                    message=f"could not be read, so its checks were skipped: {exc.message}",
                )
            )
        return out

    async def _blob_state(self, digest: str, verify: bool) -> str | None:
        engine = self._ctx.engine
        if not verify:
            return None if await engine.blob_size(digest) is not None else "missing_blob"
        data = await engine.blob_get(digest)
        if data is None:
            return "missing_blob"
        return None if sha256_digest(data) == digest else "corrupt_blob"

    async def _check_blobs(self, verify: bool, checked: dict[str, int]) -> list[Diagnostic]:
        found: list[Diagnostic] = []
        seen: dict[str, str | None] = {}

        async def state(digest: str) -> str | None:
            if digest not in seen:  # (unreadable bytes are reported where they are)
                seen[digest] = await self._readable(self._blob_state(digest, verify), None)
            return seen[digest]

        async for raw in self._rows(REVISIONS):
            rev = _maybe(ArtifactRevision, raw)
            if rev is None or rev.purged:
                continue
            problem = await state(rev.digest)
            if problem:
                found.append(
                    Diagnostic(
                        code=problem,
                        severity="error",
                        location=f"revisions:{rev.artifact_id}:{rev.number}",
                        message=f"revision {rev.number} of artifact {rev.artifact_id}: "
                        f"blob {rev.digest} is {problem.split('_')[0]}",
                        repair=_repair(
                            "mark_revision_purged",
                            f"{rev.artifact_id}:{rev.number}",
                            artifact_id=rev.artifact_id,
                            revision=rev.number,
                        ),
                    )
                )
        async for raw in self._rows(SNAPSHOTS):
            snap = _maybe(RunSnapshotRecord, raw)
            if snap is None:
                continue
            for part, digest in sorted(snap.parts.items()):
                problem = await state(digest)
                if problem:
                    found.append(
                        Diagnostic(
                            code=problem,
                            severity="error",
                            location=f"snapshots:{snap.run_id}:{snap.number}",
                            message=f"snapshot {snap.number} of run {snap.run_id}: part "
                            f"{part!r} ({digest}) is {problem.split('_')[0]}",
                        )
                    )
        async for raw in self._rows(LOG_REFS):
            ref = _maybe(LogReference, raw)
            if ref is not None and (problem := await state(ref.digest)):
                found.append(
                    Diagnostic(
                        code=problem,
                        severity="error",
                        location=f"log_refs:{ref.run_id}",
                        message=f"sealed log of run {ref.run_id}: {ref.digest} is "
                        f"{problem.split('_')[0]}",
                    )
                )
        checked["blobs"] = len(seen)
        return found

    async def _check_references(self, keys: dict[str, set[str]]) -> list[Diagnostic]:
        found: list[Diagnostic] = []
        live = set()
        async for raw in self._rows(ARTIFACTS):
            data = _json_or_none(raw)
            if not isinstance(data, dict) or "id" not in data:
                continue
            if data.get("deleted_at") is None:
                live.add(data["id"])
            run_id = data.get("run_id")
            if run_id is not None and run_id not in keys[RUNS.name]:
                found.append(
                    Diagnostic(
                        code="dangling_reference",
                        severity="warning",
                        location=f"artifacts:{data['id']}",
                        message=f"artifact {data['id']} was made by run {run_id}, which is gone",
                    )
                )
        async for raw in self._rows(RELATIONSHIPS):
            rel = _maybe(Relationship, raw)
            if rel is None:
                continue
            for role, end in (("source", rel.source_id), ("target", rel.target_id)):
                if end not in live:
                    found.append(
                        Diagnostic(
                            code="dangling_reference",
                            severity="error",
                            location=f"relationships:{rel.id}",
                            message=f"relationship {rel.id}: {role} {end} is missing or deleted",
                            repair=_repair("unrelate", rel.id, relationship_id=rel.id),
                        )
                    )
                    break
        async for raw in self._rows(MANIFESTS):
            manifest = _maybe(RunManifest, raw)
            if manifest is None:
                continue
            refs = [*((manifest.inputs.artifacts or []) if manifest.inputs else [])]
            for ref in [*refs, *(manifest.outputs or [])]:
                if ref.artifact_id not in keys[ARTIFACTS.name]:
                    found.append(
                        Diagnostic(
                            code="dangling_reference",
                            severity="warning",
                            location=f"manifests:{manifest.run_id}",
                            message=f"manifest of run {manifest.run_id} names artifact "
                            f"{ref.artifact_id}, which is gone",
                        )
                    )
        async for raw in self._rows(PACKAGES):
            data = _json_or_none(raw)
            if not isinstance(data, dict) or "id" not in data:
                continue
            for ref in data.get("references", []):
                table = {
                    "artifact": ARTIFACTS.name,
                    "relationship": RELATIONSHIPS.name,
                    "run": RUNS.name,
                    "external": "externals",
                }.get(ref.get("kind"))
                if table is not None and ref.get("id") not in keys.get(table, set()):
                    found.append(
                        Diagnostic(
                            code="dangling_reference",
                            severity="info",
                            location=f"packages:{data['id']}",
                            message=f"context package {data['id']} refers to {ref.get('kind')} "
                            f"{ref.get('id')}, which is gone (resolve() reports it too)",
                        )
                    )
        return found

    async def _check_graphs(self, keys: dict[str, set[str]]) -> list[Diagnostic]:
        found: list[Diagnostic] = []
        profiles = keys[PROFILES.name]
        async for raw in self._rows(EDGES):
            edge = _maybe(MemoryEdge, raw)
            if edge is None:
                continue
            for end in (edge.source_id, edge.target_id):
                if f"{edge.profile_id}:{end}" not in keys[NODES.name]:
                    found.append(
                        Diagnostic(
                            code="missing_edge_endpoint",
                            severity="error",
                            location=f"edges:{edge.profile_id}:{edge.id}",
                            message=f"edge {edge.id} of profile {edge.profile_id} points at "
                            f"node {end}, which does not exist",
                            repair=_repair(
                                "remove_edge",
                                f"{edge.profile_id}:{edge.id}",
                                profile_id=edge.profile_id,
                                edge_id=edge.id,
                            ),
                        )
                    )
                    break
        orphans: dict[str, int] = {}
        folds: dict[str, GraphFold] = {}
        async for raw in self._rows(EVENTS):
            event = _maybe(MemoryEvent, raw)
            if event is None:
                continue
            if event.profile_id not in profiles:
                orphans[event.profile_id] = orphans.get(event.profile_id, 0) + 1
                continue
            fold = folds.get(event.profile_id)
            if fold is None:
                fold = folds[event.profile_id] = GraphFold(event.profile_id)
            fold.apply(event)
        for profile_id, count in sorted(orphans.items()):
            found.append(
                Diagnostic(
                    code="orphaned_event",
                    severity="warning",
                    location=f"events:profile={profile_id}",
                    message=f"{count} event(s) belong to profile {profile_id}, which does not "
                    "exist",
                )
            )
        for profile_id in sorted(profiles):
            fold = folds.get(profile_id) or GraphFold(profile_id)
            stored = await self._readable(self._stored_graph(profile_id), None)
            if stored is not None and stored != _canonical(fold):
                found.append(
                    Diagnostic(
                        code="graph_differs_from_replay",
                        severity="error",
                        location=f"profiles:{profile_id}",
                        message=f"the stored graph of profile {profile_id} is not the replay "
                        "of its events",
                        repair=_repair("rebuild_graph", profile_id, profile_id=profile_id),
                    )
                )
        return found

    async def _stored_graph(self, profile_id: str) -> bytes:
        engine = self._ctx.engine
        where = {"profile_id": profile_id}
        profile = await engine.get(PROFILES, profile_id)
        parts = {
            "profile": None if profile is None else orjson.loads(profile),
            "nodes": [orjson.loads(r) for r in await engine.find(NODES, where, order=("id",))],
            "edges": [orjson.loads(r) for r in await engine.find(EDGES, where, order=("id",))],
            "paths": [orjson.loads(r) for r in await engine.find(PATHS, where, order=("id",))],
        }
        return dumps(parts)

    async def _check_stale_runs(self, stale_after: timedelta) -> list[Diagnostic]:
        found: list[Diagnostic] = []
        cutoff = self._ctx.now() - stale_after
        async for raw in self._rows(RUNS):
            run = _maybe(Run, raw)
            if run is None or run.status != "running" or run.updated_at >= cutoff:
                continue
            recent = await self._readable(
                self._ctx.engine.find(
                    LOG_LINES,
                    {"run_id": run.id, "seq": Cmp(">", 0)},
                    order=("seq",),
                    desc=True,
                    limit=1,
                ),
                None,
            )
            if recent is None:
                continue
            if recent and orjson.loads(recent[0])["at"] >= format_timestamp(cutoff):
                continue
            found.append(
                Diagnostic(
                    code="stale_run",
                    severity="warning",
                    location=f"runs:{run.id}",
                    message=f"run {run.id} ({run.name}) is running but nothing happened since "
                    f"{format_timestamp(run.updated_at)}",
                    repair=_repair("fail_stale_run", run.id, run_id=run.id),
                )
            )
        return found

    # ------------------------------------------------------------------ repairs

    async def repair(
        self, diagnostics: list[Diagnostic], *, approval: ApprovalMarker | None = None
    ) -> list[dict[str, Any]]:
        todo = [d for d in diagnostics if d.repair is not None]
        if not todo:
            return []
        action = LifecycleAction(
            kind="repair", target="store", params={"repairs": [d.location for d in todo]}
        )
        await review_gate(self._ctx, action, approval, None)
        results = []
        for diagnostic in todo:
            assert diagnostic.repair is not None
            params = diagnostic.repair.params or {}
            results.append(await self._apply(str(params.get("op")), params, diagnostic, approval))
        return results

    async def _apply(
        self,
        op: str,
        params: dict[str, Any],
        diagnostic: Diagnostic,
        approval: ApprovalMarker | None,
    ) -> dict[str, Any]:
        engine = self._ctx.engine
        target = diagnostic.repair.target if diagnostic.repair else diagnostic.location
        ops: list[Op] = []
        if op == "mark_revision_purged":
            raw = await engine.get(REVISIONS, f"{params['artifact_id']}:{params['revision']}")
            if raw is not None:
                rev = parse(ArtifactRevision, raw)
                ops.append(Put(REVISIONS, row(rev.model_copy(update={"purged": True}))))
        elif op == "unrelate":
            ops.append(Delete(RELATIONSHIPS, str(params["relationship_id"])))
        elif op == "remove_edge":
            event = MemoryEvent(
                id=self._ctx.new_id("evt"),
                profile_id=str(params["profile_id"]),
                at=self._ctx.now(),
                actor=self._ctx.who(),
                payload=EdgeRemoved(edge_id=str(params["edge_id"]), reason="doctor repair"),
            )
            await self._events.append_with([event], action="lifecycle.repair", approval=approval)
            return {"location": diagnostic.location, "op": op, "applied": True}
        elif op == "rebuild_graph":
            ops += await self._rebuild_ops(str(params["profile_id"]))
        elif op == "fail_stale_run":
            await self._runs.transition(
                str(params["run_id"]),
                "failed",
                error=ErrorInfo(type="StaleRun", message="marked failed by the doctor"),
            )
            return {"location": diagnostic.location, "op": op, "applied": True}
        else:
            return {"location": diagnostic.location, "op": op, "applied": False}
        batch = WriteBatch(ops)
        self._ctx.audit(
            batch,
            "lifecycle.repair",
            target,
            {"op": op, "code": diagnostic.code},
            approval=approval,
        )
        await self._ctx.apply(batch)
        return {"location": diagnostic.location, "op": op, "applied": True}

    async def _rebuild_ops(self, profile_id: str) -> list[Op]:
        fold = GraphFold(profile_id)
        async for event in self._events.iterate(EventQuery(profile_id=profile_id)):
            fold.apply(event)
        engine = self._ctx.engine
        where = {"profile_id": profile_id}
        ops: list[Op] = []
        for table, records in ((NODES, fold.nodes), (EDGES, fold.edges), (PATHS, fold.paths)):
            for raw in await engine.find(table, where):
                key = orjson.loads(raw)["id"]
                if key not in records:
                    ops.append(Delete(table, f"{profile_id}:{key}"))
            ops += [Put(table, row(records[k])) for k in sorted(records)]
        if fold.profile is not None:
            ops.append(Put(PROFILES, row(fold.profile)))
        return ops


def _json_or_none(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _maybe(model: Any, raw: bytes) -> Any:
    try:
        return parse(model, raw, trusted=False)
    except StorageError:
        return None


def _where(item: dict[str, Any]) -> str:
    file, line = item.get("file"), item.get("line")
    return f"{file}:{line}" if line is not None else str(file or "store")


def _canonical(fold: GraphFold) -> bytes:
    snap = fold.snapshot()
    return dumps(
        {
            "profile": None if snap.profile is None else snap.profile.model_dump(mode="json"),
            "nodes": [n.model_dump(mode="json") for n in snap.nodes],
            "edges": [e.model_dump(mode="json") for e in snap.edges],
            "paths": [p.model_dump(mode="json") for p in snap.paths],
        }
    )


def _tampered(mismatch: RowMismatch) -> Diagnostic:
    by = "no audit record" if mismatch.seq is None else f"audit record {mismatch.seq}"
    return Diagnostic(
        code="tampered_record",
        severity="error",
        location=f"{mismatch.table}:{mismatch.key}",
        message=f"{mismatch.table} {mismatch.key!r} is {mismatch.problem} ({by})",
    )
