"""SnapshotStore over a RecordEngine: streaming export, verified all-or-nothing import.

The archive layout and its checks are in :mod:`keepstone.core.archive`; this
module pages rows and blobs out of the engine, and restores them in batches.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from keepstone.core import archive
from keepstone.core.base import RecordContext, parse
from keepstone.core.events import RecordEventLog
from keepstone.core.paging import PAGE, natural_order, scan_blobs, scan_pages
from keepstone.engine.spi import BlobPut, Delete, Op, Restore, SetCounter, Table, WriteBatch
from keepstone.engine.tables import ALL_TABLES, EDGES, NODES, PATHS, PROFILES
from keepstone.errors import StorageError
from keepstone.ports.snapshots import Progress
from keepstone.schemas._base import SCHEMA_VERSION
from keepstone.schemas.memory import (
    EdgePut,
    MemoryEdge,
    MemoryEvent,
    MemoryNode,
    MemoryPath,
    NodePut,
    PathAbandoned,
    PathCompacted,
    PathCreated,
    PathMerged,
    Profile,
    ProfileCreated,
)
from keepstone.schemas.snapshot import (
    GRAPH_FORMAT,
    GraphEnvelope,
    SnapshotManifest,
    SnapshotPart,
)
from keepstone.version import __version__

BATCH_ROWS = 2000
"""Rows per restore batch on import."""
BATCH_BLOB_BYTES = 32 << 20
"""Bytes of blobs per restore batch on import; a larger blob is streamed alone."""
EXPORT_ATTEMPTS = 3
"""Exports tried before giving up on a store that keeps being written."""


class RecordSnapshots:
    """Snapshots (see :class:`keepstone.ports.snapshots.SnapshotStore`)."""

    def __init__(self, ctx: RecordContext, events: RecordEventLog) -> None:
        self._ctx = ctx
        self._events = events

    # ------------------------------------------------------------------ export

    async def export_to(
        self,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        created_at: datetime | None = None,
    ) -> SnapshotManifest:
        target = Path(dest)
        await asyncio.to_thread(archive.check_destination, target)
        if target.suffix != ".tar":
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        for _ in range(EXPORT_ATTEMPTS):
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".ks-export-") as tmp:
                root = Path(tmp) / "snapshot"
                before = await self._counters()
                manifest = await self._export_dir(root, progress, created_at)
                if manifest.counters != before:
                    continue  # written meanwhile: the parts may not agree with each other
                if target.suffix == ".tar":
                    await asyncio.to_thread(archive.write_tar, root, target, manifest)
                else:
                    await asyncio.to_thread(archive.place_dir, root, target)
                return manifest
        raise StorageError(
            "conflict",
            f"the store was written to during each of {EXPORT_ATTEMPTS} attempts to export "
            "it, so no snapshot would be consistent; export when writers pause",
            {"attempts": EXPORT_ATTEMPTS},
        )

    async def _counters(self) -> dict[str, int]:
        engine = self._ctx.engine
        return {t.name: await engine.last_seq(t) for t in archive.SEQ_TABLES}

    async def _export_dir(
        self, root: Path, progress: Progress | None, created_at: datetime | None
    ) -> SnapshotManifest:
        engine = self._ctx.engine
        await asyncio.to_thread(archive.make_dirs, root)
        parts = [
            await archive.write_part(root, table, scan_pages(engine, table), progress)
            for table in ALL_TABLES
        ]
        blobs = 0
        async for info in scan_blobs(engine):
            chunks = engine.blob_stream(info.digest, archive.CHUNK)
            await archive.write_blob(root, info.digest, chunks)
            blobs += 1
            if progress is not None:
                progress("export blobs", blobs)
        manifest = SnapshotManifest(
            keepstone_version=__version__,
            created_at=created_at or self._ctx.now(),
            counts={
                table.name: part.records for table, part in zip(ALL_TABLES, parts, strict=True)
            },
            parts=parts,
            blobs=blobs,
            counters=await self._counters(),
        )
        await asyncio.to_thread(archive.write_manifest, root, manifest)
        return manifest

    # ------------------------------------------------------------------ import

    async def import_from(
        self, source: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> SnapshotManifest:
        src = Path(source)
        kind = await asyncio.to_thread(archive.kind_of, src)
        if kind is None:
            raise StorageError("not_found", f"no snapshot at {src}", {"path": str(src)})
        if kind == "other":
            raise StorageError(
                "invalid",
                f"{src} is neither a snapshot directory nor a .tar file",
                {"path": str(src)},
            )
        await self._require_empty()
        if kind == "file":
            with tempfile.TemporaryDirectory(prefix=".ks-import-") as tmp:
                root = await asyncio.to_thread(
                    archive.extract_tar, src, Path(tmp), self._ctx.limits
                )
                return await self._import_dir(root, progress)
        return await self._import_dir(src, progress)

    async def _import_dir(self, root: Path, progress: Progress | None) -> SnapshotManifest:
        limits = self._ctx.limits
        tree = await asyncio.to_thread(archive.check_tree, root, limits)
        manifest = await asyncio.to_thread(archive.read_manifest, root)
        verified = await asyncio.to_thread(archive.verify, root, manifest, tree, limits, progress)
        await self._require_empty()
        try:
            await self._write_blobs(root, verified.blobs, progress)
            parts = {p.path: p for p in manifest.parts}
            for table in ALL_TABLES:
                await self._write_table(root, table, parts[archive.part_path(table)], progress)
            ops: list[Op] = [
                SetCounter(table, *verified.counters[table.name]) for table in archive.SEQ_TABLES
            ]
            await self._ctx.apply(WriteBatch(ops))
        except BaseException as exc:
            try:
                await self._undo()
            except Exception as undo_error:
                exc.add_note(
                    f"undoing the import failed too ({undo_error!r}): the store holds part "
                    "of the snapshot; delete it and import into a new store"
                )
            raise
        return manifest

    async def _require_empty(self) -> None:
        engine = self._ctx.engine
        for table in ALL_TABLES:
            if await engine.count(table) > 0:
                raise StorageError(
                    "conflict",
                    f"the target store is not empty ({table.name} has rows); "
                    "import into a new store",
                    {"table": table.name},
                )
        if await engine.blob_list(None, 1):
            raise StorageError(
                "conflict", "the target store is not empty (it holds blobs)", {"table": "blobs"}
            )
        for table in archive.SEQ_TABLES:
            if await engine.last_seq(table) > 0:
                raise StorageError(
                    "conflict",
                    f"the target store is not new (its {table.name} counter has moved); "
                    "import into a new store",
                    {"table": table.name},
                )

    async def _write_blobs(self, root: Path, names: list[str], progress: Progress | None) -> None:
        pending: list[Op] = []
        size = 0
        for done, name in enumerate(names, start=1):
            path, label = archive.blob_path(root, name), f"blobs/{name}"
            data_size = (await asyncio.to_thread(path.stat)).st_size
            if data_size > BATCH_BLOB_BYTES:
                info = await self._ctx.engine.blob_put_stream(archive.file_chunks(path, label))
                if info.digest != "sha256:" + name:
                    raise archive.changed(label)
            else:
                data = await asyncio.to_thread(archive.read_blob, path, label)
                if hashlib.sha256(data).hexdigest() != name:
                    raise archive.changed(label)
                pending.append(BlobPut("sha256:" + name, data))
                size += len(data)
            if size > BATCH_BLOB_BYTES or len(pending) >= 512:
                await self._ctx.apply(WriteBatch(list(pending)))
                pending, size = [], 0
            if progress is not None:
                progress("import blobs", done)
        if pending:
            await self._ctx.apply(WriteBatch(pending))

    async def _write_table(
        self, root: Path, table: Table, part: SnapshotPart, progress: Progress | None
    ) -> None:
        """Restore a part's rows in batches, hashing them again as they are read:
        a part that changed since it was verified is ``corrupt`` (and undone)."""
        hasher = hashlib.sha256()
        batch: list[Op] = []
        done = 0
        for fields, line in archive.part_rows(root, table):
            hasher.update(line)
            batch.append(Restore(table, fields))
            if len(batch) >= BATCH_ROWS:
                await self._ctx.apply(WriteBatch(list(batch)))
                done += len(batch)
                batch = []
                if progress is not None:
                    progress(f"import {table.name}", done)
        if "sha256:" + hasher.hexdigest() != part.digest:
            raise archive.changed(part.path)
        if batch:
            await self._ctx.apply(WriteBatch(batch))
            done += len(batch)
        if progress is not None:
            progress(f"import {table.name}", done)

    async def _undo(self) -> None:
        """Undo a failed import: the store was new before it began, so every
        row, every blob and every counter goes (the audit head back to genesis)."""
        engine = self._ctx.engine
        for table in ALL_TABLES:
            while rows := await engine.find(table, order=natural_order(table), limit=PAGE):
                keys = [table.key_of(orjson.loads(r)) for r in rows]
                await engine.apply(WriteBatch([Delete(table, k) for k in keys]))
        await engine.apply(WriteBatch([SetCounter(t, 0) for t in archive.SEQ_TABLES]))
        while infos := await engine.blob_list(None, 1000):
            for info in infos:
                await engine.blob_delete(info.digest)

    # ------------------------------------------------------------------ graph envelopes

    async def export_graph(self, profile_id: str) -> GraphEnvelope:
        engine = self._ctx.engine
        raw = await engine.get(PROFILES, profile_id)
        if raw is None:
            raise StorageError(
                "not_found", f"profile {profile_id!r} does not exist", {"profile": profile_id}
            )
        where = {"profile_id": profile_id}
        return GraphEnvelope(
            exported_at=self._ctx.now(),
            profile=parse(Profile, raw),
            nodes=[parse(MemoryNode, r) for r in await engine.find(NODES, where, order=("id",))],
            edges=[parse(MemoryEdge, r) for r in await engine.find(EDGES, where, order=("id",))],
            paths=[parse(MemoryPath, r) for r in await engine.find(PATHS, where, order=("id",))],
        )

    async def import_graph(self, envelope: GraphEnvelope) -> Profile:
        if not isinstance(envelope, GraphEnvelope):
            envelope = _validated(GraphEnvelope, envelope, "graph envelope")
        if envelope.format != GRAPH_FORMAT:
            raise StorageError("invalid", f"not a graph envelope: format {envelope.format!r}", {})
        if envelope.schema_version > SCHEMA_VERSION:
            raise StorageError(
                "unsupported_schema",
                f"the envelope has schema version {envelope.schema_version}; this keepstone "
                f"reads up to {SCHEMA_VERSION}",
                {"schema_version": envelope.schema_version},
            )
        prof = envelope.profile
        node_ids = {n.id for n in envelope.nodes}
        for edge in envelope.edges:
            for end in (edge.source_id, edge.target_id):
                if end not in node_ids:
                    raise StorageError(
                        "integrity",
                        f"edge {edge.id} refers to node {end}, which the envelope lacks",
                        {"edge": edge.id, "node": end},
                    )
        events = [
            self._ev(
                prof.id,
                None,
                prof.created_at,
                ProfileCreated(name=prof.name, attributes=prof.attributes, policy=prof.policy),
            )
        ]
        for path in _parents_first(envelope.paths):
            created = PathCreated(
                path_id=path.id,
                name=path.name,
                parent_path_id=path.parent_path_id,
                fork_seq=path.fork_seq,
            )
            events.append(self._ev(prof.id, path.parent_path_id, path.created_at, created))
        for node in envelope.nodes:
            put = NodePut(
                node_id=node.id,
                node_kind=node.kind,
                content=node.content,
                attributes=node.attributes,
            )
            events.append(self._ev(prof.id, None, node.created_at, put))
            if node.updated_at != node.created_at:
                events.append(self._ev(prof.id, None, node.updated_at, put))
        for edge in envelope.edges:
            events.append(
                self._ev(
                    prof.id,
                    None,
                    edge.created_at,
                    EdgePut(
                        edge_id=edge.id,
                        source_id=edge.source_id,
                        target_id=edge.target_id,
                        edge_kind=edge.kind,
                        attributes=edge.attributes,
                    ),
                )
            )
        for path in envelope.paths:
            if path.compacted_through_seq is not None:
                compacted = PathCompacted(
                    path_id=path.id,
                    from_seq=1,
                    through_seq=path.compacted_through_seq,
                    summary="(imported)",
                )
                events.append(self._ev(prof.id, path.id, path.updated_at, compacted))
            if path.status == "merged" and path.merged_into is not None:
                merged = PathMerged(
                    path_id=path.id, into_path_id=path.merged_into, at_seq=path.merged_at_seq
                )
                events.append(self._ev(prof.id, path.merged_into, path.updated_at, merged))
            elif path.status == "abandoned":
                abandoned = PathAbandoned(path_id=path.id, reason=path.abandoned_reason or "")
                events.append(self._ev(prof.id, path.id, path.updated_at, abandoned))
        await self._events.append_with(events, action="memory.import_graph")
        return parse(Profile, await self._ctx.engine.get(PROFILES, prof.id) or b"{}")

    def _ev(self, profile_id: str, path_id: str | None, at: Any, payload: Any) -> MemoryEvent:
        return MemoryEvent(
            id=self._ctx.new_id("evt"),
            profile_id=profile_id,
            path_id=path_id,
            at=at,
            actor=self._ctx.who(),
            payload=payload,
        )


def _parents_first(paths: list[MemoryPath]) -> list[MemoryPath]:
    by_id = {p.id: p for p in paths}
    done: set[str] = set()
    out: list[MemoryPath] = []

    def visit(path: MemoryPath, depth: int) -> None:
        if path.id in done or depth > 256:
            return
        parent = by_id.get(path.parent_path_id or "")
        if parent is not None:
            visit(parent, depth + 1)
        done.add(path.id)
        out.append(path)

    for path in paths:
        visit(path, 0)
    return out


def _validated(model: type[BaseModel], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise StorageError("invalid", f"invalid {what}: {exc.errors()[0]['msg']}", {}) from exc
