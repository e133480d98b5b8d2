"""The snapshot archive format: a directory (or a deterministic tar of one).

::

    snapshot/
      manifest.json            format, schema version, counts, counters, one
                               part per table
      records/<table>.jsonl    one canonical JSON row per line, in the table's
                               natural order; its records, bytes and sha256 are
                               in the manifest
      blobs/<hex>              the bytes of blob ``sha256:<hex>``

This module reads and writes that layout, and checks all of it before an
import writes anything (:func:`verify`):

* the shape: only the entries above, each a directory or a regular file as
  listed; links, FIFOs, devices and unknown names are refused before anything
  is opened (files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked
  again); a tar is extracted entry by entry within ``Limits.max_snapshot_bytes``
  and ``Limits.max_snapshot_entries``;
* every part against its digest, every row against its schema and the
  target's ``max_record_bytes``, no key twice, seqs strictly increasing;
* the audit chain, link by link as ``store.audit.verify()`` walks it, and every
  row against the digest its last audit record wrote (``writes``);
* the counters against the rows, every blob against its name.

It knows nothing of engines: the store side (:mod:`keepstone.core.snapshots`)
pages rows in and restores them.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson
from pydantic import BaseModel, Field, ValidationError

from keepstone.core.audit import Written, link_problem, missing_rows, note_writes, row_mismatch
from keepstone.core.row_models import MODELS
from keepstone.engine.spi import Table
from keepstone.engine.tables import ALL_TABLES, ARTIFACT_TEXT, AUDIT, MEMORY_HEADS
from keepstone.errors import StorageError
from keepstone.ports.snapshots import Progress
from keepstone.schemas._base import SCHEMA_VERSION, Id, Limits, Model, dumps
from keepstone.schemas.audit import GENESIS_HASH, RowMismatch
from keepstone.schemas.snapshot import SNAPSHOT_FORMAT, SnapshotManifest, SnapshotPart

CHUNK = 1 << 20
"""Bytes per read or write of a blob file."""

MAX_MANIFEST_BYTES = 1 << 20
"""The largest ``manifest.json`` an import reads (a real one is a few KiB)."""

MAX_TAR_HEADER_BYTES = 1 << 20
"""The largest extended header (a pax record, a GNU long name) an import reads."""

MAX_SEQ = (1 << 63) - 1
"""The largest seq, revision number or counter a snapshot may hold: every
backend stores them as signed 64-bit integers."""

SEQ_TABLES: tuple[Table, ...] = tuple(t for t in ALL_TABLES if t.seq)
"""The tables whose rows the engine numbers, each with its counter."""


class _TextRow(Model):
    """An ``artifact_text`` row: the full text of an artifact's head revision."""

    id: Id
    text: str


class _HeadRow(Model):
    """A ``memory_heads`` row: a profile's write version."""

    id: Id
    version: int = Field(ge=1, le=MAX_SEQ)


ROW_MODELS: dict[str, type[BaseModel]] = {
    **MODELS,
    ARTIFACT_TEXT.name: _TextRow,
    MEMORY_HEADS.name: _HeadRow,
}
"""The schema every row of a snapshot is checked against, by table."""

_PARTS = {f"{t.name}.jsonl": t for t in ALL_TABLES}
_HEX = frozenset("0123456789abcdef")
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)
"""What reading a damaged (or cut short) archive may raise."""


def part_path(table: Table) -> str:
    """Where the rows of ``table`` are, relative to the snapshot root."""
    return f"records/{table.name}.jsonl"


def _corrupt(message: str, **details: Any) -> StorageError:
    return StorageError("corrupt", f"the snapshot is damaged: {message}", details)


def changed(label: str) -> StorageError:
    """``corrupt``: a snapshot file changed between its check and its import."""
    return _corrupt(f"{label} changed while it was being imported", entry=label)


def _refused(message: str, **details: Any) -> StorageError:
    return StorageError("invalid", f"not a keepstone snapshot: {message}", details)


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


def place_dir(root: Path, target: Path) -> None:
    """Move a finished snapshot directory to ``target`` (absent or empty)."""
    try:
        if target.is_dir():
            target.rmdir()  # empty when check_destination looked
        os.replace(root, target)
    except OSError as exc:
        raise StorageError(
            "conflict",
            f"cannot put the snapshot at {target} ({exc.strerror}): something else wrote there",
            {"path": str(target)},
        ) from exc


