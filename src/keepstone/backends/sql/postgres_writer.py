"""The PostgreSQL writer: one connection per open store, group commit, seq = commit order.

Callers submit a :class:`Job` (a write batch and the future to resolve) and
await it. One asyncio task takes everything pending and applies it in ONE
transaction:

1. ``BEGIN; LOCK TABLE keepstone_counters IN EXCLUSIVE MODE``. Every writer of
   the store, in every process, takes this lock first, so write transactions
   run one after another: seqs and the audit chain are assigned in commit
   order, and a follower that sees seq N has already seen every seq below it.
   Readers are never blocked (plain SELECTs do not conflict with the lock).
2. One query reads the counters (fresh, after the lock) and every row the
   group's preconditions need (``Check``, ``Put`` with ``expect``,
   idempotent ``Append``).
3. Each job is staged in Python over the rows read, in op order, seeing the
   earlier ops of its batch and the batches before it in the group (the same
   overlay rules as the in-memory reference). A refused job's staged effects
   are dropped; its neighbours are not affected. ``CheckNone`` asks the
   server, leaving out the rows the group has staged, and checks those rows in
   Python.
4. One statement writes the net effect of the group (data-modifying CTEs:
   upserts and deletes per table, the counters, the blob rows), then
   ``COMMIT``. Futures resolve after the commit returns.

A driver error that is not a refusal (a value PostgreSQL cannot hold, say)
aborts the transaction; the group is then run again one job per transaction
so that only the job at fault fails. Serialization failures and deadlocks are
retried; a lost connection before ``COMMIT`` is retried on a new connection;
a connection lost during ``COMMIT`` leaves the outcome unknown and is
reported as ``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import orjson

from keepstone.backends.records.engine_support import check_row, matches
from keepstone.backends.records.tables import AUDIT
from keepstone.backends.sql.common import quote
from keepstone.backends.sql.postgres_errors import is_disconnect, is_retryable, storage_error
from keepstone.backends.sql.postgres_schema import PgLayout, layout_of, select_sql
from keepstone.errors import StorageError
from keepstone.ports.engine import (
    Append,
    BatchResult,
    BlobPut,
    Check,
    CheckNone,
    Delete,
    Op,
    Put,
    Restore,
    Table,
)
from keepstone.schemas._base import dumps
from keepstone.schemas.audit import GENESIS_HASH, chain_audit

MAX_GROUP = 256
"""Most jobs committed in one transaction."""

RETRIES = 8
"""Attempts at a group that hits serialization failures, deadlocks or a lost
connection (before ``COMMIT``)."""

CHUNK_STATEMENT_BYTES = 32 << 20
"""Blob chunk bytes sent per statement."""

_MISSING = object()


class ObjectBlobs(Protocol):
    """What the writer needs of an object store holding large blobs (S3)."""

    async def exists(self, digest: str) -> bool: ...

    async def put_bytes(self, digest: str, data: bytes) -> bool: ...

    async def delete(self, digest: str) -> None: ...


@dataclass(slots=True)
class BlobRef:
    """Internal op: record a blob whose bytes were written to the object store."""

    digest: str
    size: int
    data: bytes | None = None
    """The bytes, when at hand, to upload again if the object vanished meanwhile."""


@dataclass(slots=True)
class BlobDelete:
    """Internal op: forget a blob (and remove its bytes)."""

    digest: str


WriterOp = Op | BlobRef | BlobDelete


@dataclass(slots=True)
class Job:
    """One caller's batch and where its result goes."""

    ops: Sequence[WriterOp]
    audit: Sequence[dict[str, Any]]
    future: asyncio.Future[BatchResult]


@dataclass(slots=True)
class _BlobChange:
    delete: bool
    size: int = 0
    place: str = "inline"
    data: bytes | None = None


@dataclass
class _Stage:
    """Staged effects of a group, or of one job on top of its group's."""

    rows: dict[str, dict[str, tuple[Table, dict[str, Any] | None, bytes | None]]] = field(
        default_factory=dict
    )
    counters: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    blobs: dict[str, _BlobChange] = field(default_factory=dict)

    def merge(self, other: _Stage) -> None:
        for name, rows in other.rows.items():
            self.rows.setdefault(name, {}).update(rows)
        self.counters.update(other.counters)
        for digest, change in other.blobs.items():
            self.blobs.pop(digest, None)
            self.blobs[digest] = change


