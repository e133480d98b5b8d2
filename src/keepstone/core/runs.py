"""RunStore over a RecordEngine: lifecycle, steps, snapshots by content, manifests."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable
from typing import Any

import orjson

from keepstone.core.base import (
    RecordContext,
    build,
    check_id,
    create_once,
    parse,
    review_gate,
    row,
    same_or_conflict,
)
from keepstone.core.blobs import verify_bytes
from keepstone.core.paging import Listing
from keepstone.engine.spi import BlobPut, Check, Cmp, Delete, Put, WriteBatch
from keepstone.engine.tables import ARTIFACTS, LOG_REFS, MANIFESTS, RUNS, SNAPSHOTS
from keepstone.errors import StorageError, not_found
from keepstone.schemas._base import canonical_json, format_timestamp, sha256_digest
from keepstone.schemas.artifacts import ArtifactRef
from keepstone.schemas.audit import ApprovalMarker, LifecycleAction
from keepstone.schemas.common import Page
from keepstone.schemas.runs import (
    RUN_TRANSITIONS,
    STEP_TRANSITIONS,
    TERMINAL_RUN_STATUSES,
    ErrorInfo,
    InputBundle,
    Run,
    RunManifest,
    RunQuery,
    RunSnapshot,
    RunSnapshotRecord,
    RunStatus,
    RunStep,
    StepStatus,
    run_moved,
    run_reopened,
    step_moved,
)

_RETRIES = 8
_INLINE_PART = 4096


class RecordRunStore:
    """Runs (see :class:`keepstone.ports.RunStore`)."""

    def __init__(self, ctx: RecordContext) -> None:
        self._ctx = ctx
        self._last_numbers: dict[str, int] = {}
        """The last snapshot number this store saved per run: the next save
        tries the one after without reading (another writer's snapshot makes
        it a conflict, and the number is read again)."""

    async def create(
        self,
        name: str,
        *,
        params: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        id: str | None = None,
        rerun_of: str | None = None,
        rerun_from_step: str | None = None,
    ) -> Run:
        if rerun_from_step is not None and rerun_of is None:
            raise StorageError("invalid", "rerun_from_step needs rerun_of (the run re-run)", {})
        now = self._ctx.now()
        run_id = self._ctx.new_id("run", id)
        run = build(
            Run,
            "run",
            id=run_id,
            name=name,
            params=params,
            labels=labels,
            created_at=now,
            updated_at=now,
            rerun_of=rerun_of,
            rerun_from_step=rerun_from_step,
        )

        async def write() -> Run:
            ops: list[Check | Put] = [Put(RUNS, row(run), expect="absent")]
            if run.rerun_of is not None:
                ops.insert(0, _rerun_origin_check(run.rerun_of))
            batch = WriteBatch(list(ops))
            self._ctx.audit(batch, "run.create", run_id, _create_details(run))
            await self._ctx.apply(batch)
            return run

        async def stored() -> Run | None:
            existing = await self._ctx.load_optional(Run, RUNS, run_id)
            if existing is None:
                return None
            keys = ("name", "params", "labels", "rerun_of", "rerun_from_step")
            return same_or_conflict(existing, run, keys, "run", run_id)

        return await create_once(id, write, stored)

    async def get(self, run_id: str) -> Run:
        return await self._ctx.load(Run, RUNS, check_id(run_id, "run"), "run")

    async def list(
        self, query: RunQuery | None = None, *, cursor: str | None = None, limit: int = 100
    ) -> Page[Run]:
        q = query or RunQuery()
        where: dict[str, Any] = {}
        if q.name is not None:
            where["name"] = q.name
        if q.status is not None:
            where["status"] = q.status
        bounds = []
        if q.created_after is not None:
            bounds.append(Cmp(">", format_timestamp(q.created_after)))
        if q.created_before is not None:
            bounds.append(Cmp("<", format_timestamp(q.created_before)))
        if bounds:
            where["created_at"] = tuple(bounds)
        return await self._ctx.page(
            Run,
            RUNS,
            where=where,
            order=("created_at",),
            cursor=cursor,
            limit=limit,
            tags=q.labels or None,
            listing=Listing("runs.list", q),
        )

    async def transition(
        self,
        run_id: str,
        status: RunStatus,
        *,
        error: ErrorInfo | None = None,
        expected_revision: int | None = None,
    ) -> Run:
        if status not in RUN_TRANSITIONS:
            raise StorageError(
                "invalid", f"unknown run status {status!r}", {"allowed": sorted(RUN_TRANSITIONS)}
            )

        def change(run: Run, now: Any) -> dict[str, Any]:
            return run_moved(run, status, error, now)

        return await self._update(
            run_id, change, expected_revision, "run.transition", {"status": status}
        )

    async def reopen(self, run_id: str, *, expected_revision: int | None = None) -> Run:
        details: dict[str, Any] = {}

        def change(run: Run, now: Any) -> dict[str, Any]:
            update = run_reopened(run, now)
            details.update({"from": run.status, "attempt": update["history"][-1].number})
            return update

        # The run's log stream, sealed when the attempt ended, opens again.
        reopen_log = [Delete(LOG_REFS, run_id)]
        return await self._update(
            run_id, change, expected_revision, "run.reopen", details, extra=reopen_log
        )

    async def set_step(
        self,
        run_id: str,
        step: str,
        status: StepStatus,
        *,
        error: ErrorInfo | None = None,
        expected_revision: int | None = None,
    ) -> Run:
        if status not in STEP_TRANSITIONS:
            raise StorageError(
                "invalid", f"unknown step status {status!r}", {"allowed": sorted(STEP_TRANSITIONS)}
            )

        current = await self.get(run_id)
        same = current.step(step)
        if (
            same is not None
            and same.status == status != "running"
            and same.error == error
            and expected_revision in (None, current.revision)
        ):
            return current  # already so: setting it again changes nothing

        def change(run: Run, now: Any) -> dict[str, Any]:
            if run.status in ("succeeded", "failed", "cancelled"):
                raise StorageError(
                    "conflict",
                    f"run {run.id} has ended ({run.status}); its steps cannot change",
                    {"run": run.id, "status": run.status},
                )
            steps = list(run.steps)
            index = next((i for i, s in enumerate(steps) if s.name == step), None)
            old = steps[index] if index is not None else build(RunStep, "step", name=step)
            new = step_moved(run.id, old, status, error, now)
            if index is None:
                steps.append(new)
            else:
                steps[index] = new
            return {"steps": steps}

        return await self._update(
            run_id, change, expected_revision, "run.step", {"step": step, "status": status}
        )

    async def _update(
        self,
        run_id: str,
        change: Callable[[Run, Any], dict[str, Any]],
        expected_revision: int | None,
        action: str,
        details: dict[str, Any],
        extra: builtins.list[Delete] | None = None,
    ) -> Run:
        check_id(run_id, "run")
        for _ in range(_RETRIES):
            run = await self.get(run_id)
            if expected_revision is not None and run.revision != expected_revision:
                raise _revision_conflict(run, expected_revision)
            now = self._ctx.now()
            update = change(run, now)
            new = build(
                Run,
                "run",
                **{
                    **run.model_dump(),
                    **update,
                    "updated_at": now,
                    "revision": run.revision + 1,
                },
            )
            batch = WriteBatch(
                [
                    Check(
                        RUNS,
                        run_id,
                        "conflict",
                        f"run {run_id} changed concurrently",
                        equals={"revision": run.revision},
                        details={"run": run_id, "retry": True},
                    ),
                    Put(RUNS, row(new)),
                    *(extra or []),
                ]
            )
            self._ctx.audit(batch, action, run_id, {**details, "revision": new.revision})
            try:
                await self._ctx.apply(batch)
            except StorageError as exc:
                if exc.details.get("retry") and expected_revision is None:
                    continue
                if exc.details.get("retry"):
                    raise _revision_conflict(await self.get(run_id), expected_revision) from exc
                raise
            return new
        raise StorageError("conflict", f"run {run_id} is changing too fast to update", {})

    # ------------------------------------------------------------------ snapshots

    async def save_snapshot(
        self,
        run_id: str,
        state: dict[str, Any],
        *,
        step: str | None = None,
        number: int | None = None,
    ) -> RunSnapshot:
        run_id = check_id(run_id, "run")
        if not isinstance(state, dict):
            raise StorageError("invalid", "a snapshot state must be a JSON object (a dict)")
        if number is not None and (
            not isinstance(number, int) or isinstance(number, bool) or number < 1
        ):
            raise StorageError(
                "invalid", "a snapshot number is an integer >= 1", {"number": repr(number)}
            )
        whole = canonical_json(state)
        parts: dict[str, str] = {}
        encoded: dict[str, bytes] = {}
        for key, value in state.items():
            data = canonical_json(value)
            parts[key] = sha256_digest(data)
            encoded[parts[key]] = data
        # Large parts that are already stored are not sent again (asked together).
        large = [d for d, data in encoded.items() if len(data) > _INLINE_PART]
        sizes = await asyncio.gather(*(self._ctx.engine.blob_size(d) for d in large))
        stored = {d for d, size in zip(large, sizes, strict=True) if size is not None}
        blob_ops = [BlobPut(d, data) for d, data in encoded.items() if d not in stored]
        exists = Check(
            RUNS, run_id, "not_found", f"run {run_id!r} does not exist", details={"run": run_id}
        )
        for attempt in range(_RETRIES):
            chosen = number or await self._next_number(run_id, reread=attempt > 0)
            record = build(
                RunSnapshotRecord,
                "snapshot",
                run_id=run_id,
                number=chosen,
                step=step,
                created_at=self._ctx.now(),
                digest=sha256_digest(whole),
                size=len(whole),
                parts=parts,
            )
            batch = WriteBatch([exists, *blob_ops, Put(SNAPSHOTS, row(record), expect="absent")])
            self._ctx.audit(batch, "run.snapshot", run_id, {"number": chosen})
            try:
                await self._ctx.apply(batch)
            except StorageError as exc:
                if exc.code == "conflict" and number is None:
                    continue
                if exc.code == "conflict":
                    raise StorageError(
                        "conflict",
                        f"snapshot {number} of run {run_id} already exists",
                        {"run": run_id, "number": number},
                    ) from exc
                raise
            self._last_numbers[run_id] = max(chosen, self._last_numbers.get(run_id, 0))
            return RunSnapshot(
                run_id=run_id,
                number=chosen,
                step=step,
                created_at=record.created_at,
                digest=record.digest,
                size=record.size,
                state=orjson.loads(whole),
            )
        raise StorageError("conflict", f"run {run_id} is snapshotting too fast", {})

    async def _next_number(self, run_id: str, *, reread: bool) -> int:
        known = None if reread else self._last_numbers.get(run_id)
        if known is None:
            last = await self._ctx.engine.find(
                SNAPSHOTS, {"run_id": run_id}, order=("number",), desc=True, limit=1
            )
            known = 0 if not last else int(orjson.loads(last[0])["number"])
            self._last_numbers[run_id] = known
        return known + 1

    async def latest_snapshot(self, run_id: str) -> RunSnapshot | None:
        run_id = check_id(run_id, "run")
        last = await self._ctx.engine.find(
            SNAPSHOTS, {"run_id": run_id}, order=("number",), desc=True, limit=1
        )
        if not last:
            await self.get(run_id)  # not_found for an unknown run
            return None
        return await self._materialise(parse(RunSnapshotRecord, last[0]))

    async def get_snapshot(self, run_id: str, number: int) -> RunSnapshot:
        run = await self.get(run_id)
        raw = await self._ctx.engine.get(SNAPSHOTS, f"{run.id}:{number}")
        if raw is None:
            raise not_found("snapshot", f"{run.id}#{number}", run=run.id, number=number)
        return await self._materialise(parse(RunSnapshotRecord, raw))

    async def list_snapshots(
        self, run_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[RunSnapshotRecord]:
        run = await self.get(run_id)
        return await self._ctx.page(
            RunSnapshotRecord,
            SNAPSHOTS,
            where={"run_id": run.id},
            order=("number",),
            cursor=cursor,
            limit=limit,
            listing=Listing("runs.list_snapshots", run.id),
        )

    async def _materialise(self, record: RunSnapshotRecord) -> RunSnapshot:
        state: dict[str, Any] = {}
        found = await self._ctx.engine.blob_get_many(list(record.parts.values()))
        for key, digest in record.parts.items():
            data = found.get(digest)
            if data is None:
                raise StorageError(
                    "corrupt",
                    f"snapshot {record.number} of run {record.run_id} lost part {key!r}",
                    {"run": record.run_id, "number": record.number, "part": key},
                )
            state[key] = orjson.loads(verify_bytes(digest, data))
        return RunSnapshot(
            run_id=record.run_id,
            number=record.number,
            step=record.step,
            created_at=record.created_at,
            digest=record.digest,
            size=record.size,
            state=state,
        )

    async def prune_snapshots(
        self,
        run_id: str,
        numbers: builtins.list[int],
        *,
        approval: ApprovalMarker | None = None,
    ) -> int:
        run = await self.get(run_id)
        wanted = sorted(set(numbers))
        action = LifecycleAction(
            kind="apply_retention", target=run.id, params={"snapshots": wanted}
        )
        await review_gate(self._ctx, action, approval, None)
        last = await self._ctx.engine.find(
            SNAPSHOTS, {"run_id": run.id}, order=("number",), desc=True, limit=1
        )
        latest = int(orjson.loads(last[0])["number"]) if last else None
        if run.status not in TERMINAL_RUN_STATUSES and latest in wanted:
            raise StorageError(
                "conflict",
                f"snapshot {latest} is the resume point of unfinished run {run.id}",
                {"run": run.id, "number": latest, "status": run.status},
            )
        keys = [f"{run.id}:{n}" for n in wanted]
        found = await self._ctx.engine.get_many(SNAPSHOTS, keys)
        if not found:
            return 0
        batch = WriteBatch([Delete(SNAPSHOTS, key) for key in sorted(found)])
        self._ctx.audit(
            batch,
            "lifecycle.apply_retention",
            run.id,
            {"snapshots": sorted(int(k.rsplit(":", 1)[1]) for k in found)},
            approval=approval,
        )
        await self._ctx.apply(batch)
        # Parts are shared by content across snapshots; unreferenced ones are
        # reclaimed by the blob garbage collector, not here.
        return len(found)

    # ------------------------------------------------------------------ manifests

    async def put_manifest(
        self,
        run_id: str,
        *,
        inputs: InputBundle | None = None,
        outputs: builtins.list[ArtifactRef] | None = None,
        diagnostics: builtins.list[dict[str, Any]] | None = None,
    ) -> RunManifest:
        run = await self.get(run_id)
        old = await self.get_manifest(run.id)
        now = self._ctx.now()
        manifest = build(
            RunManifest,
            "manifest",
            run_id=run.id,
            inputs=inputs,
            outputs=outputs,
            diagnostics=diagnostics,
            created_at=old.created_at if old else now,
            updated_at=now,
            started_at=run.started_at,
            ended_at=run.ended_at,
        )
        refs = [
            *((manifest.inputs.artifacts or []) if manifest.inputs else []),
            *(manifest.outputs or []),
        ]
        checks = [
            Check(
                ARTIFACTS,
                ref.artifact_id,
                "integrity",
                f"manifest of run {run.id} names artifact {ref.artifact_id}, which does not exist",
                details={"artifact": ref.artifact_id},
            )
            for ref in refs
        ]
        batch = WriteBatch([*checks, Put(MANIFESTS, row(manifest))])
        self._ctx.audit(batch, "run.manifest", run.id)
        await self._ctx.apply(batch)
        return manifest

    async def get_manifest(self, run_id: str) -> RunManifest | None:
        run = await self.get(run_id)
        return await self._ctx.load_optional(RunManifest, MANIFESTS, run.id)


def _revision_conflict(run: Run, expected: int | None) -> StorageError:
    return StorageError(
        "conflict",
        f"run {run.id} is at revision {run.revision}, not {expected}",
        {"run": run.id, "expected_revision": expected, "revision": run.revision},
    )


def _rerun_origin_check(origin: str) -> Check:
    return Check(
        RUNS,
        origin,
        "integrity",
        f"run {origin}, which this run re-runs, does not exist",
        details={"rerun_of": origin},
    )


def _create_details(run: Run) -> dict[str, Any]:
    details: dict[str, Any] = {"name": run.name}
    if run.rerun_of is not None:
        details.update(rerun_of=run.rerun_of, rerun_from_step=run.rerun_from_step)
    return details