def _sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


# --------------------------------------------------------------------------- the shape

Kind = Literal["dir", "file"]


def kind_of(path: Path) -> Literal["file", "dir", "other"] | None:
    """``"file"`` (a tar), ``"dir"``, ``"other"`` (a FIFO, a device...), or
    ``None`` when nothing is there."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(
            "invalid", f"cannot read {path}: {exc.strerror}", {"path": str(path)}
        ) from exc
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "other"


def expected_kind(rel: tuple[str, ...]) -> Kind | None:
    """What the snapshot entry at ``rel`` must be, or ``None`` if it has no place."""
    if rel in ((), ("records",), ("blobs",)):
        return "dir"
    if rel == ("manifest.json",):
        return "file"
    if len(rel) == 2 and rel[0] == "records" and rel[1] in _PARTS:
        return "file"
    if len(rel) == 2 and rel[0] == "blobs" and len(rel[1]) == 64 and set(rel[1]) <= _HEX:
        return "file"
    return None


_SHAPE = "manifest.json, records/<table>.jsonl and blobs/<sha256 hex> only"


def _describe(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _check_kind(label: str, rel: tuple[str, ...], found: str, is_dir: bool, is_file: bool) -> None:
    """Refuse (``invalid``) an entry that has no place in a snapshot or is not
    the kind of entry its place holds."""
    want = expected_kind(rel)
    if want is None:
        raise _refused(f"{label!r} is not part of a snapshot (it holds {_SHAPE})", entry=label)
    if want == "dir" and not is_dir:
        raise _refused(f"{label!r} is {found}, where a directory belongs", entry=label)
    if want == "file" and not is_file:
        raise _refused(f"{label!r} is {found}, where a regular file belongs", entry=label)


def open_regular(path: Path, label: str) -> IO[bytes]:
    """Open a snapshot file for reading without following a link or blocking
    on a FIFO, and refuse (``invalid``) anything but a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise _corrupt(f"{label} is missing", entry=label) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(f"{label!r} is a symbolic link", entry=label) from exc
        raise _corrupt(f"{label} cannot be read ({exc.strerror})", entry=label) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refused(f"{label!r} is {_describe(mode)}, where a regular file belongs", entry=label)
    return os.fdopen(fd, "rb")


@dataclass
class Tree:
    """What a snapshot directory holds (its shape checked)."""

    parts: set[str] = field(default_factory=set)
    """Record files present (``records/<table>.jsonl``)."""
    blobs: list[str] = field(default_factory=list)
    """Blob file names (hex digests), sorted."""


def check_tree(root: Path, limits: Limits) -> Tree:
    """Check the shape of a snapshot directory without opening any file.

    Raises:
        StorageError: ``invalid`` for an entry with no place in a snapshot, of
            the wrong kind (a link, a FIFO, a device, a directory where a file
            belongs...), or past ``limits.max_snapshot_entries``.
    """
    tree = Tree()
    entries = 0

    def listing(rel: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], os.DirEntry[str]]]:
        nonlocal entries
        with os.scandir(root.joinpath(*rel)) as found:
            for entry in found:
                entries += 1
                if entries > limits.max_snapshot_entries:
                    raise _too_many(limits)
                yield (*rel, entry.name), entry

    subdirs: list[tuple[str, ...]] = []
    for rel in _checked(listing(())):
        if expected_kind(rel) == "dir":
            subdirs.append(rel)
    for sub in sorted(subdirs):
        for rel in _checked(listing(sub)):
            if rel[0] == "records":
                tree.parts.add("/".join(rel))
            else:
                tree.blobs.append(rel[1])
    tree.blobs.sort()
    return tree


def _checked(
    entries: Iterator[tuple[tuple[str, ...], os.DirEntry[str]]],
) -> Iterator[tuple[str, ...]]:
    for rel, entry in entries:
        mode = entry.stat(follow_symlinks=False).st_mode
        label = "/".join(rel)
        _check_kind(label, rel, _describe(mode), stat.S_ISDIR(mode), stat.S_ISREG(mode))
        yield rel


def _too_many(limits: Limits) -> StorageError:
    return StorageError(
        "invalid",
        f"the snapshot has more than {limits.max_snapshot_entries} entries "
        "(Limits.max_snapshot_entries)",
        {"limit": limits.max_snapshot_entries},
    )


