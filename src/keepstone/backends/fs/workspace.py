"""The synchronous core of a filesystem store: one open workspace.

It owns the workspace lock, the journal, the file writer and the index, and
does everything that touches them: opening (stamp, recovery, index load or
rebuild), catching up with commits other processes made, committing a group
of batches, checkpointing, and reading rows back. :class:`FsEngine` wraps it
in the async :class:`~keepstone.engine.spi.RecordEngine` API.

Locks, always taken in this order: the workspace ``flock`` (other processes,
other stores on the same directory), then :attr:`Workspace.mutex` (threads of
this process). The mutex is never held while waiting for the ``flock``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from keepstone.backends.fs import layout
from keepstone.backends.fs.commit import IndexView, compile_group, journal_counters
from keepstone.backends.fs.files import WorkspaceLock, clean_temps, sync_paths, write_durably
from keepstone.backends.fs.index import Entry
from keepstone.backends.fs.journal import Journal, header_line
from keepstone.backends.fs.jsonl import line_ok
from keepstone.backends.fs.ops import FileWriter, table_named
from keepstone.backends.fs.state import WorkspaceIndex, load, rebuild
from keepstone.backends.fs.tree import Tree
from keepstone.engine.spi import BatchResult, Table, WriteBatch
from keepstone.engine.stager import GroupStager, StagedOp
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps

DEFAULT_CHECKPOINT_BYTES = 16 << 20
"""Journal size past which a commit also checkpoints (fsyncs the files the
journal describes and starts a new, empty journal)."""


class NeedsLock(Exception):
    """A read found something only the lock holder can sort out."""

    def __init__(self, files: Iterable[str] = (), reload: bool = False) -> None:
        super().__init__("the view needs refreshing under the workspace lock")
        self.files = set(files)
        self.reload = reload


class Gone(Exception):
    """A file the index points at is missing."""

    def __init__(self, rel: str) -> None:
        super().__init__(rel)
        self.rel = rel


class Workspace:
    """One open workspace directory (see the module docstring)."""

    def __init__(self, root: Path, version: str, checkpoint_bytes: int) -> None:
        self.root = root
        self.prefix = f"{root}/"
        self.version = version
        self.checkpoint_bytes = checkpoint_bytes
        self.mutex = threading.Lock()
        self.tree = Tree(root)
        """Every file below the root is reached through this (never through a link)."""
        try:
            self._check_stamp(create=False)  # refuse a foreign directory before touching it
            self.lock = WorkspaceLock(self.tree)
            try:
                self.probe = WorkspaceLock(self.tree)
                """A second lock handle: a reader's non-blocking test whether the
                writer of an unfinished commit is still alive."""
            except BaseException:
                self.lock.close()
                raise
        except BaseException:
            self.tree.close()
            raise
        self.journal = Journal(self.tree)
        self.writer = FileWriter(self.tree)
        self.state = WorkspaceIndex()
        self.pending: dict[int, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []
        """What opening found and repaired (``diagnose`` reports them as info)."""
        self.lost_track = False
        """Set when a checkpoint dropped commits this process had not read yet."""
        self.index_stamp: str | None = None
        """The journal stamp ``index.json`` was last known to match."""

    # ------------------------------------------------------------------ opening

    def open(self) -> None:
        """Check the stamp, recover, and load the index (takes the lock)."""
        self.lock.acquire()
        try:
            self._check_stamp(create=True)
            self.tree.makedirs(layout.TMP)
            clean_temps(self.tree)
            if not self.journal.exists():
                rebuilt = rebuild(self.tree)
                Journal.create(self.tree, header_line(0, rebuilt.seqs, rebuilt.head))
            self._load_state()
        finally:
            self.lock.release()

    def _check_stamp(self, create: bool) -> None:
        """Refuse what is not a workspace of a layout we read; with ``create``
        (lock held), stamp an empty directory."""
        path = self.root / layout.STAMP
        try:
            data = orjson.loads(self.tree.read(layout.STAMP))
        except FileNotFoundError:
            names = (e.name for e in self.tree.entries(""))
            entries = [e for e in names if e not in (layout.LOCK, layout.TMP)]
            if entries:
                raise StorageError(
                    "config",
                    f"{self.root} is not empty and has no {layout.STAMP}: not a keepstone "
                    "workspace (open an empty or new directory)",
                    {"path": str(self.root), "found": sorted(entries)[:10]},
                ) from None
            if create:
                stamp = dumps(layout.stamp(self.version)) + b"\n"
                write_durably(self.tree, layout.STAMP, stamp)
            return
        except orjson.JSONDecodeError as exc:
            raise StorageError("corrupt", f"{path} is not JSON", {"path": str(path)}) from exc
        if not isinstance(data, dict) or data.get("format") != layout.FORMAT:
            raise StorageError(
                "config",
                f"{path} does not stamp a keepstone filesystem workspace",
                {
                    "path": str(path),
                    "format": data.get("format") if isinstance(data, dict) else None,
                },
            )
        found = data.get("layout_version")
        if not isinstance(found, int) or found > layout.LAYOUT_VERSION:
            raise StorageError(
                "unsupported_schema",
                f"the workspace {self.root} has layout version {found}, newer than this "
                f"keepstone reads ({layout.LAYOUT_VERSION}): upgrade keepstone to open it",
                {
                    "path": str(self.root),
                    "layout_version": found,
                    "supported": layout.LAYOUT_VERSION,
                },
            )

    def _load_state(self) -> None:
        """Recover the journal's entries into the files, then build the index (locked)."""
        self.writer.close()  # descriptors of files a rewrite may have replaced
        self.journal.open()
        items, torn = self.journal.read_new()
        if torn:
            cut = self.journal.cut_torn_tail()
            self.notes.append(
                _note(
                    layout.JOURNAL,
                    self.journal.line + 1,
                    f"cut {cut} bytes of a commit that never became durable (never acknowledged)",
                )
            )
        entries: dict[int, dict[str, Any]] = {}
        done: set[int] = set()
        for item in items:
            if "n" in item and int(item["n"]) > self.journal.base:
                entries[int(item["n"])] = item
            elif "done" in item:
                done.add(int(item["done"]))
        ordered = [entries[n] for n in sorted(entries)]
        self._replay(ordered)
        unfinished = [e for e in ordered if int(e["n"]) not in done]
        for entry in unfinished:
            self.journal.append(dumps({"done": entry["n"]}) + b"\n")
            self.notes.append(
                _note(
                    layout.JOURNAL,
                    None,
                    f"finished commit {entry['n']}, whose writer stopped before writing its files",
                )
            )
        stamp = self.journal.stamp
        loaded = load(self.tree, stamp)
        state = loaded if loaded is not None else rebuild(self.tree)
        self.index_stamp = stamp if loaded is not None else None
        header = self.journal.header
        for name, seq in header.get("seqs", {}).items():
            state.bump(name, int(seq))
        if loaded is not None or int(header.get("seqs", {}).get("audit", 0)) >= state.last_seq(
            "audit"
        ):
            state.head = str(header.get("head", state.head))
        state.n = max(state.n, self.journal.base)
        for entry in ordered:
            state.apply_entry(entry, self.tree)
            self._touch(entry["ops"])
        self.state = state
        self.pending = {}
        self._check_stream_files()

    def _check_stream_files(self) -> None:
        """Re-scan JSONL files whose size is not what the index says."""
        for rel, (size, _) in list(self.state.files.items()):
            try:
                actual = os.lstat(self.prefix + rel).st_size
            except OSError:
                actual = -1
            if actual != size:
                self._rescan(rel)  # (a link in the file's place is found there)

    def _rescan(self, rel: str) -> None:
        name = rel.partition("/")[0].removesuffix(".jsonl")
        self.writer.forget(rel)
        self.state.rescan(self.state.table(table_named(name)), self.tree, rel)

    def _replay(self, entries: list[dict[str, Any]]) -> None:
        """Write committed entries into the files again, changing only what differs."""
        blobs: dict[str, dict[str, Any]] = {}
        for entry in entries:
            for op in entry["ops"]:
                if op["op"] in ("blob", "blobfile", "unblob"):
                    blobs[op["d"]] = op
                else:
                    self.writer.apply(op, verify=True)
        for digest, op in blobs.items():
            if op["op"] == "blobfile":
                rel = layout.blob_path(digest)
                if rel is not None and not self.blob_exists(digest):
                    self.notes.append(
                        {
                            "code": "missing_blob",
                            "severity": "error",
                            "file": rel,
                            "line": None,
                            "message": f"blob {digest} was committed but its file is gone",
                        }
                    )
            else:
                self.writer.apply(op, verify=True)

    def _touch(self, ops: list[dict[str, Any]]) -> None:
        touched = self.writer.touched
        for op in ops:
            if "f" in op:
                touched.add(op["f"])
            elif op["op"] in ("blob", "unblob"):
                rel = layout.blob_path(op["d"])
                if rel is not None:
                    touched.add(rel)

    # ------------------------------------------------------------------ catching up

    def stale(self) -> bool:
        """Cheap test (one ``stat``): has the journal moved since we last read it?"""
        j = self.journal
        try:
            st = os.lstat(j.path_s)
        except FileNotFoundError:
            return True
        return st.st_ino != j.ino or st.st_size != j.offset or bool(self.pending) or self.lost_track

    def catch_up(self, locked: bool) -> None:
        """Apply what other writers committed (caller holds :attr:`mutex`).

        ``locked``: the caller holds the workspace lock, so unfinished commits
        and torn journal tails are dead writers' and are repaired here.

        Raises:
            NeedsLock: (not locked) commits were checkpointed away before this
                process read them; the view must be rebuilt under the lock.
        """
        j = self.journal
        try:
            st = os.lstat(j.path_s)
        except FileNotFoundError:
            st = None
        unchanged = st is not None and st.st_ino == j.ino and st.st_size == j.offset
        if unchanged and not self.pending and not self.lost_track:
            return
        if j.rotated():
            items, _ = j.read_new()
            self._take(items)
            j.open()
            if j.base != self.state.n:
                self.lost_track = True
        if self.lost_track:
            # Commits were checkpointed away before this process read them.
            if not locked:
                raise NeedsLock(reload=True)
            self._load_state()
            self.lost_track = False
            return
        items, torn = j.read_new()
        self._take(items)
        if (self.pending or torn) and not locked:
            # A commit being written, or one whose writer died: if the lock is
            # free, its writer is gone and this reader finishes (or cuts) it.
            if self.probe.try_acquire():
                try:
                    self.catch_up(locked=True)
                finally:
                    self.probe.release()
            return
        if self.pending:
            self._finish_pending()
        if torn:
            cut = j.cut_torn_tail()
            self.notes.append(
                _note(
                    layout.JOURNAL,
                    j.line + 1,
                    f"cut {cut} bytes of a commit that never became durable (never acknowledged)",
                )
            )

    def _take(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            if "n" in item:
                n = int(item["n"])
                if n > self.state.n:
                    self.pending[n] = item
            else:
                entry = self.pending.pop(int(item["done"]), None)
                if entry is not None:
                    self._apply_theirs(entry)

    def _apply_theirs(self, entry: dict[str, Any]) -> None:
        for op in entry["ops"]:
            if op["op"] == "rewrite":
                self.writer.forget(op["f"])
        self.state.apply_entry(entry, self.tree)
        self._touch(entry["ops"])

    def _finish_pending(self) -> None:
        for n in sorted(self.pending):
            entry = self.pending.pop(n)
            self._replay([entry])
            self.journal.append(dumps({"done": n}) + b"\n")
            self._apply_theirs(entry)
            self.notes.append(
                _note(
                    layout.JOURNAL,
                    None,
                    f"finished commit {n}, whose writer stopped before writing all its files",
                )
            )

    def refresh_locked(self, files: Iterable[str] = ()) -> None:
        """Under the workspace lock: catch up, then re-scan ``files``."""
        self.probe.acquire()
        try:
            with self.mutex:
                self.catch_up(locked=True)
                for rel in files:
                    self._rescan(rel)
        finally:
            self.probe.release()

    # ------------------------------------------------------------------ committing

    def commit(self, jobs: list[tuple[WriteBatch, list[StagedOp]]]) -> list[Any]:
        """Stage, journal, fsync and apply a group of batches (lock and mutex held).

        Returns one outcome per job: its :class:`BatchResult` or the exception
        that refused it.
        """
        self.catch_up(locked=True)
        stager = GroupStager(IndexView(self.state, self.read_row))
        outcomes: list[Any] = []
        for batch, ops in jobs:
            try:
                outcomes.append(stager.stage(batch, ops))
            except StorageError as exc:
                outcomes.append(exc)
            except (KeyError, TypeError, ValueError) as exc:
                outcomes.append(exc)
        if not stager.accepted or stager.group.is_empty():
            return outcomes
        try:
            resolved, datas = compile_group(
                stager.group, self.state, self._probe, self._content, self.blob_exists
            )
            self._check_targets(resolved)
        except StorageError as exc:  # a link or special file where the group writes
            return [_copy(exc) if isinstance(o, BatchResult) else o for o in outcomes]
        seqs, head = journal_counters(stager.group)
        entry: dict[str, Any] = {"n": self.state.n + 1, "ops": resolved, "seqs": seqs}
        if head is not None:
            entry["head"] = head
        before = (self.journal.offset, self.journal.line)
        try:
            self.journal.append(dumps(entry) + b"\n")
            self.journal.sync()
        except OSError as exc:
            self.journal.offset, self.journal.line = before
            return _fail(outcomes, exc, "committing")
        try:
            for op, data in zip(resolved, datas, strict=True):
                self.writer.apply(op, data=data)
            self.journal.append(dumps({"done": entry["n"]}) + b"\n")
        except OSError as exc:
            # Committed but not all written: the next lock holder re-applies it.
            self.journal.offset, self.journal.line = before
            return _fail(outcomes, exc, "writing the files of a commit")
        self.state.apply_entry(entry, self.tree, datas)
        self._touch(resolved)
        if self.journal.offset > self.checkpoint_bytes:
            self.checkpoint()
        return outcomes

    def _check_targets(self, ops: list[dict[str, Any]]) -> None:
        """Refuse, before anything is journaled, a group that would write a file
        whose path holds a link or a special file (streams are checked by
        :meth:`_probe`, rewrites when their content is read)."""
        for op in ops:
            if op["op"] in ("put", "del"):
                self.tree.check(op["f"])
            elif op["op"] in ("blob", "blobfile", "unblob"):
                rel = layout.blob_path(op["d"])
                if rel is not None:
                    self.tree.check(rel)

    def _probe(self, table: Table, rel: str) -> tuple[int, bool]:
        expected = self.state.files.get(rel, (0, True))
        try:
            st = self.tree.lstat(rel)  # a link in the file's place is refused here
        except FileNotFoundError:
            self.writer.forget(rel)
            return (0, True) if expected[0] == 0 else self._rescanned(table, rel)
        if self.writer.inode(rel) not in (None, st.st_ino):
            self.writer.forget(rel)
        if st.st_size != expected[0]:
            return self._rescanned(table, rel)
        return expected

    def _rescanned(self, table: Table, rel: str) -> tuple[int, bool]:
        self.writer.forget(rel)
        self.state.rescan(self.state.table(table), self.tree, rel)
        return self.state.files.get(rel, (0, True))

    def _content(self, rel: str) -> bytes:
        try:
            return self.tree.read(rel)
        except FileNotFoundError:
            return b""

    def blob_exists(self, digest: str) -> bool:
        """Whether the blob's file exists (``corrupt`` when a link or a special
        file is in its place)."""
        rel = layout.blob_path(digest)
        return rel is not None and self.tree.size(rel) is not None

    def checkpoint(self, save_index: bool = False) -> None:
        """Make the files durable and start an empty journal (lock and mutex held)."""
        if self.state.n != self.journal.base or self.journal.offset > len(
            self.journal.header_bytes
        ):
            sync_paths(self.tree, self.writer.touched)
            header = header_line(self.state.n, self.state.seqs, self.state.head)
            Journal.create(self.tree, header)
            self.journal.open()
            self.writer.touched.clear()
        stamp = self.journal.stamp
        if save_index and self.index_stamp != stamp:
            write_durably(self.tree, layout.INDEX, self.state.save(stamp))
            self.index_stamp = stamp

    # ------------------------------------------------------------------ reading

    def read_row(self, table: Table, key: str) -> dict[str, Any] | None:
        """The committed row of ``key`` parsed (for preconditions), or ``None``."""
        entry = self.state.table(table).rows.get(key)
        if entry is None:
            return None
        raw = self.read_one(table, entry)
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _damaged(entry.file, table, key) from exc
        if not isinstance(row, dict):
            raise _damaged(entry.file, table, key)
        return row

    def read_one(self, table: Table, entry: Entry) -> bytes:
        """The canonical bytes of one row (no trailing newline)."""
        if entry.off < 0:
            return _read_file(self.tree, entry.file)
        return self.read_lines(table, [entry])[0]

    def read_lines(self, table: Table, entries: list[Entry]) -> list[bytes]:
        """Rows of JSONL entries, reading runs of adjacent lines with one ``pread``.

        Raises:
            NeedsLock: a line is not where the index says (the file changed).
        """
        out: list[bytes] = []
        i = 0
        while i < len(entries):
            first = entries[i]
            j = i + 1
            end = first.off + first.size
            while j < len(entries):
                nxt = entries[j]
                if nxt.file != first.file or nxt.off != end:
                    break
                end += nxt.size
                j += 1
            start = max(0, first.off - 1)
            try:
                fd = self.writer.read_fd(first.file)
            except FileNotFoundError:
                raise NeedsLock([first.file]) from None
            data = os.pread(fd, end - start, start)
            if first.off > 0 and data[:1] != b"\n":
                raise NeedsLock([first.file])
            # Every line must end where the index says; the first and the last
            # of the run must also hold their seq (a shifted file fails this).
            if len(data) != end - start:
                raise NeedsLock([first.file])
            last = entries[j - 1]
            for entry in (first, last) if table.seq else ():
                lo = entry.off - start
                if not line_ok(data, lo, lo + entry.size, entry.vals[0]):
                    raise NeedsLock([first.file])
            for entry in entries[i:j]:
                hi = entry.off - start + entry.size
                if data[hi - 1] != 0x0A:
                    raise NeedsLock([first.file])
                out.append(data[hi - entry.size : hi - 1])
            i = j
        return out

    def close(self) -> None:
        self.writer.close()
        self.journal.close()
        self.lock.close()
        self.probe.close()
        self.tree.close()


def _read_file(tree: Tree, rel: str) -> bytes:
    """A record file's bytes without the trailing newline.

    Raises:
        Gone: the file is missing.
        StorageError: ``corrupt`` when it (or a directory on its path) is a
            link or not a regular file.
    """
    try:
        data = tree.read(rel)
    except FileNotFoundError:
        raise Gone(rel) from None
    return data[:-1] if data.endswith(b"\n") else data


def _damaged(rel: str, table: Table, key: str) -> StorageError:
    return StorageError(
        "corrupt",
        f"the stored {table.name} {key!r} ({rel}) is not a JSON object",
        {"table": table.name, "key": key, "file": rel},
    )


def _copy(error: StorageError) -> StorageError:
    return StorageError(error.code, error.message, dict(error.details))


def _note(file: str, line: int | None, message: str) -> dict[str, Any]:
    return {"code": "recovered", "severity": "info", "file": file, "line": line, "message": message}


def _fail(outcomes: list[Any], exc: OSError, during: str) -> list[Any]:
    error = StorageError(
        "unavailable",
        f"the workspace failed {during} ({exc}); the write may or may not be applied",
        {"during": during, "error": str(exc)},
    )
    return [
        StorageError(error.code, error.message, dict(error.details))
        if isinstance(o, BatchResult)
        else o
        for o in outcomes
    ]


__all__ = ["Gone", "NeedsLock", "Workspace"]
