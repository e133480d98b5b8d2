"""The snapshot archive format: a directory (or a deterministic tar of one).

::

    snapshot/
      manifest.json            format, schema version, counts, one part per table
      records/<table>.jsonl    one canonical JSON row per line, in the table's
                               natural order; its records, bytes and sha256 are
                               in the manifest
      blobs/<hex>              the bytes of blob ``sha256:<hex>``

This module reads and writes that layout and checks it (every part against its
digest and its rows' schema, every blob against its name) before an import
writes anything. It knows nothing of engines: the store side
(:mod:`keepstone.core.snapshots`) pages rows in and restores them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from keepstone.core.row_models import MODELS
from keepstone.engine.spi import Table
from keepstone.engine.tables import ALL_TABLES
from keepstone.errors import StorageError
from keepstone.ports.snapshots import Progress
from keepstone.schemas._base import SCHEMA_VERSION, dumps
from keepstone.schemas.snapshot import SNAPSHOT_FORMAT, SnapshotManifest, SnapshotPart

CHUNK = 1 << 20
"""Bytes per read or write of a blob file."""


def part_path(table: Table) -> str:
    """Where the rows of ``table`` are, relative to the snapshot root."""
    return f"records/{table.name}.jsonl"


def _corrupt(message: str, **details: Any) -> StorageError:
    return StorageError("corrupt", f"the snapshot is damaged: {message}", details)


# --------------------------------------------------------------------------- writing


def check_destination(target: Path) -> None:
    """Refuse (``conflict``) to export over an existing tar file or into a
    directory that is not empty."""
    if target.suffix == ".tar":
        if target.exists():
            raise StorageError(
                "conflict", f"{target} already exists; choose a new file", {"path": str(target)}
            )
    elif target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise StorageError(
            "conflict",
            f"{target} exists and is not an empty directory",
            {"path": str(target)},
        )


def make_dirs(root: Path) -> None:
    (root / "records").mkdir(parents=True, exist_ok=True)
    (root / "blobs").mkdir(exist_ok=True)


async def write_part(
    root: Path, table: Table, pages: AsyncIterable[list[bytes]], progress: Progress | None
) -> SnapshotPart:
    """Write the rows of ``table`` (pages of canonical JSON rows) as its part."""
    rel = part_path(table)
    hasher = hashlib.sha256()
    size = count = 0
    with open(root / rel, "wb") as out:  # noqa: ASYNC230 - writes go to a thread
        async for rows in pages:
            chunk = b"".join(raw + b"\n" for raw in rows)
            hasher.update(chunk)
            size += len(chunk)
            await asyncio.to_thread(out.write, chunk)
            count += len(rows)
            if progress is not None:
                progress(f"export {table.name}", count)
        await asyncio.to_thread(_sync, out)
    return SnapshotPart(path=rel, records=count, bytes=size, digest="sha256:" + hasher.hexdigest())


async def write_blob(root: Path, digest: str, chunks: AsyncIterable[bytes]) -> None:
    """Write blob ``digest``; ``corrupt`` if the bytes do not hash to it."""
    hasher = hashlib.sha256()
    with open(root / "blobs" / digest[7:], "wb") as out:  # noqa: ASYNC230 - writes go to a thread
        async for chunk in chunks:
            hasher.update(chunk)
            await asyncio.to_thread(out.write, chunk)
        await asyncio.to_thread(_sync, out)
    if "sha256:" + hasher.hexdigest() != digest:
        raise StorageError(
            "corrupt",
            f"blob {digest} in the store is damaged; run the doctor before exporting",
            {"digest": digest},
        )


def write_manifest(root: Path, manifest: SnapshotManifest) -> None:
    with open(root / "manifest.json", "wb") as out:
        out.write(dumps(manifest.model_dump(mode="json")) + b"\n")
        _sync(out)


def write_tar(root: Path, target: Path, manifest: SnapshotManifest) -> None:
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


def _sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


# --------------------------------------------------------------------------- reading


def kind_of(path: Path) -> str | None:
    """``"file"`` (a tar), ``"dir"``, or ``None`` when nothing is there."""
    if path.is_file():
        return "file"
    if path.is_dir():
        return "dir"
    return None


def extract_tar(archive: Path, dest: Path) -> Path:
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


def read_manifest(root: Path) -> SnapshotManifest:
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


def part_rows(root: Path, table: Table) -> Iterator[dict[str, Any]]:
    """The rows of ``table``'s part (checked by :func:`verify` first)."""
    with open(root / part_path(table), "rb") as lines:
        for line in lines:
            yield orjson.loads(line)


def blob_files(root: Path) -> list[Path]:
    """The blob files, in digest order; each is named by its hex digest."""
    return sorted((root / "blobs").iterdir())


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as src:  # noqa: ASYNC230 - reads go to a thread
        while chunk := await asyncio.to_thread(src.read, CHUNK):
            yield chunk


def verify(root: Path, manifest: SnapshotManifest, progress: Progress | None) -> None:
    """Check every part and blob before anything is written."""
    expected = {part_path(t) for t in ALL_TABLES}
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
    tables = {part_path(t): t for t in ALL_TABLES}
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
            while chunk := src.read(CHUNK):
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