# --------------------------------------------------------------------------- tar archives


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses an extended header (pax, GNU long name) larger
    than :data:`MAX_TAR_HEADER_BYTES` before tarfile reads it into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size > MAX_TAR_HEADER_BYTES and not (self.isfile() or self.isdir()):
            raise _refused(
                f"archive entry {self.name!r} has a {self.size}-byte extended header",
                entry=self.name,
            )
        return super()._proc_member(tar)  # type: ignore[misc, no-any-return]


def _member_rel(name: str) -> tuple[str, ...]:
    """Where archive entry ``name`` goes in the snapshot (``snapshot/`` and
    ``./`` prefixes dropped); ``invalid`` if it points outside."""
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or ".." in parts:
        raise StorageError(
            "invalid", f"archive entry {name!r} points outside the snapshot", {"entry": name}
        )
    rel = [p for p in parts if p not in ("", ".")]
    if rel and rel[0] == "snapshot":
        rel = rel[1:]
    return tuple(rel)


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "a directory"
    if member.isfile():
        return "a regular file"
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.isfifo():
        return "a FIFO"
    if member.ischr() or member.isblk():
        return "a device"
    return "a special file"


def extract_tar(archive: Path, dest: Path, limits: Limits) -> Path:
    """Extract a snapshot tar (plain or compressed) into ``dest``, entry by
    entry, refusing anything that has no place in a snapshot.

    Every entry's name and kind is checked before its bytes are read; its size
    counts against ``limits.max_snapshot_bytes`` before it is written; record
    files and the manifest holding a NUL byte (never in JSON text) stop the
    extraction at once.

    Returns:
        The snapshot's root directory inside ``dest``.

    Raises:
        StorageError: ``invalid`` for an entry that escapes, has no place or
            is of the wrong kind, or past a limit; ``corrupt`` for an archive
            that is damaged or cut short (the message names the entry).
    """
    root = dest / "snapshot"
    root.mkdir()
    try:
        tar = tarfile.open(archive, "r:*", tarinfo=_BoundedTarInfo)  # noqa: SIM115 - closed below
    except StorageError:
        raise
    except _READ_ERRORS as exc:
        raise _corrupt(f"{archive.name} is not a tar archive", path=str(archive)) from exc
    seen: set[tuple[str, ...]] = set()
    entries = total = 0
    last: str | None = None
    with tar:
        while True:
            try:
                member = tar.next()
                cast(Any, tar).members.clear()  # tarfile keeps every header otherwise
            except StorageError:
                raise
            except _READ_ERRORS as exc:
                where = "at its start" if last is None else f"after entry {last!r}"
                raise _corrupt(f"{archive.name} is damaged or cut short {where}") from exc
            if member is None:
                break
            entries += 1
            if entries > limits.max_snapshot_entries:
                raise _too_many(limits)
            name = member.name
            rel = _member_rel(name)
            kind = _member_kind(member)
            if not (member.isfile() or member.isdir()):
                raise StorageError("invalid", f"archive entry {name!r} is {kind}", {"entry": name})
            _check_kind(name, rel, kind, member.isdir(), member.isfile())
            if rel in seen:
                raise _refused(f"archive entry {name!r} appears twice", entry=name)
            seen.add(rel)
            target = root.joinpath(*rel)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if rel == ("manifest.json",) and member.size > MAX_MANIFEST_BYTES:
                raise _corrupt(f"{name!r} is {member.size} bytes, more than a manifest", entry=name)
            total += member.size
            if total > limits.max_snapshot_bytes:
                raise StorageError(
                    "invalid",
                    f"archive entry {name!r} takes the snapshot past "
                    f"{limits.max_snapshot_bytes} bytes (Limits.max_snapshot_bytes)",
                    {"entry": name, "limit": limits.max_snapshot_bytes},
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy_member(tar, member, target, blob=rel[1] if rel[0] == "blobs" else None)
            last = name
    return root


def _copy_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, blob: str | None
) -> None:
    """Copy one entry's bytes: a blob must hash to its name, a JSON file must
    hold no NUL byte (checked as the bytes arrive)."""
    name = member.name
    cut = _corrupt(f"archive entry {name!r} is cut short or damaged", entry=name)
    try:
        source = tar.extractfile(member)
    except _READ_ERRORS as exc:
        raise cut from exc
    if source is None:
        raise cut
    hasher = hashlib.sha256()
    written = 0
    with source, open(target, "xb") as out:
        while True:
            try:
                chunk = source.read(CHUNK)
            except _READ_ERRORS as exc:
                raise cut from exc
            if not chunk:
                break
            if blob is not None:
                hasher.update(chunk)
            elif b"\x00" in chunk:
                raise _corrupt(
                    f"archive entry {name!r} holds a NUL byte: it is not JSON", entry=name
                )
            try:
                out.write(chunk)
            except OSError as exc:
                raise StorageError(
                    "unavailable",
                    f"cannot extract the snapshot into {target.parent}: {exc.strerror}",
                    {"entry": name},
                ) from exc
            written += len(chunk)
    if written != member.size:
        raise cut
    if blob is not None and hasher.hexdigest() != blob:
        raise _corrupt(f"blob {blob} does not match its digest", entry=name, blob=blob)
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)


