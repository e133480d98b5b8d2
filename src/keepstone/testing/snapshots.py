"""Conformance of snapshot imports (:class:`keepstone.ports.SnapshotStore`): all
or nothing, whatever the snapshot holds.

A snapshot is checked whole before anything is written (its shape, every
digest, every row's schema, the audit chain and every row against it, the
counters); an import that fails anyway is undone completely, counters
included; the counters travel with the snapshot; text holding NUL is stored
faithfully. Every archive below is built by the tests themselves: the store
under test is the *target*, and the snapshots come from an in-memory store.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from keepstone.errors import StorageError
from keepstone.schemas import FixedClock, SequentialIds
from keepstone.schemas._base import Limits, dumps
from keepstone.schemas.audit import audit_hash
from keepstone.testing.base import APPROVAL, T0, ConformanceBase

if TYPE_CHECKING:
    from keepstone import Store

Rows = list[dict[str, Any]]

ZEROS = 400 << 20
"""The run of zeros in the compressed archive (the size of the reported bomb)."""


# --------------------------------------------------------------------------- snapshots


async def make_snapshot(dest: Path, *, nul: bool = False) -> Path:
    """Export a small in-memory store with a row in most tables, a purged log
    (so the log counter stands above the highest log seq) and, with ``nul``,
    text holding U+0000 and U+0001 in filterable fields."""
    import keepstone

    async with keepstone.open("memory://", clock=FixedClock(T0), ids=SequentialIds()) as src:
        await fill(src, nul=nul)
        await src.snapshots.export_to(dest, created_at=T0)
    return dest


async def fill(store: Store, *, nul: bool = False) -> None:
    """What :func:`make_snapshot` exports."""
    kept = await store.runs.create("kept\x00run" if nul else "kept", labels={"k": "v"})
    gone = await store.runs.create("gone")
    await store.logs.write(kept.id, "one")
    await store.logs.write(gone.id, "two")
    await store.logs.write(gone.id, "three")
    await store.logs.purge(gone.id, approval=APPROVAL)
    coll = await store.artifacts.create_collection("docs")
    await store.artifacts.create(coll.id, "a", "alpha text")
    profile = await store.memory.create_profile("agent")
    await store.memory.put_node(profile.id, "fact", content="sky")
    for system in ("sys\x00tem", "sys\x01tem", "sys") if nul else ("mem0",):
        await store.context.put_external(system, f"ref{system}", provenance={"by": system})


def edit_part(snap: Path, table: str, edit: Callable[[Rows], Rows]) -> None:
    """Rewrite the rows of ``table`` and recompute the manifest's counts and
    digests, as someone forging a snapshot would."""
    path = snap / "records" / f"{table}.jsonl"
    rows = edit([orjson.loads(line) for line in path.read_bytes().splitlines()])
    data = b"".join(dumps(row) + b"\n" for row in rows)
    path.write_bytes(data)

    def update(manifest: dict[str, Any]) -> None:
        manifest["counts"][table] = len(rows)
        for part in manifest["parts"]:
            if part["path"] == f"records/{table}.jsonl":
                part.update(records=len(rows), bytes=len(data), digest=_digest(data))

    edit_manifest(snap, update)


def edit_manifest(snap: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    path = snap / "manifest.json"
    manifest = orjson.loads(path.read_bytes())
    edit(manifest)
    path.write_bytes(dumps(manifest) + b"\n")


def _digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _edit_audit_actor(rows: Rows) -> Rows:
    rows[0]["actor"] = "mallory"
    return rows


def _edit_and_rehash(rows: Rows) -> Rows:
    """An audit record edited and its hash recomputed: the next link breaks."""
    rows[0]["actor"] = "mallory"
    rows[0]["hash"] = audit_hash(rows[0])
    return rows


def _edit_status(rows: Rows) -> Rows:
    rows[0]["status"] = "succeeded"
    return rows


def _twice(rows: Rows) -> Rows:
    return [rows[0], *rows]


def _added(rows: Rows) -> Rows:
    extra = dict(rows[0], id="ext_added", ref="added")
    return sorted([*rows, extra], key=lambda r: str(r["id"]))


def _empty_row(rows: Rows) -> Rows:
    return [{}, *rows[1:]]


def _no_id(rows: Rows) -> Rows:
    rows[0].pop("id")
    return rows


def _huge_seq(rows: Rows) -> Rows:
    rows[-1]["seq"] = 2**63
    return rows


TAMPERED: dict[str, tuple[str, Callable[[Path], None], str, str]] = {
    "an audit record's actor edited": (
        "audit",
        lambda s: edit_part(s, "audit", _edit_audit_actor),
        "corrupt",
        "audit chain is broken at record 1",
    ),
    "an audit record edited and rehashed": (
        "audit",
        lambda s: edit_part(s, "audit", _edit_and_rehash),
        "corrupt",
        "audit chain is broken at record 2",
    ),
    "a run's status edited": (
        "runs",
        lambda s: edit_part(s, "runs", _edit_status),
        "corrupt",
        "changed after its audit record wrote it",
    ),
    "the same run twice": ("runs", lambda s: edit_part(s, "runs", _twice), "corrupt", "repeats"),
    "a row no audit record wrote": (
        "externals",
        lambda s: edit_part(s, "externals", _added),
        "corrupt",
        "not written by any audit record",
    ),
    "a row removed": (
        "nodes",
        lambda s: edit_part(s, "nodes", lambda rows: []),
        "corrupt",
        "missing",
    ),
    "an empty memory_heads row": (
        "memory_heads",
        lambda s: edit_part(s, "memory_heads", _empty_row),
        "corrupt",
        "memory_heads",
    ),
    "an artifact_text row without id": (
        "artifact_text",
        lambda s: edit_part(s, "artifact_text", _no_id),
        "corrupt",
        "artifact_text",
    ),
    "a seq past 64 bits": (
        "log_lines",
        lambda s: edit_part(s, "log_lines", _huge_seq),
        "invalid",
        "2**63",
    ),
    "a counter below its rows": (
        "log_lines",
        lambda s: edit_manifest(s, lambda m: m["counters"].update(log_lines=0)),
        "corrupt",
        "log_lines counter",
    ),
}
"""Forged snapshots (digests recomputed): the table they touch, how, the
error code and words of its message."""


# --------------------------------------------------------------------------- archives


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def tar_of(snap: Path, out: Path, extra: list[tuple[tarfile.TarInfo, bytes]] | None = None) -> Path:
    """A tar of snapshot directory ``snap`` under ``snapshot/``, then ``extra``."""
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for path in [snap, *sorted(snap.rglob("*"))]:
            rel = "snapshot" if path == snap else f"snapshot/{path.relative_to(snap).as_posix()}"
            if path.is_dir():
                tar.addfile(_info(rel, tarfile.DIRTYPE))
            else:
                data = path.read_bytes()
                tar.addfile(_info(rel, size=len(data)), io.BytesIO(data))
        for info, data in extra or []:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out


def raw_tar(out: Path, entries: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A tar of exactly ``entries`` (headers as given, data as given)."""
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out


