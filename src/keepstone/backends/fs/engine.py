"""FsEngine: the RecordEngine of a filesystem workspace (async API, group commit).

Where it differs from the :class:`~keepstone.engine.spi.RecordEngine` port:

* **Durability.** A write returns once its journal line is fsync'd; the record
  and JSONL files it describes are written right after (see
  :mod:`~keepstone.backends.fs.journal`). Concurrent callers share a commit:
  the first caller of a burst leads: it yields once so that every caller
  already ready to write queues its batch, then commits the group with one
  journal fsync. The commit itself (staging, write, fsync, apply) runs on the
  event loop's thread: on this kind of machine a thread hop costs about a
  third of an fsync, and it would be paid on every single-caller write. When
  another process holds the workspace lock, a leader task waits for it
  without blocking the loop.
* **Several processes** may open one workspace: each commit takes the
  workspace lock and first applies what others committed (seqs and the audit
  head included); reads pick up others' commits from the journal (one
  ``stat`` when nothing changed).
* **Blobs** up to :data:`~keepstone.backends.fs.commit.INLINE_BLOB_MAX` bytes
  travel in the journal entry; larger ones are written to their file and
  fsync'd before the commit that records them.
* **Damage** in the files is reported by :meth:`FsEngine.diagnose` (file and
  line) and never returned as a row.
* **Links** are never followed: every file is reached through
  :class:`~keepstone.backends.fs.tree.Tree`, and reads and writes through a
  link (or of a FIFO, socket or device) inside the workspace raise
  ``corrupt`` naming its path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from keepstone.backends.fs import layout
from keepstone.backends.fs.commit import INLINE_BLOB_MAX
from keepstone.backends.fs.diagnose import diagnose
from keepstone.backends.fs.files import create_temp, fsync_dir, place, write_durably
from keepstone.backends.fs.index import Entry
from keepstone.backends.fs.state import blob_digests
from keepstone.backends.fs.tree import DIR_MODE, Tree
from keepstone.backends.fs.workspace import (
    DEFAULT_CHECKPOINT_BYTES,
    Gone,
    NeedsLock,
    Workspace,
)
from keepstone.engine.spi import BatchResult, BlobPut, Table, Where, WriteBatch
from keepstone.engine.stager import BlobForget, BlobStored, StagedOp
from keepstone.errors import StorageError
from keepstone.schemas.artifacts import BlobInfo

T = TypeVar("T")

MAX_GROUP = 512
"""Most batches committed in one journal entry."""

_READ_TRIES = 8
"""Reads tried without the workspace lock before one is made under it."""

_READ_PAUSE = 0.0002
"""Seconds between those tries, times the try's number (a commit's files are
written in well under a millisecond once its journal line is durable)."""

_RESCANS = 2
"""Re-scans of files that are not what the index says, before ``corrupt``."""


@dataclass(slots=True)
class _Job:
    batch: WriteBatch
    ops: list[StagedOp]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[BatchResult]
    outcome: Any = field(default=None)


class FsEngine:
    """A RecordEngine over one workspace directory (see the module docstring)."""

    name = "file"
    capabilities = frozenset({"fts", "blob_files", "multi_process", "durable"})

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self.root = workspace.root
        self._tree: Tree = workspace.tree
        self._queue: list[_Job] = []
        self._qlock = threading.Lock()
        self._leading = False
        self._leader: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls, root: Path, *, version: str, checkpoint_bytes: int = DEFAULT_CHECKPOINT_BYTES
    ) -> FsEngine:
        """Open (creating if needed) the workspace at ``root``.

        Raises:
            StorageError: ``config`` when ``root``'s parent is missing, ``root``
                is a file, or a non-empty directory without a stamp;
                ``unsupported_schema`` for a workspace of a newer layout.
        """
        root = _checked_root(root)
        workspace = Workspace(root, version, checkpoint_bytes)
        try:
            await asyncio.to_thread(workspace.open)
        except OSError as exc:
            workspace.close()
            raise StorageError(
                "unavailable", f"cannot open the workspace {root} ({exc})", {"path": str(root)}
            ) from exc
        except BaseException:
            workspace.close()
            raise
        return cls(workspace)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("unavailable", "the store is closed")

    # ------------------------------------------------------------------ writes

    async def apply(self, batch: WriteBatch) -> BatchResult:
        self._check_open()
        ops: list[StagedOp] = list(batch.ops)
        big = [op for op in ops if isinstance(op, BlobPut) and len(op.data) > INLINE_BLOB_MAX]
        if big:
            await asyncio.to_thread(self._write_blob_files, big)
            ops = [
                BlobStored(op.digest, len(op.data))
                if isinstance(op, BlobPut) and len(op.data) > INLINE_BLOB_MAX
                else op
                for op in ops
            ]
        return await self._submit(batch, ops)

    def _write_blob_files(self, puts: list[BlobPut]) -> None:
        for op in puts:
            rel = layout.blob_path(op.digest)
            if rel is None:
                raise StorageError("invalid", f"not a sha256 digest: {op.digest!r}", {})
            try:
                if self._tree.size(rel) == len(op.data):
                    self._tree.fsync_dir(rel.rpartition("/")[0])  # maybe not yet durable
                    continue
                write_durably(self._tree, rel, op.data)
            except OSError as exc:
                raise _io_error(exc, f"writing blob {op.digest}") from exc

    async def _submit(self, batch: WriteBatch, ops: list[StagedOp]) -> BatchResult:
        loop = asyncio.get_running_loop()
        job = _Job(batch, ops, loop, loop.create_future())
        with self._qlock:
            self._queue.append(job)
            lead = not self._leading
            self._leading = True
        if lead:
            try:
                if _others_ready(loop):
                    await asyncio.sleep(0)  # the callers that are ready join this group
            finally:
                self._lead_now(loop)
        return await job.future

    def _lead_now(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit what is queued while the workspace lock is free; when another
        process holds it, hand over to a leader task that waits without blocking."""
        while True:
            with self._qlock:
                if not self._queue:
                    self._leading = False
                    return
                if not self._ws.lock.try_acquire():
                    break
                jobs, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            self._commit_locked(jobs)
        self._leader = loop.create_task(self._lead())

    async def _lead(self) -> None:
        """The waiting leader: takes the lock as soon as it is free, then commits."""
        try:
            while True:
                with self._qlock:
                    if not self._queue:
                        self._leading = False
                        return
                try:
                    await self._ws.lock.acquire_async()
                except StorageError as exc:
                    with self._qlock:
                        left, self._queue = self._queue, []
                    for job in left:
                        _settle(job, exc)
                    continue
                with self._qlock:
                    jobs, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                self._commit_locked(jobs)
        except BaseException:
            with self._qlock:
                self._leading = False
                left, self._queue = self._queue, []
            for job in left:
                _settle(job, StorageError("unavailable", "the store's writer stopped"))
            raise

    def _commit_locked(self, jobs: list[_Job]) -> None:
        """Commit ``jobs`` (the workspace lock is held; released here) and settle them."""
        try:
            with self._ws.mutex:
                outcomes = self._ws.commit([(j.batch, j.ops) for j in jobs]) if jobs else []
        except BaseException as exc:  # a bug, or an I/O failure outside a commit
            outcomes = [
                _io_error(exc, "committing") if isinstance(exc, OSError) else exc for _ in jobs
            ]
        finally:
            self._ws.lock.release()
        for job, outcome in zip(jobs, outcomes, strict=True):
            _settle(job, outcome)

    # ------------------------------------------------------------------ reads

    def _read(self, query: Callable[[], T]) -> T:
        """Run ``query`` on one committed state of the workspace.

        Another process commits by journaling its entry, then rewriting files,
        then marking it done; a read that overlapped that could mix two
        states (a file rewritten by a commit the index has not applied). So a
        read runs only when no commit is half-written, and is kept only if the
        journal did not move while it ran; otherwise it is run again, and
        after a few tries under the workspace lock, where nobody else commits.
        A file that is not what the index says, with the journal still, is
        re-scanned under the lock.
        """
        ws = self._ws
        rescans = 0
        for attempt in range(_READ_TRIES):
            if attempt:
                time.sleep(_READ_PAUSE * attempt)
            try:
                with ws.mutex:
                    if ws.stale():
                        ws.catch_up(locked=False)
                    if ws.pending:
                        continue  # another process is writing a commit's files
                    result = query()
                    if not ws.stale():
                        return result
            except NeedsLock as need:
                if ws.stale():
                    continue  # a commit moved the files under this read: read again
                if rescans == _RESCANS:
                    raise StorageError(
                        "corrupt",
                        f"{', '.join(sorted(need.files)) or 'the workspace'} does not hold "
                        "what its index says, even after a re-scan",
                        {"files": sorted(need.files)},
                    ) from need
                rescans += 1
                ws.refresh_locked(need.files)
            except Gone as gone:
                if ws.stale():
                    continue
                raise self._gone(gone) from gone
            except OSError as exc:
                raise _io_error(exc, "reading") from exc
        return self._read_locked(query)

    def _read_locked(self, query: Callable[[], T]) -> T:
        """Run ``query`` holding the workspace lock: no other process commits meanwhile."""
        ws = self._ws
        ws.probe.acquire()
        try:
            with ws.mutex:
                ws.catch_up(locked=True)
                return query()
        except Gone as gone:
            raise self._gone(gone) from gone
        except NeedsLock as need:
            raise StorageError(
                "corrupt",
                f"{', '.join(sorted(need.files)) or 'the workspace'} does not hold "
                "what its index says, even after a re-scan",
                {"files": sorted(need.files)},
            ) from need
        except OSError as exc:
            raise _io_error(exc, "reading") from exc
        finally:
            ws.probe.release()

    def _gone(self, gone: Gone) -> StorageError:
        details: dict[str, Any] = {"file": gone.rel}
        rel = gone.rel.removeprefix(str(self.root) + os.sep)
        table = layout.TABLES.get(rel.partition("/")[0])
        if table is not None:
            details.update(table=table.name, key=layout.key_from_path(table, rel))
        return StorageError("corrupt", f"the record file {gone.rel} is missing", details)

    def _rows(self, table: Table, pairs: Sequence[tuple[str, Entry]]) -> list[bytes]:
        ws = self._ws
        if not table.seq:
            return [ws.read_one(table, e) for _, e in pairs]
        return ws.read_lines(table, [e for _, e in pairs])

    def _loader(self, table: Table) -> Callable[[str, Entry], Mapping[str, Any]]:
        def load(key: str, entry: Entry) -> Mapping[str, Any]:
            try:
                row = orjson.loads(self._ws.read_one(table, entry))
            except orjson.JSONDecodeError:
                return {}
            return row if isinstance(row, dict) else {}

        return load

    async def get(self, table: Table, key: str) -> bytes | None:
        self._check_open()

        def query() -> bytes | None:
            self._refuse_links(table)
            entry = self._ws.state.table(table).rows.get(key)
            return None if entry is None else self._ws.read_one(table, entry)

        return self._read(query)

    async def get_many(self, table: Table, keys: Sequence[str]) -> dict[str, bytes]:
        self._check_open()

        def query() -> dict[str, bytes]:
            self._refuse_links(table)
            rows = self._ws.state.table(table).rows
            pairs = [(k, rows[k]) for k in keys if k in rows]
            return dict(zip((k for k, _ in pairs), self._rows(table, pairs), strict=True))

        return self._read(query)

    async def find(
        self,
        table: Table,
        where: Where | None = None,
        *,
        order: tuple[str, ...] = (),
        after: tuple[Any, ...] | None = None,
        desc: bool = False,
        limit: int | None = None,
        tags: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> list[bytes]:
        self._check_open()

        def query() -> list[bytes]:
            self._refuse_links(table, where)
            pairs = self._ws.state.table(table).select(
                where,
                order=order,
                after=after,
                desc=desc,
                limit=limit,
                tags=tags,
                text=text,
                load=self._loader(table),
            )
            return self._rows(table, pairs)

        return self._read(query)

    async def count(self, table: Table, where: Where | None = None) -> int:
        self._check_open()

        def query() -> int:
            self._refuse_links(table, where)
            return self._ws.state.table(table).count(where, self._loader(table))

        return self._read(query)

    def _refuse_links(self, table: Table, where: Where | None = None) -> None:
        """Raise ``corrupt`` when indexing ``table`` met a link or a special file
        whose rows it could not read without following it."""
        blocked = self._ws.state.blocked(table, where)
        if blocked is not None:
            raise blocked

    async def last_seq(self, table: Table) -> int:
        self._check_open()
        return self._read(lambda: self._ws.state.last_seq(table.name))

    # ------------------------------------------------------------------ blobs

    async def blob_get(self, digest: str) -> bytes | None:
        self._check_open()
        rel = layout.blob_path(digest)
        if rel is None:
            return None
        return self._read(lambda: _read_or_none(self._tree, rel))

    async def blob_get_many(self, digests: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        paths = {d: r for d in dict.fromkeys(digests) if (r := layout.blob_path(d)) is not None}

        def read_all() -> dict[str, bytes]:
            found = {d: _read_or_none(self._tree, rel) for d, rel in paths.items()}
            return {d: data for d, data in found.items() if data is not None}

        return self._read(read_all)

    async def blob_stream(self, digest: str, chunk_size: int) -> AsyncIterator[bytes]:
        self._check_open()
        rel = layout.blob_path(digest)
        fd = None if rel is None else self._read(lambda: _open_or_none(self._tree, rel))
        if fd is None:
            raise StorageError("not_found", f"blob {digest!r} does not exist", {"digest": digest})
        with os.fdopen(fd, "rb") as handle:
            while True:
                chunk = handle.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    async def blob_put_stream(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        self._check_open()
        tree = self._tree
        temp, fd = create_temp(tree)
        hasher = hashlib.sha256()
        size = 0
        try:
            try:
                async for chunk in chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    _write_all(fd, chunk)
                await asyncio.to_thread(os.fsync, fd)
            finally:
                os.close(fd)
            digest = "sha256:" + hasher.hexdigest()
            rel = layout.blob_path(digest)
            if rel is None:  # pragma: no cover - sha256 always gives one
                raise AssertionError(digest)
            if tree.size(rel) == size:
                tree.unlink(temp)
                return BlobInfo(digest=digest, size=size)
            await asyncio.to_thread(place, tree, temp, rel)
        except BaseException:
            with contextlib.suppress(OSError):
                tree.unlink(temp)
            raise
        await self._submit(WriteBatch(), [BlobStored(digest, size)])
        return BlobInfo(digest=digest, size=size)

    async def blob_size(self, digest: str) -> int | None:
        self._check_open()
        rel = layout.blob_path(digest)
        if rel is None:
            return None
        return self._tree.size(rel)

    async def blob_list(self, after: str | None, limit: int) -> list[BlobInfo]:
        self._check_open()
        found = blob_digests(self._tree, after, limit)
        return [BlobInfo(digest=d, size=s) for d, s in found]

    async def blob_delete(self, digest: str) -> None:
        self._check_open()
        if layout.blob_path(digest) is None:
            return
        await self._submit(WriteBatch(), [BlobForget(digest)])

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Finish queued commits, checkpoint, save the index, release the workspace."""
        if self._closed:
            return
        self._closed = True
        # Polling, not an asyncio.Event: the leader may run on another thread's loop.
        while self._leading:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        ws = self._ws
        try:
            await ws.lock.acquire_async()
            try:
                with ws.mutex:
                    ws.catch_up(locked=True)
                    ws.checkpoint(save_index=True)
            finally:
                ws.lock.release()
        except OSError as exc:
            raise _io_error(exc, "closing") from exc
        finally:
            ws.close()

    async def diagnose(self) -> list[dict[str, Any]]:
        """Findings about the files: torn tails, malformed lines, records of an
        unknown schema version, misplaced or unknown files, blobs that do not
        match their digest, what opening repaired. Each is a dict with
        ``code``, ``severity``, ``file``, ``line`` and ``message``."""
        self._check_open()
        ws = self._ws
        await ws.lock.acquire_async()
        try:
            with ws.mutex:
                ws.catch_up(locked=True)
                return [*ws.notes, *diagnose(ws)]
        finally:
            ws.lock.release()

    async def checkpoint(self) -> None:
        """Fsync the files the journal describes and start an empty journal."""
        self._check_open()
        ws = self._ws
        await ws.lock.acquire_async()
        try:
            with ws.mutex:
                ws.catch_up(locked=True)
                ws.checkpoint()
        finally:
            ws.lock.release()


def _others_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether other callbacks are ready to run (callers that may be about to
    write). When none is, yielding cannot grow the group and only costs a loop
    iteration, which a single caller would pay on every write. Loops that do
    not expose their ready queue are always yielded to."""
    ready = getattr(loop, "_ready", None)
    return ready is None or len(ready) > 0


def _settle(job: _Job, outcome: Any) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if isinstance(outcome, BatchResult):
            job.future.set_result(outcome)
        elif isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_exception(StorageError("unavailable", "the write was not applied"))

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is job.loop:
        settle()
    else:
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed
            job.loop.call_soon_threadsafe(settle)


def _open_or_none(tree: Tree, rel: str) -> int | None:
    try:
        return tree.open(rel, os.O_RDONLY)
    except FileNotFoundError:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_or_none(tree: Tree, rel: str) -> bytes | None:
    try:
        return tree.read(rel)
    except FileNotFoundError:
        return None


def _io_error(exc: BaseException, during: str) -> StorageError:
    return StorageError(
        "unavailable",
        f"the workspace failed {during} ({exc})",
        {"during": during, "error": str(exc)},
    )


def _checked_root(root: Path) -> Path:
    root = root.expanduser()
    if root.exists() and not root.is_dir():
        raise StorageError(
            "config", f"{root} is a file; a workspace is a directory", {"path": str(root)}
        )
    if not root.exists():
        if not root.parent.is_dir():
            raise StorageError(
                "config",
                f"the parent directory of the workspace {root} does not exist",
                {"path": str(root)},
            )
        with contextlib.suppress(FileExistsError):
            root.mkdir(mode=DIR_MODE)
        fsync_dir(root.parent)
    return root.resolve()