# --------------------------------------------------------------------------- reading


def read_manifest(root: Path) -> SnapshotManifest:
    with open_regular(root / "manifest.json", "manifest.json") as src:
        data = src.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise _corrupt("manifest.json is larger than a manifest", entry="manifest.json")
    try:
        found = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _corrupt("manifest.json is not JSON", entry="manifest.json") from exc
    if not isinstance(found, dict) or found.get("format") != SNAPSHOT_FORMAT:
        raise _corrupt("manifest.json is not a keepstone snapshot manifest", entry="manifest.json")
    version = found.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise StorageError(
            "unsupported_schema",
            f"the snapshot has schema version {version}; this keepstone reads up to "
            f"{SCHEMA_VERSION}: upgrade keepstone",
            {"schema_version": version},
        )
    try:
        return SnapshotManifest.model_validate(found)
    except ValidationError as exc:
        raise _corrupt(f"manifest.json is malformed ({exc.errors()[0]['msg']})") from exc


def part_rows(root: Path, table: Table) -> Iterator[tuple[dict[str, Any], bytes]]:
    """The rows of ``table``'s part (checked by :func:`verify` first), each
    with its line as read (newline included)."""
    rel = part_path(table)
    with open_regular(root / rel, rel) as lines:
        for line in lines:
            yield orjson.loads(line), line


def blob_path(root: Path, name: str) -> Path:
    return root / "blobs" / name


async def file_chunks(path: Path, label: str) -> AsyncIterator[bytes]:
    src = await asyncio.to_thread(open_regular, path, label)
    with src:
        while chunk := await asyncio.to_thread(src.read, CHUNK):
            yield chunk


def read_blob(path: Path, label: str) -> bytes:
    with open_regular(path, label) as src:
        return src.read()


# --------------------------------------------------------------------------- verification


@dataclass
class Verified:
    """What :func:`verify` found, for the import to write."""

    counters: dict[str, tuple[int, str | None]]
    """Seq table -> (its counter, the audit head for the audit table)."""
    blobs: list[str]
    """Blob file names (hex digests), sorted."""


def verify(
    root: Path, manifest: SnapshotManifest, tree: Tree, limits: Limits, progress: Progress | None
) -> Verified:
    """Check everything before anything is written (see the module docstring).

    Raises:
        StorageError: ``corrupt`` for a damaged or inconsistent snapshot,
            ``invalid`` for a value no backend stores (a record longer than
            ``limits.max_record_bytes``, a seq past 2**63 - 1),
            ``unsupported_schema`` for a row of a newer schema version.
    """
    expected = {part_path(t) for t in ALL_TABLES}
    listed = [p.path for p in manifest.parts]
    if set(listed) != expected or len(listed) != len(expected):
        missing, extra = sorted(expected - set(listed)), sorted(set(listed) - expected)
        raise _corrupt(
            f"the manifest lists the wrong parts (missing {missing}, unexpected {extra})"
        )
    if tree.parts != expected:
        raise _corrupt(f"unexpected or missing record files: {sorted(tree.parts ^ expected)}")
    parts = {p.path: p for p in manifest.parts}
    chain = _Chain()
    _check_part(root, parts[part_path(AUDIT)], AUDIT, limits, chain.row)
    if progress is not None:
        progress("verify records", parts[part_path(AUDIT)].records)
    highest: dict[str, int] = {AUDIT.name: chain.last}
    for table in ALL_TABLES:
        if table.name == AUDIT.name:
            continue
        rows = _RowCheck(table, part_path(table), chain)
        _check_part(root, parts[part_path(table)], table, limits, rows.row)
        rows.finish()
        if table.seq:
            highest[table.name] = rows.last_seq
        if progress is not None:
            progress("verify records", parts[part_path(table)].records)
    counters = _counters(manifest, highest, chain)
    if len(tree.blobs) != manifest.blobs:
        raise _corrupt(f"{len(tree.blobs)} blobs found, the manifest says {manifest.blobs}")
    for i, name in enumerate(tree.blobs):
        _check_blob(root, name, limits)
        if progress is not None:
            progress("verify blobs", i + 1)
    return Verified(counters=counters, blobs=list(tree.blobs))


