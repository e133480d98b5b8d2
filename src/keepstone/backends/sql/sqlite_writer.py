"""The SQLite writer: one connection, one thread, group commit.

Callers submit a :class:`Job` (a write batch and the future to resolve) and
await it. The writer thread takes everything pending and applies it in ONE
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``, so one fsync with
``synchronous=FULL``). Each job runs inside its own ``SAVEPOINT``: a refused
job is rolled back to its savepoint and only its caller gets the error, its
neighbours commit. Futures are resolved only after ``COMMIT`` returns.

Seqs and the audit chain head come from ``keepstone_counters``, read inside
the write transaction (another process may have written since), cached for the
rest of that transaction and written back before ``COMMIT``.

The writer also opens the database: pragmas (WAL, ``synchronous=FULL``) and
migrations, applied under ``BEGIN IMMEDIATE`` so two processes opening a new
store do not race.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from keepstone.backends.sql.sqlite_blobs import BlobDirectory, fsync_dir
from keepstone.backends.sql.sqlite_errors import is_busy, storage_error, translate
from keepstone.backends.sql.sqlite_schema import Layout, layout_of, load_migrations, select_sql
from keepstone.engine.match import check_row
from keepstone.engine.spi import (
    Append,
    BatchResult,
    BlobPut,
    Check,
    CheckNone,
    Delete,
    Op,
    Put,
    Restore,
)
from keepstone.engine.tables import AUDIT
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps
from keepstone.schemas.audit import GENESIS_HASH, chain_audit

T = TypeVar("T")

BUSY_TIMEOUT = 30.0
"""Seconds SQLite's busy handler waits for a lock held by another connection."""

BUSY_GIVE_UP = 120.0
"""Seconds of retrying SQLITE_BUSY (beyond the busy handler) before ``unavailable``."""

MAX_GROUP = 512
"""Most jobs committed in one transaction."""


@dataclass(slots=True)
class BlobFile:
    """Internal op: record a blob whose bytes are already a durable file."""

    digest: str
    size: int
    data: bytes | None = None
    """The bytes, when at hand, to rewrite a file that vanished meanwhile."""


@dataclass(slots=True)
class BlobDelete:
    """Internal op: forget a blob; its file is removed after ``COMMIT``."""

    digest: str


WriterOp = Op | BlobFile | BlobDelete


