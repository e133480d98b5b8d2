"""SnapshotStore over a RecordEngine: streaming export, verified all-or-nothing import."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from keepstone.core.base import RecordContext, parse
from keepstone.core.events import RecordEventLog
from keepstone.engine.spi import BlobPut, Delete, Op, Restore, Table, WriteBatch
from keepstone.engine.tables import (
    ACTIVATIONS,
    ALL_TABLES,
    ARTIFACTS,
    AUDIT,
    CHANGES,
    COLLECTIONS,
    EDGES,
    EVENTS,
    EXTERNALS,
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
from keepstone.ports.snapshots import Progress
from keepstone.schemas._base import SCHEMA_VERSION, dumps
from keepstone.schemas.artifacts import (
    Artifact,
    ArtifactRevision,
    ChangeRecord,
    Collection,
    Relationship,
)
from keepstone.schemas.audit import AuditRecord
from keepstone.schemas.context import ContextPackage, ExternalMemoryRef
from keepstone.schemas.logs import LogLine, LogReference
from keepstone.schemas.memory import (
    ActivationPlan,
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
from keepstone.schemas.runs import Run, RunManifest, RunSnapshotRecord
from keepstone.schemas.snapshot import (
    GRAPH_FORMAT,
    SNAPSHOT_FORMAT,
    GraphEnvelope,
    SnapshotManifest,
    SnapshotPart,
)

PAGE = 5000
BATCH_ROWS = 2000
BATCH_BLOB_BYTES = 32 << 20

MODELS: dict[str, type[BaseModel]] = {
    RUNS.name: Run,
    SNAPSHOTS.name: RunSnapshotRecord,
    MANIFESTS.name: RunManifest,
    COLLECTIONS.name: Collection,
    ARTIFACTS.name: Artifact,
    REVISIONS.name: ArtifactRevision,
    RELATIONSHIPS.name: Relationship,
    CHANGES.name: ChangeRecord,
    LOG_LINES.name: LogLine,
    LOG_REFS.name: LogReference,
    EVENTS.name: MemoryEvent,
    PROFILES.name: Profile,
    NODES.name: MemoryNode,
    EDGES.name: MemoryEdge,
    PATHS.name: MemoryPath,
    ACTIVATIONS.name: ActivationPlan,
    AUDIT.name: AuditRecord,
    EXTERNALS.name: ExternalMemoryRef,
    PACKAGES.name: ContextPackage,
}
"""Tables whose rows are validated against a model on import (the others are
keepstone's own index rows)."""


def _order(table: Table) -> tuple[str, ...]:
    return ("seq",) if table.seq else ()


def _corrupt(message: str, **details: Any) -> StorageError:
    return StorageError("corrupt", f"the snapshot is damaged: {message}", details)


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
        if target.suffix == ".tar":
            if await asyncio.to_thread(target.exists):
                raise StorageError(
                    "conflict", f"{target} already exists; choose a new file", {"path": str(target)}
                )
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".ks-export-") as tmp:
                manifest = await self._export_dir(Path(tmp) / "snapshot", progress, created_at)
                await asyncio.to_thread(_write_tar, Path(tmp) / "snapshot", target, manifest)
            return manifest
        if await asyncio.to_thread(_occupied, target):
            raise StorageError(
                "conflict",
                f"{target} exists and is not an empty directory",
                {"path": str(target)},
            )
        return await self._export_dir(target, progress, created_at)

    async def _export_dir(
        self, root: Path, progress: Progress | None, created_at: datetime | None
    ) -> SnapshotManifest:
        engine = self._ctx.engine
        await asyncio.to_thread(_make_dirs, root)
        parts: list[SnapshotPart] = []
        counts: dict[str, int] = {}
        for table in ALL_TABLES:
            rel = f"records/{table.name}.jsonl"
            hasher = hashlib.sha256()
            size = n = 0
            with open(root / rel, "wb") as out:  # noqa: ASYNC230 - writes go to a thread
                after: tuple[Any, ...] | None = None
                while True:
                    rows = await engine.find(table, order=_order(table), after=after, limit=PAGE)
                    chunk = b"".join(raw + b"\n" for raw in rows)
                    hasher.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(out.write, chunk)
                    n += len(rows)
                    if progress is not None and rows:
                        progress(f"export {table.name}", n)
                    if len(rows) < PAGE:
                        break
                    last = orjson.loads(rows[-1])
                    after = (*(Table.value(last, c) for c in _order(table)), table.key_of(last))
                await asyncio.to_thread(_sync, out)
            counts[table.name] = n
            parts.append(
                SnapshotPart(path=rel, records=n, bytes=size, digest="sha256:" + hasher.hexdigest())
            )
        blobs = 0
        cursor: str | None = None
        while True:
            infos = await engine.blob_list(cursor, 1000)
            for info in infos:
                await self._export_blob(root / "blobs" / info.digest[7:], info.digest)
                blobs += 1
                if progress is not None:
                    progress("export blobs", blobs)
            if len(infos) < 1000:
                break
            cursor = infos[-1].digest
        from keepstone.version import __version__

        manifest = SnapshotManifest(
            keepstone_version=__version__,
            created_at=created_at or self._ctx.now(),
            counts=counts,
            parts=parts,
            blobs=blobs,
        )
        await asyncio.to_thread(
            _write_file, root / "manifest.json", dumps(manifest.model_dump(mode="json")) + b"\n"
        )
        return manifest

    async def _export_blob(self, path: Path, digest: str) -> None:
        hasher = hashlib.sha256()
        with open(path, "wb") as out:  # noqa: ASYNC230 - writes go to a thread
            async for chunk in self._ctx.engine.blob_stream(digest, 1 << 20):
                hasher.update(chunk)
                await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(_sync, out)
        if "sha256:" + hasher.hexdigest() != digest:
            raise StorageError(
                "corrupt",
                f"blob {digest} in the store is damaged; run the doctor before exporting",
                {"digest": digest},
            )

    # ------------------------------------------------------------------ import

    async def import_from(
        self, source: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> SnapshotManifest:
        src = Path(source)
        kind = await asyncio.to_thread(_kind_of, src)
        if kind is None:
            raise StorageError("not_found", f"no snapshot at {src}", {"path": str(src)})
        if kind == "file":
            with tempfile.TemporaryDirectory(prefix=".ks-import-") as tmp:
                root = await asyncio.to_thread(_safe_extract, src, Path(tmp))
                return await self._import_dir(root, progress)
        return await self._import_dir(src, progress)

    async def _import_dir(self, root: Path, progress: Progress | None) -> SnapshotManifest:
        manifest = await asyncio.to_thread(_read_manifest, root)
        await asyncio.to_thread(_verify, root, manifest, progress)
        await self._require_empty()
        try:
            await self._write_blobs(root, progress)
            for table in ALL_TABLES:
                await self._write_table(root, table, progress)
        except BaseException:
            await self._wipe()
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

    async def _write_blobs(self, root: Path, progress: Progress | None) -> None:
        pending: list[Op] = []
        size = 0
        paths = await asyncio.to_thread(lambda: sorted((root / "blobs").iterdir()))
        for done, path in enumerate(paths, start=1):
            data_size = (await asyncio.to_thread(path.stat)).st_size
            if data_size > BATCH_BLOB_BYTES:
                await self._ctx.engine.blob_put_stream(_file_chunks(path))
            else:
                data = await asyncio.to_thread(path.read_bytes)
                pending.append(BlobPut("sha256:" + path.name, data))
                size += data_size
            if size > BATCH_BLOB_BYTES or len(pending) >= 512:
                await self._ctx.apply(WriteBatch(list(pending)))
                pending, size = [], 0
            if progress is not None:
                progress("import blobs", done)
        if pending:
            await self._ctx.apply(WriteBatch(pending))

    async def _write_table(self, root: Path, table: Table, progress: Progress | None) -> None:
        batch: list[Op] = []
        done = 0
        with open(root / f"records/{table.name}.jsonl", "rb") as lines:  # noqa: ASYNC230
            for line in lines:
                batch.append(Restore(table, orjson.loads(line)))
                if len(batch) >= BATCH_ROWS:
                    await self._ctx.apply(WriteBatch(list(batch)))
                    done += len(batch)
                    batch = []
                    if progress is not None:
                        progress(f"import {table.name}", done)
        if batch:
            await self._ctx.apply(WriteBatch(batch))

    async def _wipe(self) -> None:
        """Undo a failed import (the store was empty before it began)."""
        engine = self._ctx.engine
        for table in ALL_TABLES:
            while True:
                rows = await engine.find(table, order=_order(table), limit=PAGE)
                if not rows:
                    break
                keys = [table.key_of(orjson.loads(r)) for r in rows]
                await engine.apply(WriteBatch([Delete(table, k) for k in keys]))
        while True:
            infos = await engine.blob_list(None, 1000)
            if not infos:
                break
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


def _sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


async def _file_chunks(path: Path) -> Any:
    with open(path, "rb") as src:  # noqa: ASYNC230 - reads go to a thread
        while chunk := await asyncio.to_thread(src.read, 1 << 20):
            yield chunk


def _occupied(target: Path) -> bool:
    return target.exists() and (not target.is_dir() or any(target.iterdir()))


def _make_dirs(root: Path) -> None:
    (root / "records").mkdir(parents=True, exist_ok=True)
    (root / "blobs").mkdir(exist_ok=True)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        _sync(out)


def _kind_of(path: Path) -> str | None:
    if path.is_file():
        return "file"
    if path.is_dir():
        return "dir"
    return None


def _read_manifest(root: Path) -> SnapshotManifest:
    path = root / "manifest.json"
    if not path.is_file():
        raise _corrupt("manifest.json is missing", path=str(path))
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise _corrupt("manifest.json is not JSON", path=str(path)) from exc
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise _corrupt("manifest.json is not a keepstone snapshot manifest", path=str(path))
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise StorageError(
            "unsupported_schema",
            f"the snapshot has schema version {version}; this keepstone reads up to "
            f"{SCHEMA_VERSION}: upgrade keepstone",
            {"schema_version": version},
        )
    try:
        return SnapshotManifest.model_validate(data)
    except ValidationError as exc:
        raise _corrupt(f"manifest.json is malformed ({exc.errors()[0]['msg']})") from exc


def _verify(root: Path, manifest: SnapshotManifest, progress: Progress | None) -> None:
    """Check every part and blob before anything is written."""
    expected = {f"records/{t.name}.jsonl" for t in ALL_TABLES}
    listed = {p.path for p in manifest.parts}
    if listed != expected:
        missing, extra = sorted(expected - listed), sorted(listed - expected)
        raise _corrupt(
            f"the manifest lists the wrong parts (missing {missing}, unexpected {extra})"
        )
    on_disk = (
        {f"records/{p.name}" for p in (root / "records").iterdir()}
        if (root / "records").is_dir()
        else set()
    )
    if on_disk != expected:
        raise _corrupt(f"unexpected or missing record files: {sorted(on_disk ^ expected)}")
    tables = {f"records/{t.name}.jsonl": t for t in ALL_TABLES}
    for part in manifest.parts:
        _verify_part(root, part, tables[part.path])
        if progress is not None:
            progress("verify records", part.records)
    blob_dir = root / "blobs"
    blobs = sorted(blob_dir.iterdir()) if blob_dir.is_dir() else []
    if len(blobs) != manifest.blobs:
        raise _corrupt(f"{len(blobs)} blobs found, the manifest says {manifest.blobs}")
    for i, path in enumerate(blobs):
        hasher = hashlib.sha256()
        with open(path, "rb") as src:
            while chunk := src.read(1 << 20):
                hasher.update(chunk)
        if hasher.hexdigest() != path.name:
            raise _corrupt(f"blob {path.name} does not match its digest", blob=path.name)
        if progress is not None:
            progress("verify blobs", i + 1)


def _verify_part(root: Path, part: SnapshotPart, table: Table) -> None:
    hasher = hashlib.sha256()
    size = count = 0
    model = MODELS.get(table.name)
    with open(root / part.path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            hasher.update(line)
            size += len(line)
            count += 1
            if not line.endswith(b"\n"):
                raise _corrupt(f"{part.path} line {number} is cut short", part=part.path)
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise _corrupt(f"{part.path} line {number} is not JSON", part=part.path) from exc
            if not isinstance(row, dict):
                raise _corrupt(f"{part.path} line {number} is not an object", part=part.path)
            version = row.get("schema_version", 1)
            if isinstance(version, int) and version > SCHEMA_VERSION:
                raise StorageError(
                    "unsupported_schema",
                    f"{part.path} line {number} has schema version {version}",
                    {"part": part.path, "line": number},
                )
            if model is not None:
                try:
                    model.model_validate_json(line)
                except ValidationError as exc:
                    raise _corrupt(
                        f"{part.path} line {number} is not a valid {model.__name__}",
                        part=part.path,
                        line=number,
                    ) from exc
    digest = "sha256:" + hasher.hexdigest()
    if (digest, size, count) != (part.digest, part.bytes, part.records):
        raise _corrupt(
            f"{part.path} does not match the manifest (records {count}/{part.records}, "
            f"bytes {size}/{part.bytes}, digest {'ok' if digest == part.digest else 'differs'})",
            part=part.path,
        )


def _write_tar(root: Path, target: Path, manifest: SnapshotManifest) -> None:
    """A deterministic tar: sorted entries, fixed owner, mode and time."""
    mtime = int(manifest.created_at.timestamp())
    tmp = target.with_name(f".{target.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        entries = sorted(root.rglob("*"))
        for path in [root, *entries]:
            rel = "snapshot" if path == root else "snapshot/" + path.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = path.stat().st_size
                info.mode = 0o644
                with open(path, "rb") as src:
                    tar.addfile(info, src)
    with open(tmp, "rb+") as handle:
        _sync(handle)
    os.replace(tmp, target)


def _safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a snapshot tar, refusing anything that could escape ``dest``.

    Returns:
        The snapshot's root directory inside ``dest``.
    """
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except tarfile.TarError as exc:
        raise _corrupt(f"{archive.name} is not a tar archive", path=str(archive)) from exc
    with tar:
        for member in tar:
            name = member.name
            parts = Path(name).parts
            if name.startswith("/") or Path(name).is_absolute() or ".." in parts:
                raise StorageError(
                    "invalid",
                    f"archive entry {name!r} points outside the snapshot",
                    {"entry": name},
                )
            if not (member.isfile() or member.isdir()):
                kind = "link" if member.issym() or member.islnk() else "special file"
                raise StorageError(
                    "invalid", f"archive entry {name!r} is a {kind}", {"entry": name}
                )
            target = dest / name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                raise _corrupt(f"archive entry {name!r} cannot be read", entry=name)
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
    root = dest / "snapshot"
    return root if root.is_dir() else dest
