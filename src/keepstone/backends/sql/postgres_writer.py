"""The PostgreSQL writer: one connection per open store, group commit, seq = commit order.

Callers submit a :class:`Job` (a write batch and the future to resolve) and
await it. One asyncio task takes everything pending and writes it as ONE
group:

1. One query reads the counters (the seqs, the audit chain head and
   ``generation``, the number of committed writes) and every row the group's
   preconditions need (``Check``, ``Put`` with ``expect``, idempotent
   ``Append``).
2. The jobs are staged in Python over the rows read by the shared
   :class:`~keepstone.engine.stager.GroupStager` (the rules every engine
   follows). A refused job's staged effects are dropped; its neighbours are
   not affected. Each ``CheckNone`` asks the server for the few matching keys
   the stager needs (see :func:`~keepstone.engine.stager.plan_reads`).
3. One statement writes the net effect of the group (data-modifying CTEs:
   upserts and deletes per table, the counters, the blob rows), every part of
   it gated on bumping ``generation`` from the value read in step 1. The row
   lock that bump takes is held until commit, so writers in every process
   commit one after another: seqs and the audit chain are assigned in commit
   order, and a follower that sees seq N has already seen every seq below it.

The group first runs *optimistically*: steps 1-2 in autocommit and step 3 as a
statement that commits by itself, two round trips in all. If another writer
committed in between, the gate fails, nothing is written, and the group is
staged again; after :data:`OPTIMISTIC_TRIES` such attempts (or straight away
for groups that write blob chunks or S3 objects, which take several
statements) it runs *locked*: ``BEGIN; LOCK TABLE keepstone_counters IN
EXCLUSIVE MODE``, steps 1-3, ``COMMIT``. Readers are never blocked.

A driver error that is not a refusal (a value PostgreSQL cannot hold, say)
fails the group; it is then run again one job at a time so that only the job
at fault fails. Serialization failures and deadlocks are retried; a lost
connection before the commit is retried on a new connection; a connection
lost during the commit leaves the outcome unknown and is reported as
``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from keepstone.backends.sql.common import quote
from keepstone.backends.sql.postgres_errors import is_disconnect, is_retryable, storage_error
from keepstone.backends.sql.postgres_schema import LAYOUTS, PgLayout, layout_of, select_sql
from keepstone.engine.spi import BatchResult, BlobPut, WriteBatch
from keepstone.engine.stager import (
    BlobChange,
    BlobForget,
    BlobStored,
    GroupStager,
    NetEffect,
    PrefetchedView,
    StagedOp,
    plan_reads,
)
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps

MAX_GROUP = 256
"""Most jobs committed in one transaction."""

RETRIES = 8
"""Attempts at a group that hits serialization failures, deadlocks or a lost
connection (before ``COMMIT``)."""

OPTIMISTIC_TRIES = 2
"""Optimistic attempts at a group before it takes the table lock. An optimistic
attempt reads without a transaction, then writes in one self-committing
statement that bumps ``generation`` only if it still holds the value read:
two round trips instead of four. Groups with blob chunks or S3 objects always
take the lock (they write in several statements)."""

GENERATION = "generation"
"""The counter every write bumps (see migration 0002)."""

CHUNK_STATEMENT_BYTES = 32 << 20
"""Blob chunk bytes sent per statement."""


class ObjectBlobs(Protocol):
    """What the writer needs of an object store holding large blobs (S3)."""

    async def exists(self, digest: str) -> bool: ...

    async def put_bytes(self, digest: str, data: bytes) -> bool: ...

    async def delete(self, digest: str) -> None: ...


@dataclass(slots=True)
class Job:
    """One caller's batch and where its result goes."""

    batch: WriteBatch
    ops: Sequence[StagedOp]
    future: asyncio.Future[BatchResult]


class _Stale(Exception):
    """Another writer committed between an optimistic group's reads and its write."""