@dataclass(slots=True)
class Job:
    """One caller's batch and where its result goes."""

    ops: Sequence[WriterOp]
    audit: Sequence[dict[str, Any]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[BatchResult]
    outcome: BatchResult | BaseException | None = field(default=None)


def retry_busy(action: Callable[[], T], path: str, during: str) -> T:
    """Run ``action``, retrying while another connection holds the lock."""
    deadline = time.monotonic() + BUSY_GIVE_UP
    delay = 0.001
    while True:
        try:
            return action()
        except sqlite3.Error as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise storage_error(exc, path, during) from exc
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.05)


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit)."""
    with translate(path, "opening"):
        return sqlite3.connect(
            path,
            timeout=BUSY_TIMEOUT,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=512,
        )


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
        self._stop_seen = False
        # Per-transaction state.
        self._counters: dict[str, tuple[int, str | None]] = {}
        self._dirty: set[str] = set()
        self._unlink: list[str] = []

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
            self._conn = self._open()
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
            try:
                self._commit_group(jobs)
            except BaseException as exc:  # a bug: fail the group rather than hang its callers
                for j in jobs:
                    if j.outcome is None or isinstance(j.outcome, BatchResult):
                        j.outcome = exc
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

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        created = _create_owner_only(self.path)
        conn = connect(self.path)
        try:
            mode = retry_busy(
                lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone(), self.path, "opening"
            )
            if mode is None or str(mode[0]).lower() != "wal":
                raise StorageError(
                    "config",
                    f"SQLite cannot use WAL mode for {self.path} (got {mode!r}); "
                    "keepstone needs a local filesystem that supports it",
                    {"path": self.path},
                )
            with translate(self.path, "opening"):
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA journal_size_limit=67108864")
                conn.execute("PRAGMA cache_size=-16384")
                conn.execute("PRAGMA temp_store=MEMORY")
            self._migrate(conn)
            if created:
                fsync_dir(Path(self.path).parent)
            self.blobs.clean_temps()
        except OSError as exc:
            conn.close()
            raise StorageError(
                "unavailable",
                f"cannot make {self.path} durable: {exc.strerror or exc}",
                {"path": self.path, "errno": exc.errno},
            ) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrations = load_migrations()
        latest = migrations[-1].version if migrations else 0
        with translate(self.path, "reading the schema version"):
            if schema_version(conn, self.path) == latest:
                return
        retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), self.path, "migrating")
        try:
            with translate(self.path, "migrating"):
                current = schema_version(conn, self.path)
                if current > latest:
                    raise StorageError(
                        "unsupported_schema",
                        f"the store {self.path} has schema version {current}, newer than this "
                        f"keepstone supports ({latest}): upgrade keepstone to open it",
                        {"path": self.path, "schema_version": current, "supported": latest},
                    )
                for migration in migrations[current:]:
                    for statement in migration.statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO keepstone_meta (name, value) VALUES ('schema_version', ?) "
                        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        (migration.version,),
                    )
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ group commit

    def _commit_group(self, jobs: list[Job]) -> None:
        conn = self._conn
        if conn is None:  # pragma: no cover - the loop starts only after opening
            raise RuntimeError("the SQLite writer has no connection")
        try:
            retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), self.path, "starting a write")
        except StorageError as exc:
            for j in jobs:
                j.outcome = _copy(exc)
            return
        self._drain(jobs)  # what arrived while we waited for the lock joins this transaction
        live = [j for j in jobs if not j.future.cancelled()]
        for j in jobs:
            if j.future.cancelled():
                j.outcome = StorageError("unavailable", "the caller gave up before the write")
        self._counters = {}
        self._dirty = set()
        self._unlink = []
        single = len(live) == 1  # no neighbour to protect: no savepoint needed
        for index, job in enumerate(live):
            saved = dict(self._counters), set(self._dirty), len(self._unlink)
            try:
                if not single:
                    conn.execute("SAVEPOINT batch")
                job.outcome = self._apply(conn, job)
                if not single:
                    conn.execute("RELEASE batch")
            except BaseException as exc:
                error = _map(exc, self.path)
                job.outcome = error
                self._counters, self._dirty = saved[0], saved[1]
                del self._unlink[saved[2] :]
                if not single and conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK TO batch")
                        conn.execute("RELEASE batch")
                        continue
                    except sqlite3.Error:
                        pass
                # A lone job, or the transaction is gone (I/O error, disk full):
                # roll everything back; nothing of this transaction commits.
                self._abandon(conn, live[:index] + live[index + 1 :], error)
                return
        try:
            with translate(self.path, "committing"):
                for name in self._dirty:
                    seq, head = self._counters[name]
                    conn.execute(
                        "INSERT INTO keepstone_counters (name, seq, hash) VALUES (?, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                        (name, seq, head),
                    )
                # A file whose blob a later job of this transaction stored again stays.
                doomed = [
                    d
                    for d in dict.fromkeys(self._unlink)
                    if conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (d,)).fetchone() is None
                ]
                conn.execute("COMMIT")
            self.transactions += 1
        except StorageError as exc:
            self._abandon(conn, [j for j in live if isinstance(j.outcome, BatchResult)], exc)
            return
        # Files go after COMMIT: a crash in between leaves an unreferenced file
        # (invisible), never a row without its file.
        for digest in doomed:
            with contextlib.suppress(OSError):
                self.blobs.delete(digest)

    def _abandon(self, conn: sqlite3.Connection, jobs: list[Job], error: BaseException) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if not isinstance(error, StorageError):
            error = StorageError("unavailable", f"the write transaction failed: {error}")
        for j in jobs:
            j.outcome = _copy(error)

    # ------------------------------------------------------------------ one batch

    def _apply(self, conn: sqlite3.Connection, job: Job) -> BatchResult:
        seqs: list[int | None] = []
        for op in job.ops:
            if isinstance(op, Put):
                self._put(conn, layout_of(op.table), op.row, op.expect)
                seqs.append(None)
            elif isinstance(op, Append):
                seqs.append(self._append(conn, op))
            elif isinstance(op, Delete):
                self._delete(conn, layout_of(op.table), op.key)
                seqs.append(None)
            elif isinstance(op, Check):
                self._check(conn, op)
                seqs.append(None)
            elif isinstance(op, CheckNone):
                layout = layout_of(op.table)
                sql, params = select_sql(layout, op.where, what="1", limit=1, ordered=False)
                if conn.execute(sql, params).fetchone() is not None:
                    raise StorageError(op.code, op.message, dict(op.details))
                seqs.append(None)
            elif isinstance(op, BlobPut):
                conn.execute(
                    "INSERT INTO blobs (digest, size, data) VALUES (?, ?, ?) "
                    "ON CONFLICT (digest) DO NOTHING",
                    (op.digest, len(op.data), op.data),
                )
                seqs.append(None)
            elif isinstance(op, Restore):
                self._restore(conn, op)
                seqs.append(None)
            elif isinstance(op, BlobFile):
                if not self.blobs.exists(op.digest):
                    if op.data is None:
                        raise StorageError(
                            "unavailable",
                            f"the file of blob {op.digest} vanished while it was stored; retry",
                            {"digest": op.digest},
                        )
                    self.blobs.write(op.digest, op.data)
                conn.execute(
                    "INSERT INTO blobs (digest, size, data) VALUES (?, ?, NULL) "
                    "ON CONFLICT (digest) DO NOTHING",
                    (op.digest, op.size),
                )
                seqs.append(None)
            elif isinstance(op, BlobDelete):
                conn.execute("DELETE FROM blobs WHERE digest = ?", (op.digest,))
                self._unlink.append(op.digest)
                seqs.append(None)
            else:
                raise StorageError("invalid", f"unknown write op {type(op).__name__}")
        audit_seqs: list[int] = []
        if job.audit:
            layout = layout_of(AUDIT)
            for draft in job.audit:
                last, head = self._counter(conn, AUDIT.name)
                record = chain_audit(draft, last + 1, head or GENESIS_HASH)
                self._put(conn, layout, record, "any")
                self._counters[AUDIT.name] = (last + 1, str(record["hash"]))
                self._dirty.add(AUDIT.name)
                audit_seqs.append(last + 1)
        return BatchResult(seqs, audit_seqs)

    def _counter(self, conn: sqlite3.Connection, name: str) -> tuple[int, str | None]:
        found = self._counters.get(name)
        if found is None:
            row = conn.execute(
                "SELECT seq, hash FROM keepstone_counters WHERE name = ?", (name,)
            ).fetchone()
            found = (0, None) if row is None else (int(row[0]), row[1])
            self._counters[name] = found
        return found

    def _put(
        self, conn: sqlite3.Connection, layout: Layout, row: dict[str, Any], expect: str
    ) -> None:
        params = layout.row_params(row)
        sql = layout.sql
        if not layout.has_rid and not layout.tags_table:
            if expect == "absent":
                if conn.execute(sql["insert_absent"], params).rowcount == 0:
                    raise _exists(layout, row)
            elif expect == "present":
                if conn.execute(sql["update"], [*params[1:], params[0]]).rowcount == 0:
                    raise _missing(layout, row)
            else:
                conn.execute(sql["upsert"], params)
            return
        old = conn.execute(sql["old" if layout.has_rid else "exists"], (params[0],)).fetchone()
        if old is not None and expect == "absent":
            raise _exists(layout, row)
        if old is None and expect == "present":
            raise _missing(layout, row)
        key = layout.table.key_of(row)
        if old is None:
            if layout.has_rid:
                rid = conn.execute(sql["insert_rid"], params).fetchone()[0]
            else:
                conn.execute(sql["insert_absent"], params)
        else:
            conn.execute(sql["update"], [*params[1:], params[0]])
            if layout.has_rid:
                rid = old[0]
                self._fts_delete(conn, layout, rid, old[1])
            if layout.tags_table:
                conn.execute(sql["tags_delete"], (key,))
        if layout.has_rid:
            texts = layout.fts_values(row)
            if texts is not None:
                conn.execute(sql["fts_insert"], (rid, *texts))
        if layout.tags_table:
            tags = layout.tag_rows(key, row)
            if tags:
                conn.executemany(sql["tags_insert"], tags)

    @staticmethod
    def _fts_delete(conn: sqlite3.Connection, layout: Layout, rid: int, body: bytes) -> None:
        texts = layout.fts_values(orjson.loads(body))
        if texts is not None:
            conn.execute(layout.sql["fts_delete"], (rid, *texts))

    def _delete(self, conn: sqlite3.Connection, layout: Layout, key: str) -> None:
        param = layout.key_param(key)
        if param is None:
            return
        if layout.has_rid:
            old = conn.execute(layout.sql["old"], (param,)).fetchone()
            if old is None:
                return
            self._fts_delete(conn, layout, old[0], old[1])
        conn.execute(layout.sql["delete"], (param,))
        if layout.tags_table:
            conn.execute(layout.sql["tags_delete"], (key,))

    def _append(self, conn: sqlite3.Connection, op: Append) -> int:
        table = op.table
        layout = layout_of(table)
        if not layout.key_is_seq:
            key = table.key_of(op.row)
            found = conn.execute(layout.sql["get"], (key,)).fetchone()
            if found is not None:
                stored = orjson.loads(found[0])
                if op.idempotent and _same_content(stored, op.row):
                    return int(stored["seq"])
                raise StorageError(
                    "conflict",
                    f"{table.name} {key!r} already exists with different content",
                    {"table": table.name, "key": key},
                )
        last, _ = self._counter(conn, table.name)
        row = dict(op.row)
        row["seq"] = last + 1
        self._put(conn, layout, row, "any")
        self._counters[table.name] = (last + 1, None)
        self._dirty.add(table.name)
        return last + 1

    def _restore(self, conn: sqlite3.Connection, op: Restore) -> None:
        """Write an imported row as is; move the seq counter (and audit head) up to it."""
        row = dict(op.row)
        self._put(conn, layout_of(op.table), row, "any")
        if not op.table.seq:
            return
        name = op.table.name
        last, head = self._counter(conn, name)
        seq = int(row["seq"])
        if seq >= last:
            self._counters[name] = (seq, str(row["hash"]) if name == AUDIT.name else head)
            self._dirty.add(name)

    @staticmethod
    def _check(conn: sqlite3.Connection, op: Check) -> None:
        layout = layout_of(op.table)
        param = layout.key_param(op.key)
        if param is None:
            check_row(op, None)
            return
        if not op.equals:
            found = conn.execute(layout.sql["exists"], (param,)).fetchone()
            check_row(op, None if found is None else {})
            return
        found = conn.execute(layout.sql["get"], (param,)).fetchone()
        check_row(op, None if found is None else orjson.loads(found[0]))


def _create_owner_only(path: str) -> bool:
    """Create an empty database file readable by its owner only (SQLite gives its
    ``-wal`` and ``-shm`` files the same mode); ``False`` if it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise StorageError(
            "config", f"cannot create {path}: {exc.strerror or exc}", {"path": path}
        ) from exc
    os.close(fd)
    return True