class _Abort(Exception):
    """The group's transaction cannot go on (a driver error, not a refusal)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class PostgresWriter:
    """The writer task of one open store (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        where: str,
        *,
        chunk_size: int,
        objects: ObjectBlobs | None = None,
    ) -> None:
        self._connect = connect
        self.where = where
        self.chunk_size = chunk_size
        self.objects = objects
        self._conn: asyncpg.Connection | None = None
        self._queue: deque[Job] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.transactions = 0
        """Write transactions committed (tests and benchmarks read it)."""
        self.retries = 0
        """Transactions run again after a serialization failure, deadlock or lost connection."""

    # ------------------------------------------------------------------ lifecycle

    def submit(self, job: Job) -> None:
        """Queue ``job`` for the next group commit."""
        if self._stopping:
            raise StorageError("unavailable", "the store is closed")
        self._queue.append(job)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def stop(self) -> None:
        """Commit what is queued, then close the connection."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(StorageError("unavailable", "the store is closed"))
        self._queue.clear()
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                conn.terminate()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            jobs: list[Job] = []
            while self._queue and len(jobs) < MAX_GROUP:
                job = self._queue.popleft()
                if not job.future.done():
                    jobs.append(job)
            if jobs:
                await self._commit(jobs)

    # ------------------------------------------------------------------ one group

    async def _commit(self, jobs: list[Job]) -> None:
        delay = 0.002
        for attempt in range(RETRIES):
            try:
                outcomes = await self._transaction(jobs)
            except _Abort as abort:
                cause = abort.cause
                lost = is_disconnect(cause)
                if lost:
                    await self._drop_connection()
                unknown = lost and self._commit_sent
                if (is_retryable(cause) or (lost and not unknown)) and attempt < RETRIES - 1:
                    self.retries += 1
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.25)
                    continue
                if len(jobs) > 1 and isinstance(cause, asyncpg.PostgresError) and not lost:
                    for job in jobs:  # find the job at fault: one transaction each
                        await self._commit([job])
                    return
                error = self._error(cause)
                for job in jobs:
                    _settle(job, _copy(error))
                return
            except Exception as exc:  # a bug: fail the group rather than hang its callers
                for job in jobs:
                    _settle(job, exc)
                return
            except BaseException:
                for job in jobs:
                    _settle(job, _closed())
                raise
            for job, outcome in zip(jobs, outcomes, strict=True):
                _settle(job, outcome)
            return

    def _error(self, cause: BaseException) -> StorageError:
        if isinstance(cause, StorageError):
            return cause
        if self._commit_sent and is_disconnect(cause):
            return StorageError(
                "unavailable",
                f"the connection to PostgreSQL at {self.where} was lost during COMMIT; "
                "the write may or may not have been applied",
                {"server": self.where, "during": "committing"},
            )
        return storage_error(cause, where=self.where, during="writing")

    async def _transaction(self, jobs: list[Job]) -> list[BatchResult | StorageError]:
        self._commit_sent = False
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            conn = self._conn
            await conn.execute(
                "BEGIN ISOLATION LEVEL READ COMMITTED; "
                "LOCK TABLE keepstone_counters IN EXCLUSIVE MODE"
            )
        except Exception as exc:
            raise _Abort(exc) from exc
        try:
            tx = _Transaction(self, conn)
            await tx.prefetch(jobs)
            outcomes: list[BatchResult | StorageError] = []
            for job in jobs:
                stage = _Stage()
                try:
                    outcomes.append(await tx.stage_job(stage, job))
                except StorageError as exc:
                    outcomes.append(exc)
                    continue
                tx.group.merge(stage)
            if any(isinstance(o, BatchResult) for o in outcomes):
                await tx.flush()
                self._commit_sent = True
                await conn.execute("COMMIT")
                self.transactions += 1
            else:
                await conn.execute("ROLLBACK")
            return outcomes
        except Exception as exc:
            cause = exc.cause if isinstance(exc, _Abort) else exc
            if not self._commit_sent and not conn.is_closed():
                try:
                    await conn.execute("ROLLBACK")
                except Exception:
                    conn.terminate()
            raise _Abort(cause) from exc
        except BaseException:
            conn.terminate()
            self._conn = None
            raise

    _commit_sent = False


class _Transaction:
    """Staging state of one group transaction."""

    def __init__(self, writer: PostgresWriter, conn: asyncpg.Connection) -> None:
        self.writer = writer
        self.conn = conn
        self.group = _Stage()
        self.db: dict[tuple[str, str], bytes | None] = {}
        self.db_counters: dict[str, tuple[int, str | None]] = {}

    # ------------------------------------------------------------------ reading

    async def prefetch(self, jobs: list[Job]) -> None:
        wanted: dict[str, dict[str, Any]] = {}
        for job in jobs:
            for op in job.ops:
                table: Table | None = None
                key = ""
                if isinstance(op, Check):
                    table, key = op.table, op.key
                elif (isinstance(op, Put) and op.expect != "any") or (
                    isinstance(op, Append) and op.table.key != ("seq",)
                ):
                    table, key = op.table, op.table.key_of(op.row)
                if table is None:
                    continue
                layout = layout_of(table)
                param = layout.key_param(key)
                if param is None:
                    self.db[(table.name, key)] = None
                else:
                    wanted.setdefault(table.name, {})[key] = param
        parts = ["SELECT -1, name, NULL::bytea, seq, hash FROM keepstone_counters"]
        args: list[Any] = []
        names = sorted(wanted)
        for tag, name in enumerate(names):
            layout = layout_of_name(name)
            k = quote(layout.key_column)
            key_text = f"{k}::text" if layout.key_is_seq else k
            args.append(list(wanted[name].values()))
            parts.append(
                f"SELECT {tag}, {key_text}, body, NULL::bigint, NULL::text FROM "
                f"{quote(name)} WHERE {k} = ANY(${len(args)}::{layout.key_type}[])"
            )
        for tag_, key, body, seq, head in await self.conn.fetch(" UNION ALL ".join(parts), *args):
            if tag_ < 0:
                self.db_counters[key] = (int(seq), head)
            else:
                self.db[(names[tag_], key)] = bytes(body)
        for name in names:
            for key in wanted[name]:
                self.db.setdefault((name, key), None)

    async def current(self, stage: _Stage, table: Table, key: str) -> dict[str, Any] | None:
        for source in (stage.rows, self.group.rows):
            found = source.get(table.name, {}).get(key)
            if found is not None:
                return found[1]
        raw = self.db.get((table.name, key), _MISSING)
        if raw is _MISSING:
            layout = layout_of(table)
            param = layout.key_param(key)
            raw = None if param is None else await self.conn.fetchval(layout.sql["get"], param)
            raw = None if raw is None else bytes(raw)
            self.db[(table.name, key)] = raw
        return None if raw is None else orjson.loads(raw)  # type: ignore[arg-type]

    def counter(self, stage: _Stage, name: str) -> tuple[int, str | None]:
        for source in (stage.counters, self.group.counters, self.db_counters):
            if name in source:
                return source[name]
        return (0, None)

    # ------------------------------------------------------------------ staging

    async def stage_job(self, stage: _Stage, job: Job) -> BatchResult:
        seqs: list[int | None] = []
        for op in job.ops:
            if isinstance(op, Put):
                key = op.table.key_of(op.row)
                if op.expect != "any":
                    exists = await self.current(stage, op.table, key) is not None
                    if op.expect == "absent" and exists:
                        raise StorageError(
                            "conflict",
                            f"{op.table.name} {key!r} already exists",
                            {"table": op.table.name, "key": key},
                        )
                    if op.expect == "present" and not exists:
                        raise StorageError(
                            "not_found",
                            f"{op.table.name} {key!r} does not exist",
                            {"table": op.table.name, "key": key},
                        )
                _put(stage, op.table, key, op.row)
                seqs.append(None)
            elif isinstance(op, Append):
                seqs.append(await self._append(stage, op))
            elif isinstance(op, Delete):
                stage.rows.setdefault(op.table.name, {})[op.key] = (op.table, None, None)
                seqs.append(None)
            elif isinstance(op, Check):
                check_row(op, await self.current(stage, op.table, op.key))
                seqs.append(None)
            elif isinstance(op, CheckNone):
                await self._check_none(stage, op)
                seqs.append(None)
            elif isinstance(op, BlobPut):
                place = "inline" if len(op.data) <= self.writer.chunk_size else "chunks"
                stage.blobs.pop(op.digest, None)
                stage.blobs[op.digest] = _BlobChange(False, len(op.data), place, op.data)
                seqs.append(None)
            elif isinstance(op, BlobRef):
                stage.blobs.pop(op.digest, None)
                stage.blobs[op.digest] = _BlobChange(False, op.size, "s3", op.data)
                seqs.append(None)
            elif isinstance(op, BlobDelete):
                stage.blobs.pop(op.digest, None)
                stage.blobs[op.digest] = _BlobChange(True)
                seqs.append(None)
            elif isinstance(op, Restore):
                self._restore(stage, op)
                seqs.append(None)
            else:
                raise StorageError("invalid", f"unknown write op {type(op).__name__}")
        audit_seqs: list[int] = []
        for draft in job.audit:
            last, head = self.counter(stage, AUDIT.name)
            record = chain_audit(draft, last + 1, head or GENESIS_HASH)
            _put(stage, AUDIT, str(last + 1), record)
            stage.counters[AUDIT.name] = (last + 1, str(record["hash"]))
            audit_seqs.append(last + 1)
        return BatchResult(seqs, audit_seqs)

    async def _append(self, stage: _Stage, op: Append) -> int:
        table = op.table
        if table.key != ("seq",):
            key = table.key_of(op.row)
            existing = await self.current(stage, table, key)
            if existing is not None:
                if op.idempotent and _same_content(existing, op.row):
                    return int(existing["seq"])
                raise StorageError(
                    "conflict",
                    f"{table.name} {key!r} already exists with different content",
                    {"table": table.name, "key": key},
                )
        last, head = self.counter(stage, table.name)
        row = dict(op.row)
        row["seq"] = last + 1
        _put(stage, table, table.key_of(row), row)
        stage.counters[table.name] = (last + 1, head)
        return last + 1

    def _restore(self, stage: _Stage, op: Restore) -> None:
        row = dict(op.row)
        _put(stage, op.table, op.table.key_of(row), row)
        if not op.table.seq:
            return
        last, head = self.counter(stage, op.table.name)
        seq = int(row["seq"])
        if seq >= last:
            stage.counters[op.table.name] = (
                seq,
                str(row["hash"]) if op.table.name == AUDIT.name else head,
            )

    async def _check_none(self, stage: _Stage, op: CheckNone) -> None:
        layout = layout_of(op.table)
        staged: dict[str, tuple[Table, dict[str, Any] | None, bytes | None]] = {}
        for source in (self.group.rows, stage.rows):
            staged.update(source.get(op.table.name, {}))
        for _, row, _ in staged.values():
            if row is not None and matches(op.table, row, op.where):
                raise StorageError(op.code, op.message, dict(op.details))
        exclude = [p for p in (layout.key_param(k) for k in staged) if p is not None]
        sql, params = select_sql(
            layout, op.where, what="1", limit=1, ordered=False, exclude=exclude
        )
        if await self.conn.fetchval(sql, *params) is not None:
            raise StorageError(op.code, op.message, dict(op.details))

    # ------------------------------------------------------------------ writing

    async def flush(self) -> None:
        """Write the group's net effect (one statement, plus blob chunks)."""
        group = self.group
        ctes: list[str] = []
        args: list[Any] = []
        for name in sorted(group.rows):
            layout = layout_of_name(name)
            upserts: list[list[Any]] = []
            deletes: list[Any] = []
            for key, (_, row, body) in group.rows[name].items():
                if row is None:
                    param = layout.key_param(key)
                    if param is not None:
                        deletes.append(param)
                else:
                    upserts.append(layout.row_values(row, body or dumps(row)))
            if upserts:
                columns = [list(c) for c in zip(*upserts, strict=True)]
                ctes.append(layout.upsert_sql(len(args)))
                args += columns
            if deletes:
                ctes.append(layout.delete_sql(len(args)))
                args.append(deletes)
        changed = {n: v for n, v in group.counters.items() if self.db_counters.get(n) != v}
        if changed:
            names = sorted(changed)
            n = len(args)
            ctes.append(
                "INSERT INTO keepstone_counters (name, seq, hash) "
                f"SELECT * FROM unnest(${n + 1}::text[], ${n + 2}::bigint[], ${n + 3}::text[]) "
                "ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash"
            )
            args += [names, [changed[x][0] for x in names], [changed[x][1] for x in names]]
        puts = {d: c for d, c in group.blobs.items() if not c.delete}
        drops = [d for d, c in group.blobs.items() if c.delete]
        tail = "SELECT NULL::text, NULL::text WHERE FALSE"
        if puts:
            digests = list(puts)
            n = len(args)
            ctes.append(
                "INSERT INTO blobs (digest, size, place, data) SELECT * FROM unnest("
                f"${n + 1}::text[], ${n + 2}::bigint[], ${n + 3}::text[], ${n + 4}::bytea[]) "
                "ON CONFLICT (digest) DO NOTHING RETURNING digest, place"
            )
            args += [
                digests,
                [puts[d].size for d in digests],
                [puts[d].place for d in digests],
                [puts[d].data if puts[d].place == "inline" else None for d in digests],
            ]
            tail = f"SELECT digest, 'put:' || place FROM w{len(ctes) - 1}"
        if drops:
            n = len(args)
            ctes.append(f"DELETE FROM blob_chunks WHERE digest = ANY(${n + 1}::text[])")
            ctes.append(
                f"DELETE FROM blobs WHERE digest = ANY(${n + 1}::text[]) RETURNING digest, place"
            )
            args.append(drops)
            deleted = f"SELECT digest, 'del:' || place FROM w{len(ctes) - 1}"
            tail = deleted if not puts else f"{tail} UNION ALL {deleted}"
        if not ctes:
            return
        sql = "WITH " + ", ".join(f"w{i} AS ({c})" for i, c in enumerate(ctes)) + " " + tail
        written = await self.conn.fetch(sql, *args)
        await self._blob_effects([(r[0], r[1]) for r in written], puts)

    async def _blob_effects(
        self, written: list[tuple[str, str]], puts: dict[str, _BlobChange]
    ) -> None:
        objects = self.writer.objects
        for digest, what in written:
            change = puts.get(digest)
            if what == "put:chunks" and change is not None and change.data is not None:
                await self._write_chunks(digest, change.data)
            elif what == "put:s3" and change is not None:
                # Under the lock: make sure the object a concurrent purge may
                # have removed is there before the row that names it commits.
                if objects is None or not await objects.exists(digest):
                    if objects is None or change.data is None:
                        raise _Abort(
                            StorageError(
                                "unavailable",
                                f"the object of blob {digest} vanished while it was stored; retry",
                                {"digest": digest},
                            )
                        )
                    await objects.put_bytes(digest, change.data)
            elif what == "del:s3" and objects is not None:
                # Removed before COMMIT, under the lock, so that no writer can
                # record this digest again between our commit and the removal.
                await objects.delete(digest)

    async def _write_chunks(self, digest: str, data: bytes) -> None:
        size = self.writer.chunk_size
        pieces = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        per_statement = max(1, CHUNK_STATEMENT_BYTES // size)
        for start in range(0, len(pieces), per_statement):
            part = pieces[start : start + per_statement]
            await self.conn.execute(
                "INSERT INTO blob_chunks (digest, n, data) "
                "SELECT $1::text, n, d FROM unnest($2::int[], $3::bytea[]) AS u(n, d)",
                digest,
                list(range(start, start + len(part))),
                part,
            )


def layout_of_name(name: str) -> PgLayout:
    from keepstone.backends.sql.postgres_schema import LAYOUTS

    return LAYOUTS[name]


def _put(stage: _Stage, table: Table, key: str, row: dict[str, Any]) -> None:
    stage.rows.setdefault(table.name, {})[key] = (table, row, dumps(row))


def _same_content(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    a = {k: v for k, v in stored.items() if k != "seq"}
    b = {k: v for k, v in new.items() if k != "seq"}
    return dumps(a) == dumps(b)


def _copy(error: StorageError) -> StorageError:
    return StorageError(error.code, error.message, error.details)


def _closed() -> StorageError:
    return StorageError("unavailable", "the write was not applied (the store is closing)")


def _settle(job: Job, outcome: BatchResult | BaseException) -> None:
    if job.future.done():
        return
    if isinstance(outcome, BatchResult):
        job.future.set_result(outcome)
    else:
        job.future.set_exception(outcome)