def _needs_transaction(op: StagedOp, chunk_size: int) -> bool:
    """Ops whose effects take several statements: only under the lock."""
    if isinstance(op, BlobStored | BlobForget):
        return True
    return isinstance(op, BlobPut) and len(op.data) > chunk_size


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
        """Groups run again: another writer committed first (optimistic attempt),
        a serialization failure, a deadlock or a lost connection."""
        self.optimistic = True
        """Try uncontended groups in two round trips (see :data:`OPTIMISTIC_TRIES`)."""
        self.analyze = False
        """Analyze keepstone's tables as they grow (set when the server's
        autovacuum is off: see :meth:`_analyze_grown`)."""
        self.analyzed = 0
        """``ANALYZE`` statements run (tests read it)."""
        self._grown: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._written: dict[str, int] = {}

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
        stale = 0
        locked_only = any(_needs_transaction(op, self.chunk_size) for j in jobs for op in j.ops)
        for attempt in range(RETRIES):
            optimistic = self.optimistic and not locked_only and stale < OPTIMISTIC_TRIES
            try:
                outcomes = await self._transaction(jobs, optimistic=optimistic)
            except _Stale:
                stale += 1
                self.retries += 1
                continue
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
            if self.analyze:
                await self._analyze_grown()
            return
        error = StorageError(
            "conflict",
            "other writers kept committing first; the write was not applied: retry",
            {"server": self.where},
        )
        for job in jobs:
            _settle(job, _copy(error))

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

    async def _transaction(
        self, jobs: list[Job], *, optimistic: bool
    ) -> list[BatchResult | StorageError]:
        """Stage and write ``jobs``: optimistically (reads in autocommit, then one
        statement that writes only if no other writer committed meanwhile, see
        :data:`OPTIMISTIC_TRIES`) or under the table lock."""
        self._commit_sent = False
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            conn = self._conn
            if not optimistic:
                await conn.execute(
                    "BEGIN ISOLATION LEVEL READ COMMITTED; "
                    "LOCK TABLE keepstone_counters IN EXCLUSIVE MODE"
                )
        except Exception as exc:
            raise _Abort(exc) from exc
        try:
            tx = _Transaction(self, conn)
            stager = GroupStager(await tx.prefetch(jobs))
            outcomes: list[BatchResult | StorageError] = []
            for job in jobs:
                try:
                    outcomes.append(stager.stage(job.batch, job.ops))
                except StorageError as exc:
                    outcomes.append(exc)
            tx.group = stager.group
            if any(isinstance(o, BatchResult) for o in outcomes) and not tx.group.is_empty():
                self._written = {name: len(rows) for name, rows in tx.group.rows.items()}
                if optimistic:
                    self._commit_sent = True  # the statement commits by itself
                if not await tx.flush():
                    if not optimistic:  # under the lock nobody else can move it
                        raise _Abort(
                            StorageError(
                                "corrupt",
                                "keepstone_counters has no generation row: the schema of "
                                f"the store at {self.where} was altered",
                                {"server": self.where},
                            )
                        )
                    raise _Stale()
                if not optimistic:
                    self._commit_sent = True
                    await conn.execute("COMMIT")
                self.transactions += 1
            elif not optimistic:
                await conn.execute("ROLLBACK")
            return outcomes
        except _Stale:
            await self._rollback(conn)
            raise
        except Exception as exc:
            cause = exc.cause if isinstance(exc, _Abort) else exc
            await self._rollback(conn)
            raise _Abort(cause) from exc
        except BaseException:
            conn.terminate()
            self._conn = None
            raise

    async def _analyze_grown(self) -> None:
        """Give the planner statistics on a server that gathers none.

        With autovacuum off nothing ever runs ``ANALYZE``: a statement planned
        while a table was small keeps that plan as the table grows (a
        100-event append took 33 ms in the prefetch's stale plan against 0.6 ms
        in a fresh one, at 35k events). Like autovacuum's own rule, a table is
        analyzed once the rows written to it since the last time exceed 50 +
        10% of its size then; the callers already have their results.
        """
        written, self._written = self._written, {}
        for name, count in written.items():
            grown = self._grown[name] = self._grown.get(name, 0) + count
            if grown <= 50 + self._sizes.get(name, 0) // 10:
                continue
            self._grown[name] = 0
            self._sizes[name] = self._sizes.get(name, 0) + grown
            conn = self._conn
            if conn is None or conn.is_closed():
                return
            try:
                await conn.execute(f"ANALYZE {quote(name)}")
                self.analyzed += 1
            except Exception:
                return

    @staticmethod
    async def _rollback(conn: asyncpg.Connection) -> None:
        if conn.is_closed() or not conn.is_in_transaction():
            return
        try:
            await conn.execute("ROLLBACK")
        except Exception:
            conn.terminate()

    _commit_sent = False