def schema_version(conn: sqlite3.Connection, path: str) -> int:
    """The version stamped in ``keepstone_meta`` (0 for a new, empty database).

    Raises:
        StorageError: ``config`` when the database holds tables but is not a
            keepstone store.
    """
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    if "keepstone_meta" not in tables:
        if tables:
            raise StorageError(
                "config",
                f"{path} is a SQLite database but not a keepstone store",
                {"path": path, "tables": sorted(tables)[:10]},
            )
        return 0
    row = conn.execute("SELECT value FROM keepstone_meta WHERE name = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row is not None else 0
    except (TypeError, ValueError) as exc:
        raise StorageError(
            "corrupt", f"the schema version stamped in {path} is unreadable", {"path": path}
        ) from exc


def _same_content(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    a = {k: v for k, v in stored.items() if k != "seq"}
    b = {k: v for k, v in new.items() if k != "seq"}
    return dumps(a) == dumps(b)


def _exists(layout: Layout, row: dict[str, Any]) -> StorageError:
    key = layout.table.key_of(row)
    name = layout.name
    return StorageError("conflict", f"{name} {key!r} already exists", {"table": name, "key": key})


def _missing(layout: Layout, row: dict[str, Any]) -> StorageError:
    key = layout.table.key_of(row)
    name = layout.name
    return StorageError("not_found", f"{name} {key!r} does not exist", {"table": name, "key": key})


def _map(exc: BaseException, path: str) -> BaseException:
    if isinstance(exc, sqlite3.Error | OverflowError):
        return storage_error(exc, path, "writing")
    if isinstance(exc, OSError):
        return StorageError(
            "unavailable",
            f"the blob directory of {path} failed: {exc.strerror or exc}",
            {"path": path, "errno": exc.errno},
        )
    return exc


def _copy(error: BaseException) -> BaseException:
    if isinstance(error, StorageError):
        return StorageError(error.code, error.message, error.details)
    return error


def _resolve(job: Job) -> None:
    outcome = job.outcome

    def settle() -> None:
        if job.future.done():
            return
        if isinstance(outcome, BatchResult):
            job.future.set_result(outcome)
        elif isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_exception(StorageError("unavailable", "the write was not applied"))

    with contextlib.suppress(RuntimeError):  # the caller's loop is closed
        job.loop.call_soon_threadsafe(settle)