def truncated_tar(out: Path, name: str, claimed: int) -> Path:
    """A tar whose entry ``name`` claims ``claimed`` bytes, cut after 1000."""
    header = _info(name, size=claimed).tobuf(tarfile.GNU_FORMAT)
    out.write_bytes(_info("snapshot", tarfile.DIRTYPE).tobuf(tarfile.GNU_FORMAT) + header)
    with open(out, "ab") as f:
        f.write(b"{" * 1000)
    return out


@functools.cache
def _zero_bomb(name: str) -> bytes:
    """A ``.tar.gz`` holding entry ``name`` of :data:`ZEROS` zero bytes, built
    from one deflate block repeated (compressing 400 MiB would take seconds)."""
    header = _info(name, size=ZEROS).tobuf(tarfile.GNU_FORMAT)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff", raw.compress(header)]
    out.append(raw.flush(zlib.Z_FULL_FLUSH))
    block = raw.compress(bytes(1 << 20)) + raw.flush(zlib.Z_FULL_FLUSH)
    out += [block] * (ZEROS >> 20)
    out.append(raw.compress(bytes(1024)) + raw.flush(zlib.Z_FINISH))
    crc = zlib.crc32(header)
    mib = bytes(1 << 20)
    for _ in range(ZEROS >> 20):
        crc = zlib.crc32(mib, crc)
    crc = zlib.crc32(bytes(1024), crc)
    total = len(header) + ZEROS + 1024
    out.append(crc.to_bytes(4, "little") + (total & 0xFFFFFFFF).to_bytes(4, "little"))
    return b"".join(out)