RowCheck = Callable[[int, dict[str, Any], bytes], None]
"""Called with each row of a part: its line number, the row, its canonical bytes."""


def _check_part(
    root: Path, part: SnapshotPart, table: Table, limits: Limits, check: RowCheck
) -> None:
    hasher = hashlib.sha256()
    size = count = 0
    model = ROW_MODELS.get(table.name)
    longest = limits.max_record_bytes + 2  # a longer line is a longer record
    with open_regular(root / part.path, part.path) as lines:
        for number, line in enumerate(iter(lambda: lines.readline(longest), b""), start=1):
            if len(line) == longest and not line.endswith(b"\n"):
                raise StorageError(
                    "invalid",
                    f"{part.path} line {number} is longer than this store's record limit of "
                    f"{limits.max_record_bytes} bytes (Limits.max_record_bytes)",
                    {"part": part.path, "line": number, "limit": limits.max_record_bytes},
                )
            hasher.update(line)
            size += len(line)
            count += 1
            if size > part.bytes:
                raise _corrupt(
                    f"{part.path} is longer than the manifest says ({part.bytes} bytes)",
                    part=part.path,
                )
            where = f"{part.path} line {number}"
            if not line.endswith(b"\n"):
                raise _corrupt(f"{where} is cut short", part=part.path, line=number)
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise _corrupt(f"{where} is not JSON", part=part.path, line=number) from exc
            if not isinstance(row, dict):
                raise _corrupt(f"{where} is not an object", part=part.path, line=number)
            version = row.get("schema_version", 1)
            if isinstance(version, int) and version > SCHEMA_VERSION:
                raise StorageError(
                    "unsupported_schema",
                    f"{where} has schema version {version}",
                    {"part": part.path, "line": number},
                )
            if model is not None:
                try:
                    model.model_validate_json(line)
                except ValidationError as exc:
                    raise _corrupt(
                        f"{where} is not a valid {table.name} row ({_first_error(exc)})",
                        part=part.path,
                        line=number,
                    ) from exc
            for name in ("seq", "number"):
                value = row.get(name)
                if isinstance(value, int) and not 0 <= value <= MAX_SEQ:
                    raise StorageError(
                        "invalid",
                        f"{where}: {name} {value} is beyond what a backend stores (0 to 2**63 - 1)",
                        {"part": part.path, "line": number},
                    )
            body = dumps(row)
            if len(body) > limits.max_record_bytes:
                raise StorageError(
                    "invalid",
                    f"{where} is a record of {len(body)} bytes, more than this store's "
                    f"limit of {limits.max_record_bytes} (Limits.max_record_bytes)",
                    {"part": part.path, "line": number, "limit": limits.max_record_bytes},
                )
            check(number, row, body)
    digest = "sha256:" + hasher.hexdigest()
    if (digest, size, count) != (part.digest, part.bytes, part.records):
        raise _corrupt(
            f"{part.path} does not match the manifest (records {count}/{part.records}, "
            f"bytes {size}/{part.bytes}, digest {'ok' if digest == part.digest else 'differs'})",
            part=part.path,
        )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else str(err["msg"])


