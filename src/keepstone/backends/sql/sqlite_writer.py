"""The SQLite writer: one connection, one thread, group commit.

Callers submit a :class:`Job` (a write batch and the future to resolve) and
await it. The writer thread takes everything pending and commits it as ONE
group, in one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, so one fsync
with ``synchronous=FULL``):

1. everything the group's batches read of committed state is fetched in bulk
   (:class:`~keepstone.backends.sql.sqlite_group.SQLiteGroup`);
2. the batches are staged in Python by the shared
   :class:`~keepstone.engine.stager.GroupStager`: a refused batch fails alone,
   and only its caller gets the error;
3. the net effect is written set-wise, and the transaction commits.

Futures are resolved only after ``COMMIT`` returns. A driver error while
writing (a value SQLite cannot hold, a full disk) rolls the group back; a
group of several jobs is then run again one job at a time, so that only the
job at fault fails. Opening and migrations are in
:mod:`keepstone.backends.sql.sqlite_open`.

Where a group is committed: the engine gathers the writes that callers of
one event loop issue in the same turn of the loop, then
:meth:`SQLiteWriter.commit_here` commits them on the loop's own thread when
the writer thread is idle, the lock is free and recent commits were quick
(under :data:`INLINE_MAX_SECONDS`): no thread hand-off, which is most of the
cost of a lone write. Otherwise (a busy writer, another process holding the
lock, a slow disk) the group goes to the writer thread, and the event loop is
never blocked for long.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from keepstone.backends.sql.sqlite_blobs import BlobDirectory
from keepstone.backends.sql.sqlite_errors import storage_error, translate
from keepstone.backends.sql.sqlite_group import SQLiteGroup
from keepstone.backends.sql.sqlite_open import open_connection, retry_busy
from keepstone.engine.spi import BatchResult, WriteBatch
from keepstone.engine.stager import BlobStored, GroupStager, StagedOp, plan_reads
from keepstone.errors import StorageError

MAX_GROUP = 512
"""Most jobs committed in one transaction."""

INLINE_MAX_SECONDS = 0.002
"""Groups are committed on the caller's thread only while the recent average
commit (fsync included) takes less than this."""


@dataclass(slots=True)
class Job:
    """One caller's batch and where its result goes."""

    batch: WriteBatch
    ops: Sequence[StagedOp]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[BatchResult]
    outcome: BatchResult | BaseException | None = field(default=None)