def zero_bomb(out: Path, name: str) -> Path:
    out.write_bytes(_zero_bomb(name))
    return out


# --------------------------------------------------------------------------- the suite


class SnapshotImportConformance(ConformanceBase):
    """Imports into the store under test."""

    async def _tree(self, store: Store, name: str) -> dict[str, bytes]:
        """The store's export (a fingerprint that includes every counter)."""
        dest = self.location / f"fp-{name}"
        await store.snapshots.export_to(dest, created_at=T0)
        return {
            str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file()
        }

    async def _refused(self, store: Store, source: Path, code: str, words: str) -> StorageError:
        with pytest.raises(StorageError) as info:
            await store.snapshots.import_from(source)
        assert info.value.code == code, info.value
        assert words in info.value.message, info.value.message
        assert await store.audit.head() is None
        assert (await store.blobs.list()).items == []
        return info.value

    async def test_a_failed_import_is_undone_counters_included(self, store: Store) -> None:
        snap = await make_snapshot(self.location / "snap")
        empty = await self._tree(store, "empty")

        def interrupt(stage: str, done: int) -> None:
            if stage == "import events":  # after the log lines and the events are in
                raise RuntimeError("interrupted")

        with pytest.raises(RuntimeError):
            await store.snapshots.import_from(snap, progress=interrupt)
        assert await self._tree(store, "after") == empty
        assert await store.events.last_seq() == 0
        assert await store.audit.head() is None
        run = await store.runs.create("after")
        line = await store.logs.write(run.id, "first")
        assert line.seq == 1
        head = await store.audit.head()
        assert head is not None and head.seq == 2
        assert (await store.audit.verify()).ok

    async def test_counters_travel_with_the_snapshot(self, store: Store) -> None:
        import keepstone

        snap = await make_snapshot(self.location / "snap")
        await store.snapshots.import_from(snap)
        copy = self.location / "copy"
        await store.snapshots.export_to(copy, created_at=T0)
        files = sorted(p.relative_to(snap) for p in snap.rglob("*") if p.is_file())
        for rel in files:
            assert (copy / rel).read_bytes() == (snap / rel).read_bytes(), rel
        async with keepstone.open("memory://", clock=FixedClock(T0), ids=SequentialIds()) as src:
            await fill(src)
            run = (await src.runs.list()).items[0].id
            expected = (await src.logs.write(run, "next")).seq
        assert (await store.logs.write(run, "next")).seq == expected
        assert (await store.audit.verify()).ok

    async def test_forged_snapshots_are_refused_before_anything_is_written(
        self, store: Store
    ) -> None:
        base = await make_snapshot(self.location / "snap")
        empty = await self._tree(store, "empty")
        for i, (case, (table, forge, code, words)) in enumerate(TAMPERED.items()):
            snap = self.location / f"forged-{i}"
            shutil.copytree(base, snap)
            forge(snap)
            error = await self._refused(store, snap, code, words)
            assert table in error.message, (case, error.message)
        assert await self._tree(store, "after") == empty
        await store.snapshots.import_from(base)  # still new: the real one imports
        assert (await store.audit.verify()).ok

    async def test_text_with_nul_is_stored_faithfully(self, store: Store) -> None:
        snap = await make_snapshot(self.location / "snap", nul=True)
        await store.snapshots.import_from(snap)
        for system in ("sys\x00tem", "sys\x01tem", "sys"):
            found = (await store.context.list_external(system=system)).items
            assert [(r.system, r.ref) for r in found] == [(system, f"ref{system}")]
        assert [r.name for r in (await store.runs.list()).items] == ["kept\x00run", "gone"]
        copy = self.location / "copy"
        await store.snapshots.export_to(copy, created_at=T0)
        for part in ("externals", "runs"):
            rel = f"records/{part}.jsonl"
            assert (copy / rel).read_bytes() == (snap / rel).read_bytes()
        ref = await store.context.put_external("a\x00", "b", provenance={})
        assert (await store.context.get_external(ref.id)).system == "a\x00"
        assert [r.id for r in (await store.context.list_external(system="a\x00")).items] == [ref.id]
        assert (await store.context.list_external(system="a")).items == []
        assert (await store.audit.verify()).ok

    async def test_hostile_archives_are_refused_and_change_nothing(self, store: Store) -> None:
        snap = await make_snapshot(self.location / "snap")
        empty = await self._tree(store, "empty")
        blob = next((snap / "blobs").iterdir()).name
        tmp = self.location / "hostile"
        tmp.mkdir()
        heads = self.location / "heads"
        shutil.copytree(snap, heads)
        edit_part(heads, "memory_heads", _empty_row)
        manifest = (snap / "manifest.json").read_bytes()
        cases: list[tuple[Path, str, str]] = [
            (
                truncated_tar(tmp / "cut.tar", f"snapshot/blobs/{blob}", 8 << 30),
                "corrupt",
                f"snapshot/blobs/{blob}",
            ),
            (
                raw_tar(
                    tmp / "records-file.tar",
                    [
                        (_info("snapshot/manifest.json", size=len(manifest)), manifest),
                        (_info("snapshot/records", size=2), b"{}"),
                        (_info("snapshot/records/runs.jsonl", size=0), b""),
                    ],
                ),
                "invalid",
                "'snapshot/records'",
            ),
            (raw_tar(tmp / "dot.tar", [(_info(".", size=2), b"{}")]), "invalid", "'.'"),
            (
                tar_of(snap, tmp / "blob-dir.tar", [(_info("snapshot/blobs/sub", b"5"), b"")]),
                "invalid",
                "snapshot/blobs/sub",
            ),
            (
                raw_tar(tmp / "part-dir.tar", [(_info("snapshot/records/runs.jsonl", b"5"), b"")]),
                "invalid",
                "snapshot/records/runs.jsonl",
            ),
            (
                tar_of(
                    snap,
                    tmp / "twice.tar",
                    [(_info("snapshot/manifest.json", size=len(manifest)), manifest)],
                ),
                "invalid",
                "appears twice",
            ),
            (tar_of(heads, tmp / "heads.tar"), "corrupt", "records/memory_heads.jsonl line 1"),
            (
                zero_bomb(tmp / "zeros.tar.gz", "snapshot/records/runs.jsonl"),
                "corrupt",
                "'snapshot/records/runs.jsonl' holds a NUL byte",
            ),
            (_write(tmp / "noise.tar", os.urandom(3000)), "corrupt", "noise.tar"),
            (
                _write(tmp / "cut.tar.gz", _gzip(tar_of(snap, tmp / "whole.tar"))[:-300]),
                "corrupt",
                "cut short",
            ),
        ]
        for name, fifo in (
            ("fifo-blob", f"blobs/{blob}"),
            ("fifo-part", "records/runs.jsonl"),
            ("fifo-manifest", "manifest.json"),
        ):
            target = self.location / name
            shutil.copytree(snap, target)
            (target / fifo).unlink()
            os.mkfifo(target / fifo)
            cases.append((target, "invalid", f"'{fifo}' is a FIFO"))
        linked = self.location / "link"
        shutil.copytree(snap, linked)
        (linked / "records" / "runs.jsonl").unlink()
        (linked / "records" / "runs.jsonl").symlink_to(snap / "records" / "runs.jsonl")
        cases.append((linked, "invalid", "'records/runs.jsonl' is a symbolic link"))
        stray = self.location / "stray"
        shutil.copytree(snap, stray)
        (stray / "notes.txt").write_text("hello")
        cases.append((stray, "invalid", "'notes.txt' is not part of a snapshot"))
        for source, code, words in cases:
            await self._refused(store, source, code, words)
        assert await self._tree(store, "after") == empty

    async def test_archive_size_and_entry_bounds(self, store: Store) -> None:
        snap = await make_snapshot(self.location / "snap")
        bomb = zero_bomb(self.location / "bomb.tar.gz", f"snapshot/blobs/{'0' * 64}")
        limits = Limits(max_snapshot_bytes=64 << 20, max_snapshot_entries=20)
        async with self.scratch_store(limits=limits) as small:
            empty = await self._tree(small, "empty")
            error = await self._refused(small, bomb, "invalid", "max_snapshot_bytes")
            assert error.details["entry"] == f"snapshot/blobs/{'0' * 64}"
            whole = tar_of(snap, self.location / "whole.tar")
            await self._refused(small, whole, "invalid", "max_snapshot_entries")
            await self._refused(small, snap, "invalid", "max_snapshot_entries")
            assert await self._tree(small, "after") == empty
        await store.snapshots.import_from(whole)  # the defaults take it
        assert (await store.audit.verify()).ok


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _gzip(path: Path) -> bytes:
    import gzip

    return gzip.compress(path.read_bytes())