class _Chain:
    """The audit part, walked link by link as ``store.audit.verify()`` walks
    the stored chain; collects what each record says it wrote."""

    def __init__(self) -> None:
        self.last = 0
        self.head = GENESIS_HASH
        self.written: Written = {}
        self.legacy = False
        """Whether records of schema version 1 (before ``writes``) are in the
        chain: rows they wrote cannot be told from rows added since."""

    def row(self, number: int, fields: dict[str, Any], body: bytes) -> None:
        expected = self.last + 1
        problem = link_problem(fields, expected, self.head)
        if problem is not None:
            raise _corrupt(
                f"the audit chain is broken at record {expected} ({part_path(AUDIT)} line "
                f"{number}): {problem}",
                part=part_path(AUDIT),
                line=number,
                seq=expected,
            )
        note_writes(fields, expected, self.written)
        if fields.get("writes") is None and fields.get("schema_version", 1) < 2:
            self.legacy = True
        self.last = expected
        self.head = str(fields["hash"])


class _RowCheck:
    """One part's rows: no key twice, seqs increasing, each row what the audit
    record that last wrote it says."""

    def __init__(self, table: Table, rel: str, chain: _Chain) -> None:
        self.table = table
        self.rel = rel
        self.chain = chain
        self.keys: dict[str, int] = {}
        self.last_seq = 0

    def row(self, number: int, row: dict[str, Any], body: bytes) -> None:
        table, where = self.table, f"{self.rel} line {number}"
        try:
            key = table.key_of(row)
        except KeyError as exc:
            raise _corrupt(f"{where} has no {exc}", part=self.rel, line=number) from exc
        first = self.keys.get(key)
        if first is not None:
            raise _corrupt(
                f"{where} repeats {table.name} {key!r} (first on line {first})",
                part=self.rel,
                line=number,
                table=table.name,
                key=key,
            )
        self.keys[key] = number
        if table.seq:
            seq = row.get("seq")
            if not isinstance(seq, int) or seq <= self.last_seq:
                raise _corrupt(
                    f"{where}: seq {seq!r} does not follow seq {self.last_seq} (the rows of "
                    f"{table.name} are in increasing seq order)",
                    part=self.rel,
                    line=number,
                )
            self.last_seq = seq
        found = row_mismatch(table.name, key, body, self.chain.written)
        if found is not None and not (found.seq is None and self.chain.legacy):
            raise _mismatch(found, where)

    def finish(self) -> None:
        missing = missing_rows(self.table.name, set(self.keys), self.chain.written)
        if missing:
            raise _mismatch(min(missing, key=lambda m: m.seq or 0), self.rel)


def _mismatch(found: RowMismatch, where: str) -> StorageError:
    record = "no audit record" if found.seq is None else f"audit record {found.seq}"
    return _corrupt(
        f"{found.table} {found.key!r} ({where}) is not what the audit chain recorded: "
        f"{found.problem} ({record})",
        table=found.table,
        key=found.key,
        seq=found.seq,
    )


def _counters(
    manifest: SnapshotManifest, highest: dict[str, int], chain: _Chain
) -> dict[str, tuple[int, str | None]]:
    """Each seq table's counter: the manifest's (at least its highest seq), or
    the highest seq for a snapshot made before counters were recorded."""
    given = manifest.counters
    names = {t.name for t in SEQ_TABLES}
    if given and set(given) != names:
        raise _corrupt(
            f"the manifest's counters name {sorted(given)}, not the tables {sorted(names)}"
        )
    out: dict[str, tuple[int, str | None]] = {}
    for name in sorted(names):
        value = given.get(name, highest[name])
        if isinstance(value, bool) or not highest[name] <= value <= MAX_SEQ:
            raise _corrupt(
                f"the manifest's {name} counter {value} is below the highest seq "
                f"{highest[name]} of its part, or out of range",
                table=name,
            )
        if name == AUDIT.name and value != chain.last:
            raise _corrupt(
                f"the manifest's audit counter {value} is not the last audit record "
                f"({chain.last}): audit records are never removed",
                table=name,
            )
        out[name] = (value, chain.head if name == AUDIT.name else None)
    return out


def _check_blob(root: Path, name: str, limits: Limits) -> None:
    label = f"blobs/{name}"
    hasher = hashlib.sha256()
    size = 0
    with open_regular(blob_path(root, name), label) as src:
        while chunk := src.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
            if size > limits.max_blob_bytes:
                raise StorageError(
                    "invalid",
                    f"{label} is larger than this store's limit of {limits.max_blob_bytes} "
                    "bytes (Limits.max_blob_bytes)",
                    {"blob": name, "limit": limits.max_blob_bytes},
                )
    if hasher.hexdigest() != name:
        raise _corrupt(f"blob {name} does not match its digest", blob=name)