class SQLiteWriter:
    """The writer thread of one store (see the module docstring)."""

    def __init__(self, path: str, blobs: BlobDirectory) -> None:
        self.path = path
        self.blobs = blobs
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False
        self._conn: sqlite3.Connection | None = None
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, name=f"keepstone-sqlite-writer:{Path(path).name}", daemon=True
        )
        self.transactions = 0
        """Write transactions committed (tests and benchmarks read it)."""
        self.inline = 0
        """Of those, committed on the caller's thread (see the module docstring)."""
        self._stop_seen = False
        self._conn_lock = threading.Lock()
        """Held by whoever uses the connection: the writer thread or an inline commit."""
        self._busy = False
        self._commit_time = 0.0
        """Moving average of a group commit's wall time, in seconds."""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> concurrent.futures.Future[None]:
        """Start the thread; the future resolves once the database is open and migrated."""
        self._thread.start()
        return self._ready

    def submit(self, job: Job) -> None:
        """Queue ``job`` for the next group commit."""
        with self._lock:
            if self._stopped:
                raise StorageError("unavailable", "the store is closed")
            self._queue.put(job)

    def stop(self) -> None:
        """Commit what is queued, then close the connection and end the thread (blocks)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            self._conn = open_connection(self.path, self.blobs)
        except BaseException as exc:
            with self._lock:
                self._stopped = True
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            self._loop()
        finally:
            with self._lock:
                self._stopped = True  # nothing may be queued to a thread that is gone
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._fail_pending()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            self._drain(jobs)
            with self._conn_lock:
                self._busy = True
                try:
                    self._timed_group(jobs)
                except BaseException as exc:  # a bug: fail the group rather than hang them
                    for j in jobs:
                        if j.outcome is None or isinstance(j.outcome, BatchResult):
                            j.outcome = exc
                finally:
                    self._busy = False
            for j in jobs:
                _resolve(j)
            if self._stop_seen:
                return

    def _drain(self, jobs: list[Job]) -> None:
        """Add every job already queued to ``jobs`` (up to MAX_GROUP)."""
        while len(jobs) < MAX_GROUP and not self._stop_seen:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                return
            if more is None:
                self._stop_seen = True
            else:
                jobs.append(more)

    def _fail_pending(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.outcome = StorageError("unavailable", "the store is closed")
                _resolve(job)

    # ------------------------------------------------------------------ inline commits

    def commit_here(self, jobs: list[Job]) -> bool:
        """Commit ``jobs`` on the calling thread if that is cheap right now.

        Returns ``False``, having touched nothing, when the writer thread is
        busy or has work queued, another process holds the write lock, or
        recent commits were slow; the caller then submits the jobs. Outcomes
        are left in ``job.outcome`` for the caller to settle.
        """
        conn = self._conn
        if (
            conn is None
            or self._stopped
            or self._busy
            or self._commit_time > INLINE_MAX_SECONDS
            or not self._queue.empty()
            or not self._conn_lock.acquire(blocking=False)
        ):
            return False
        try:
            if self._busy or not self._queue.empty():
                return False
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                return False  # the lock is taken (or worse): let the writer thread wait for it
            self.inline += 1
            try:
                self._timed_group(jobs, begun=True)
            except Exception as exc:  # a bug: fail the group rather than hang its callers
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                for j in jobs:
                    if j.outcome is None or isinstance(j.outcome, BatchResult):
                        j.outcome = exc
            return True
        finally:
            self._conn_lock.release()

    def _timed_group(self, jobs: list[Job], *, begun: bool = False) -> None:
        started = time.perf_counter()
        self._commit_group(jobs, begun=begun)
        self._commit_time = 0.8 * self._commit_time + 0.2 * (time.perf_counter() - started)

    # ------------------------------------------------------------------ group commit

    def _commit_group(self, jobs: list[Job], *, alone: bool = False, begun: bool = False) -> None:
        conn = self._conn
        if conn is None:  # pragma: no cover - the loop starts only after opening
            raise RuntimeError("the SQLite writer has no connection")
        if not begun:
            try:
                retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), self.path, "starting a write")
            except StorageError as exc:
                for j in jobs:
                    j.outcome = _copy(exc)
                return
        if not (alone or begun):
            self._drain(jobs)  # what arrived while we waited for the lock joins this transaction
        live: list[Job] = []
        for j in jobs:
            if j.future.cancelled():
                j.outcome = StorageError("unavailable", "the caller gave up before the write")
            elif (missing := self._missing_blob(j)) is not None:
                j.outcome = missing
            else:
                live.append(j)
        try:
            unlink = self._stage_and_write(conn, live)
            with translate(self.path, "committing"):
                conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            pending = [j for j in live if not isinstance(j.outcome, StorageError)]
            error = _map(exc, self.path)
            if len(pending) > 1 and isinstance(exc, sqlite3.Error | OverflowError | OSError):
                for j in pending:  # find the job at fault: one transaction each
                    j.outcome = None
                    self._commit_group([j], alone=True)
                return
            for j in pending:
                j.outcome = _copy(error)
            return
        self.transactions += 1
        # Files go after COMMIT: a crash in between leaves an unreferenced file
        # (invisible), never a row without its file.
        for digest in unlink:
            with contextlib.suppress(OSError):
                self.blobs.delete(digest)

    def _stage_and_write(self, conn: sqlite3.Connection, live: list[Job]) -> list[str]:
        """Stage every job over the committed state and write what they left."""
        group = SQLiteGroup(conn)
        with translate(self.path, "reading"):
            view = group.read(plan_reads(j.ops for j in live))
        stager = GroupStager(view)
        for job in live:
            try:
                job.outcome = stager.stage(job.batch, job.ops)
            except StorageError as exc:
                job.outcome = exc
        if stager.group.is_empty():
            return []
        return group.write(stager.group)

    def _missing_blob(self, job: Job) -> StorageError | None:
        """Write again (or refuse) a blob file that vanished since the caller wrote it."""
        for op in job.ops:
            if isinstance(op, BlobStored) and not self.blobs.exists(op.digest):
                if op.data is None:
                    return StorageError(
                        "unavailable",
                        f"the file of blob {op.digest} vanished while it was stored; retry",
                        {"digest": op.digest},
                    )
                try:
                    self.blobs.write(op.digest, op.data)
                except OSError as exc:
                    return StorageError(
                        "unavailable",
                        f"the blob directory of {self.path} failed: {exc.strerror or exc}",
                        {"path": self.path, "errno": exc.errno},
                    )
        return None


def _map(exc: BaseException, path: str) -> BaseException:
    if isinstance(exc, sqlite3.Error | OverflowError):
        return storage_error(exc, path, "writing")
    if isinstance(exc, OSError):
        return StorageError(
            "unavailable",
            f"the blob directory of {path} failed: {exc.strerror or exc}",
            {"path": path, "errno": exc.errno},
        )
    if not isinstance(exc, StorageError):
        return StorageError("unavailable", f"the write transaction failed: {exc}")
    return exc


def _copy(error: BaseException) -> BaseException:
    if isinstance(error, StorageError):
        return StorageError(error.code, error.message, error.details)
    return error


def settle(job: Job) -> None:
    """Settle ``job``'s future with its outcome (call it on its loop's thread)."""
    outcome = job.outcome
    if job.future.done():
        return
    if isinstance(outcome, BatchResult):
        job.future.set_result(outcome)
    elif isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_exception(StorageError("unavailable", "the write was not applied"))


def _resolve(job: Job) -> None:
    """Settle ``job`` from the writer thread, through its loop."""
    with contextlib.suppress(RuntimeError):  # the caller's loop is closed
        job.loop.call_soon_threadsafe(settle, job)