class _Transaction:
    """Reads and writes of one group transaction."""

    def __init__(self, writer: PostgresWriter, conn: asyncpg.Connection) -> None:
        self.writer = writer
        self.conn = conn
        self.group = NetEffect()
        self.db_counters: dict[str, tuple[int, str | None]] = {}

    # ------------------------------------------------------------------ reading

    async def prefetch(self, jobs: list[Job]) -> PrefetchedView:
        """Everything staging ``jobs`` reads: the counters and every row a
        precondition names in one query, then one query per ``CheckNone``."""
        plan = plan_reads(j.ops for j in jobs)
        view = PrefetchedView()
        parts = ["SELECT -1, name, NULL::bytea, seq, hash FROM keepstone_counters"]
        args: list[Any] = []
        names: list[str] = []
        for name, keys in plan.keys.items():
            layout = layout_of_name(name)
            wanted = []
            for key in keys:
                view.rows[(name, key)] = None
                param = layout.key_param(key)
                if param is not None:
                    wanted.append(param)
            if not wanted:
                continue
            k = quote(layout.key_column)
            key_text = f"{k}::text" if layout.key_is_seq else k
            args.append(wanted)
            parts.append(
                f"SELECT {len(names)}, {key_text}, body, NULL::bigint, NULL::text FROM "
                f"{quote(name)} WHERE {k} = ANY(${len(args)}::{layout.key_type}[])"
            )
            names.append(name)
        for tag, key, body, seq, head in await self.conn.fetch(" UNION ALL ".join(parts), *args):
            if tag < 0:
                view.counters[key] = (int(seq), head)
            else:
                view.rows[(names[tag], key)] = bytes(body)
        self.db_counters = dict(view.counters)
        for op, limit in plan.absent:
            layout = layout_of(op.table)
            k = quote(layout.key_column)
            what = f"{k}::text" if layout.key_is_seq else k
            sql, params = select_sql(layout, op.where, what=what, limit=limit, ordered=False)
            view.matches[id(op)] = [r[0] for r in await self.conn.fetch(sql, *params)]
        return view

    # ------------------------------------------------------------------ writing

    async def flush(self) -> bool:
        """Write the group's net effect (one statement, plus blob chunks).

        Every part of the statement is gated on bumping ``generation`` from the
        value read before staging; ``False`` means another writer committed
        since, and nothing was written.
        """
        group = self.group
        expected = self.db_counters.get(GENERATION, (0, None))[0]
        ctes: list[str] = [
            "UPDATE keepstone_counters SET seq = seq + 1 "
            f"WHERE name = '{GENERATION}' AND seq = $1 RETURNING seq"
        ]
        args: list[Any] = [expected]
        gate = "EXISTS (SELECT 1 FROM w0)"
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
                ctes.append(layout.upsert_sql(len(args), gate))
                args += columns
            if deletes:
                ctes.append(layout.delete_sql(len(args), gate))
                args.append(deletes)
        changed = {n: v for n, v in group.counters.items() if self.db_counters.get(n) != v}
        if changed:
            names = sorted(changed)
            n = len(args)
            ctes.append(
                "INSERT INTO keepstone_counters (name, seq, hash) "
                f"SELECT * FROM unnest(${n + 1}::text[], ${n + 2}::bigint[], ${n + 3}::text[]) "
                f"WHERE {gate} "
                "ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash"
            )
            args += [names, [changed[x][0] for x in names], [changed[x][1] for x in names]]
        puts = {d: c for d, c in group.blobs.items() if c.kind != "forget"}
        drops = [d for d, c in group.blobs.items() if c.kind == "forget"]
        tail = "SELECT 'generation'::text, NULL::text FROM w0"
        if puts:
            digests = list(puts)
            n = len(args)
            ctes.append(
                "INSERT INTO blobs (digest, size, place, data) SELECT * FROM unnest("
                f"${n + 1}::text[], ${n + 2}::bigint[], ${n + 3}::text[], ${n + 4}::bytea[]) "
                f"WHERE {gate} "
                "ON CONFLICT (digest) DO NOTHING RETURNING digest, place"
            )
            places = [self._place(puts[d]) for d in digests]
            args += [
                digests,
                [puts[d].size for d in digests],
                places,
                [
                    puts[d].data if p == "inline" else None
                    for d, p in zip(digests, places, strict=True)
                ],
            ]
            tail += f" UNION ALL SELECT digest, 'put:' || place FROM w{len(ctes) - 1}"
        if drops:
            n = len(args)
            ctes.append(f"DELETE FROM blob_chunks WHERE digest = ANY(${n + 1}::text[]) AND {gate}")
            ctes.append(
                f"DELETE FROM blobs WHERE digest = ANY(${n + 1}::text[]) AND {gate} "
                "RETURNING digest, place"
            )
            args.append(drops)
            tail += f" UNION ALL SELECT digest, 'del:' || place FROM w{len(ctes) - 1}"
        sql = "WITH " + ", ".join(f"w{i} AS ({c})" for i, c in enumerate(ctes)) + " " + tail
        written = await self.conn.fetch(sql, *args)
        if not any(r[0] == GENERATION for r in written):
            return False
        await self._blob_effects([(r[0], r[1]) for r in written if r[0] != GENERATION], puts)
        return True

    def _place(self, change: BlobChange) -> str:
        """Where a blob's bytes go: in its row, in chunk rows, or in S3."""
        if change.kind == "stored":
            return "s3"
        data = change.data or b""
        return "inline" if len(data) <= self.writer.chunk_size else "chunks"

    async def _blob_effects(
        self, written: list[tuple[str, str]], puts: dict[str, BlobChange]
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
    return LAYOUTS[name]


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
