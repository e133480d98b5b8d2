"""The PostgreSQL backend: ``postgresql://user:password@host:port/database?schema=...``.

Where it differs from the :class:`~keepstone.engine.spi.RecordEngine` port:

* **Many processes, many machines.** Every write bumps and locks the
  ``generation`` counter row until it commits (see
  :mod:`~keepstone.backends.sql.postgres_writer`): writers of one store commit
  one after another, so seqs and the audit chain follow commit order and a
  follower polling "after seq N" never skips a row. Within a process,
  concurrent callers share transactions (group commit) and concurrent lookups
  by key share queries (:mod:`~keepstone.backends.sql.postgres_reads`).
  Readers use a connection pool and never wait for writers.
* **Durability**: ``apply`` returns after ``COMMIT``, with the writer's
  ``synchronous_commit`` at least ``on`` (raised from ``off``/``local`` if the
  server defaults to those), so the WAL is flushed before keepstone returns.
* **Schema.** ``?schema=name`` (default ``public``) puts the store in its own
  PostgreSQL schema, created on first open. Migrations run under
  ``pg_advisory_lock``; a store stamped by a newer keepstone is refused with
  ``unsupported_schema``.
* **Blobs** live in the ``blobs`` table (bytea; blobs over 1 MiB as 1 MiB
  chunks in ``blob_chunks``), unless ``?blobs=s3://bucket/prefix`` is given:
  then blobs larger than ``blob_threshold`` (default 64 KiB) are objects in
  the bucket (uploaded before the row that names them commits) and smaller
  ones stay in the table. S3 settings are the ``s3_*`` options (``s3_endpoint``,
  ``s3_region``, ``s3_access_key_id``, ``s3_secret_access_key``,
  ``s3_session_token``, ``s3_allow_http``, ``s3_part_size``...), the ``blobs``
  URL's own (percent-encoded) query, or the ``AWS_*`` environment variables.
* **Full text** is a tsvector of the words the reference matches
  (:mod:`keepstone.schemas.fulltext`); every query word must occur.
* **Errors**: driver exceptions are mapped in
  :mod:`~keepstone.backends.sql.postgres_errors`; a lost connection is
  ``unavailable``; a serialization failure or deadlock is retried.

Options (URL query or keyword arguments of :func:`keepstone.open`):
``schema``, ``blobs``, ``blob_threshold``, ``pool_size`` (default 8),
``connect_timeout`` (seconds, default 10), ``application_name`` (default
``keepstone``, shown in ``pg_stat_activity``), ``s3_*``; libpq's ``sslmode``,
``sslrootcert``, ``sslcert``, ``sslkey``, ``passfile``, ``target_session_attrs``
are passed to the driver. The password may also come from ``PGPASSWORD`` or a
``.pgpass`` file, as with libpq.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from keepstone.backends.blobs.s3 import S3BlobStore
from keepstone.backends.sql.postgres_errors import is_disconnect, storage_error, translate
from keepstone.backends.sql.postgres_migrate import migrate
from keepstone.backends.sql.postgres_reads import KeyLookups
from keepstone.backends.sql.postgres_schema import layout_of, select_sql
from keepstone.backends.sql.postgres_writer import Job, PostgresWriter
from keepstone.engine.spi import BatchResult, BlobPut, Table, Where, WriteBatch
from keepstone.engine.stager import BlobForget, BlobStored, StagedOp
from keepstone.errors import StorageError
from keepstone.schemas.artifacts import BlobInfo

T = TypeVar("T")

DEFAULT_BLOB_THRESHOLD = 64 * 1024
"""With ``blobs=s3://...``: blobs up to this many bytes stay in PostgreSQL."""

CHUNK_SIZE = 1 << 20
"""Blobs kept in PostgreSQL: up to this size in one row, larger in chunks of it."""

DEFAULT_POOL_SIZE = 8
OPTIONS = (
    "schema",
    "blobs",
    "blob_threshold",
    "pool_size",
    "connect_timeout",
    "application_name",
)
DRIVER_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "passfile",
    "target_session_attrs",
    "krbsrvname",
    "gsslib",
)
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _redact(url: str) -> str:
    from keepstone.urls import redact

    return redact(url)


# --------------------------------------------------------------------------- opening


class Settings:
    """A parsed ``postgresql://`` URL plus options."""

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        parts = urlsplit(url)
        self.where = _redact(url)
        if parts.scheme.lower() not in ("postgresql", "postgres"):
            raise StorageError("config", f"not a postgresql:// URL: {self.where}", {})
        merged: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        merged.update({k: v for k, v in options.items() if v is not None})
        s3_options = {k[3:]: v for k, v in merged.items() if k.startswith("s3_")}
        driver = {k: str(v) for k, v in merged.items() if k in DRIVER_OPTIONS}
        known = set(OPTIONS) | set(DRIVER_OPTIONS)
        unknown = sorted(k for k in merged if k not in known and not k.startswith("s3_"))
        if unknown:
            raise StorageError(
                "config",
                f"unknown postgresql option(s) {', '.join(unknown)}; known: "
                f"{', '.join(OPTIONS)}, s3_*, and the libpq options {', '.join(DRIVER_OPTIONS)}",
                {"unknown": unknown},
            )
        self.dsn = urlunsplit(
            ("postgresql", parts.netloc, parts.path, urlencode(driver), parts.fragment)
        )
        self.schema = str(merged.get("schema") or "public")
        if not _SCHEMA.match(self.schema):
            raise StorageError(
                "config",
                f"schema is a lowercase PostgreSQL name ([a-z_][a-z0-9_]*, at most 63 "
                f"characters), got {self.schema!r}",
                {"schema": self.schema},
            )
        self.blob_threshold = _number(
            merged.get("blob_threshold", DEFAULT_BLOB_THRESHOLD), "blob_threshold", 0
        )
        self.pool_size = _number(merged.get("pool_size", DEFAULT_POOL_SIZE), "pool_size", 1)
        self.application_name = str(merged.get("application_name") or "keepstone")
        self.connect_timeout = float(
            _number(merged.get("connect_timeout", 10), "connect_timeout", 1)
        )
        blobs = merged.get("blobs")
        self.s3: S3BlobStore | None = None
        if blobs:
            if not str(blobs).lower().startswith("s3://"):
                raise StorageError(
                    "config",
                    f"blobs= takes an s3://bucket/prefix URL (got {_redact(str(blobs))})",
                    {},
                )
            self.s3 = S3BlobStore.from_url(str(blobs), **s3_options)
        elif s3_options:
            raise StorageError(
                "config",
                "s3_* options need blobs=s3://bucket/prefix",
                {"options": sorted(s3_options)},
            )


def _number(value: Any, name: str, minimum: int) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        number = int(value)
        if number < minimum:
            raise ValueError(number)
    except (TypeError, ValueError) as exc:
        raise StorageError(
            "config", f"{name} is a whole number >= {minimum} (got {value!r})", {name: str(value)}
        ) from exc
    return number


async def open_engine(url: str, *, options: dict[str, Any]) -> PostgresEngine:
    """Open (creating and migrating if needed) the PostgreSQL store at ``url``."""
    return await PostgresEngine.open(Settings(url, options))


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Pool connections keep their session settings (search_path) between uses."""


# --------------------------------------------------------------------------- engine


class PostgresEngine:
    """A RecordEngine over one PostgreSQL schema (see the module docstring)."""

    name = "postgres"
    capabilities = frozenset({"fts", "multi_process", "durable"})

    def __init__(self, settings: Settings, pool: asyncpg.Pool, writer: PostgresWriter) -> None:
        self.settings = settings
        self.schema = settings.schema
        self.where = settings.where
        self.s3 = settings.s3
        self._pool = pool
        self._writer = writer
        self._lookups = KeyLookups(self._read)
        self._closed = False

    @classmethod
    async def open(cls, settings: Settings) -> PostgresEngine:
        """Connect, migrate, and start the pool (see the module docstring).

        Raises:
            StorageError: ``unavailable`` when the server cannot be reached;
                ``config`` for bad credentials or an unknown database;
                ``unsupported_schema`` for a store of a newer keepstone.
        """
        kwargs: dict[str, Any] = {
            "dsn": settings.dsn,
            "timeout": settings.connect_timeout,
            "server_settings": {
                "search_path": settings.schema,
                "application_name": settings.application_name,
            },
        }

        async def connect() -> asyncpg.Connection:
            with translate(settings.where, "connecting"):
                return await asyncpg.connect(**kwargs)

        async def connect_writer() -> asyncpg.Connection:
            conn = await connect()
            # A write that returns is durable: never let a server-wide
            # synchronous_commit=off (or local) weaken keepstone's commits.
            with translate(settings.where, "connecting"):
                if await conn.fetchval("SHOW synchronous_commit") in ("off", "local"):
                    await conn.execute("SET synchronous_commit TO on")
            return conn

        if settings.s3 is not None:
            await settings.s3.check()
        first = await connect()
        try:
            await migrate(first, settings.schema, settings.where)
        finally:
            await first.close()
        with translate(settings.where, "connecting"):
            pool = await asyncpg.create_pool(
                min_size=1, max_size=settings.pool_size, reset=_no_reset, **kwargs
            )
        writer = PostgresWriter(
            connect_writer, settings.where, chunk_size=CHUNK_SIZE, objects=settings.s3
        )
        async with pool.acquire() as conn:
            with translate(settings.where, "connecting"):
                writer.analyze = await conn.fetchval("SHOW autovacuum") != "on"
        return cls(settings, pool, writer)

    @property
    def transactions(self) -> int:
        """Write transactions this engine committed (group commit makes it < batches)."""
        return self._writer.transactions

    @property
    def retries(self) -> int:
        """Write transactions run again (serialization failure, deadlock, lost connection)."""
        return self._writer.retries

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("unavailable", "the store is closed")

    async def _read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], during: str) -> T:
        self._check_open()
        for attempt in range(2):
            try:
                async with self._pool.acquire() as conn:
                    return await fn(conn)
            except StorageError:
                raise
            except Exception as exc:
                if self._closed:
                    raise StorageError("unavailable", "the store is closed") from exc
                if attempt == 0 and is_disconnect(exc):
                    continue  # the pool replaces a dropped connection: try once more
                raise storage_error(exc, where=self.where, during=during) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ writes

    async def apply(self, batch: WriteBatch) -> BatchResult:
        self._check_open()
        ops: list[StagedOp] = list(batch.ops)
        if self.s3 is not None:
            threshold = self.settings.blob_threshold
            big = [op for op in ops if isinstance(op, BlobPut) and len(op.data) > threshold]
            for op in big:
                await self.s3.put_bytes(op.digest, op.data)
            if big:
                ops = [
                    BlobStored(op.digest, len(op.data), op.data)
                    if isinstance(op, BlobPut) and len(op.data) > threshold
                    else op
                    for op in ops
                ]
        return await self._submit(batch, ops)

    async def _submit(self, batch: WriteBatch, ops: Sequence[StagedOp]) -> BatchResult:
        self._check_open()
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._writer.submit(Job(batch, ops, future))
        return await future

    # ------------------------------------------------------------------ reads

    async def get(self, table: Table, key: str) -> bytes | None:
        self._check_open()
        layout = layout_of(table)
        param = layout.key_param(key)
        if param is None:
            return None
        found = await self._lookups.fetch(layout, {str(param): param})
        return found.get(str(param))

    async def get_many(self, table: Table, keys: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        layout = layout_of(table)
        wanted: dict[str, str] = {}
        params: dict[str, Any] = {}
        for key in keys:
            param = layout.key_param(key)
            if param is not None:
                wanted[str(param)] = key
                params[str(param)] = param
        if not params:
            return {}
        found = await self._lookups.fetch(layout, params)
        return {wanted[k]: body for k, body in found.items()}

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
        sql, params = select_sql(
            layout_of(table),
            where,
            order=order,
            after=after,
            desc=desc,
            limit=limit,
            tags=tags,
            text=text,
        )

        async def run(conn: asyncpg.Connection) -> list[bytes]:
            return [bytes(r[0]) for r in await conn.fetch(sql, *params)]

        return await self._read(run, "querying")

    async def count(self, table: Table, where: Where | None = None) -> int:
        sql, params = select_sql(layout_of(table), where, what="count(*)", ordered=False)

        async def run(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval(sql, *params))

        return await self._read(run, "counting")

    async def last_seq(self, table: Table) -> int:
        name = layout_of(table).name

        async def run(conn: asyncpg.Connection) -> int:
            seq = await conn.fetchval("SELECT seq FROM keepstone_counters WHERE name = $1", name)
            return 0 if seq is None else int(seq)

        return await self._read(run, "reading a counter")

    # ------------------------------------------------------------------ blobs

    async def _locate(self, digest: str) -> tuple[int, str, bytes | None] | None:
        async def run(conn: asyncpg.Connection) -> tuple[int, str, bytes | None] | None:
            row = await conn.fetchrow(
                "SELECT size, place, data FROM blobs WHERE digest = $1", digest
            )
            if row is None:
                return None
            return int(row[0]), str(row[1]), None if row[2] is None else bytes(row[2])

        return await self._read(run, "reading a blob")

    def _objects(self, digest: str) -> S3BlobStore:
        if self.s3 is None:
            raise StorageError(
                "config",
                f"blob {digest} is kept in S3 but the store was opened without blobs=s3://...",
                {"digest": digest},
            )
        return self.s3

    async def blob_get(self, digest: str) -> bytes | None:
        found = await self._locate(digest)
        if found is None:
            return None
        _, place, data = found
        if place == "inline":
            return data or b""
        if place == "s3":
            return await self._objects(digest).read(digest)
        parts = [chunk async for chunk in self._chunks(digest)]
        return b"".join(parts)

    async def blob_get_many(self, digests: Sequence[str]) -> dict[str, bytes]:
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return {}

        async def run(conn: asyncpg.Connection) -> list[tuple[str, str, bytes | None]]:
            rows = await conn.fetch(
                "SELECT digest, place, data FROM blobs WHERE digest = ANY($1::text[])", wanted
            )
            return [(str(r[0]), str(r[1]), None if r[2] is None else bytes(r[2])) for r in rows]

        found: dict[str, bytes] = {}
        elsewhere: list[str] = []
        for digest, place, data in await self._read(run, "reading blobs"):
            if place == "inline":
                found[digest] = data or b""
            else:
                elsewhere.append(digest)
        for digest in elsewhere:  # chunked or in S3: one by one, as blob_get does
            data = await self.blob_get(digest)
            if data is not None:
                found[digest] = data
        return found

    async def _chunks(self, digest: str) -> AsyncIterator[bytes]:
        n = 0
        while True:

            async def run(conn: asyncpg.Connection, n: int = n) -> bytes | None:
                raw = await conn.fetchval(
                    "SELECT data FROM blob_chunks WHERE digest = $1 AND n = $2", digest, n
                )
                return None if raw is None else bytes(raw)

            chunk = await self._read(run, "reading a blob")
            if chunk is None:
                return
            yield chunk
            n += 1

    async def blob_stream(self, digest: str, chunk_size: int) -> AsyncIterator[bytes]:
        found = await self._locate(digest)
        if found is None:
            raise StorageError("not_found", f"blob {digest!r} does not exist", {"digest": digest})
        _, place, data = found
        if place == "s3":
            async for chunk in self._objects(digest).open_stream(digest, chunk_size):
                yield chunk
            return
        source: AsyncIterator[bytes] = (
            _once(data or b"") if place == "inline" else self._chunks(digest)
        )
        pending = bytearray()
        async for piece in source:
            pending += piece
            while len(pending) >= chunk_size:
                yield bytes(pending[:chunk_size])
                del pending[:chunk_size]
        if pending:
            yield bytes(pending)

    async def blob_put_stream(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        self._check_open()
        limit = self.settings.blob_threshold if self.s3 is not None else CHUNK_SIZE
        iterator = aiter(chunks)
        head = bytearray()
        hasher = hashlib.sha256()
        exhausted = False
        while len(head) <= limit:
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                exhausted = True
                break
            head += chunk
        if exhausted:
            data = bytes(head)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            await self._submit(WriteBatch(), [BlobPut(digest, data)])
            return BlobInfo(digest=digest, size=len(data))
        if self.s3 is not None:
            info = await self.s3.upload_stream(_prepend(bytes(head), iterator))
            await self._submit(WriteBatch(), [BlobStored(info.digest, info.size)])
            return info
        hasher.update(head)
        return await self._stream_to_chunks(bytes(head), iterator, hasher)

    async def _stream_to_chunks(
        self, head: bytes, rest: AsyncIterator[bytes], hasher: Any
    ) -> BlobInfo:
        """Write a large stream as chunks under a temporary name in one
        transaction, then name it by its digest (or drop it if already stored)."""
        temp = f"tmp:{uuid.uuid4().hex}"
        size = len(head)
        pending = bytearray(head)
        n = 0
        self._check_open()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                insert = "INSERT INTO blob_chunks (digest, n, data) VALUES ($1, $2, $3)"
                async for chunk in rest:
                    hasher.update(chunk)
                    size += len(chunk)
                    pending += chunk
                    while len(pending) >= CHUNK_SIZE:
                        await conn.execute(insert, temp, n, bytes(pending[:CHUNK_SIZE]))
                        del pending[:CHUNK_SIZE]
                        n += 1
                if pending:
                    await conn.execute(insert, temp, n, bytes(pending))
                digest = "sha256:" + hasher.hexdigest()
                stored = await conn.fetchval(
                    "INSERT INTO blobs (digest, size, place, data) VALUES ($1, $2, 'chunks', NULL) "
                    "ON CONFLICT (digest) DO NOTHING RETURNING digest",
                    digest,
                    size,
                )
                if stored is None:
                    await conn.execute("DELETE FROM blob_chunks WHERE digest = $1", temp)
                else:
                    await conn.execute(
                        "UPDATE blob_chunks SET digest = $1 WHERE digest = $2", digest, temp
                    )
        except StorageError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise storage_error(exc, where=self.where, during="storing a blob") from exc
        return BlobInfo(digest=digest, size=size)

    async def blob_size(self, digest: str) -> int | None:
        async def run(conn: asyncpg.Connection) -> int | None:
            size = await conn.fetchval("SELECT size FROM blobs WHERE digest = $1", digest)
            return None if size is None else int(size)

        return await self._read(run, "reading a blob")

    async def blob_list(self, after: str | None, limit: int) -> list[BlobInfo]:
        async def run(conn: asyncpg.Connection) -> list[BlobInfo]:
            rows = await conn.fetch(
                "SELECT digest, size FROM blobs WHERE digest > $1 ORDER BY digest LIMIT $2",
                after or "",
                max(int(limit), 0),
            )
            return [BlobInfo(digest=d, size=int(s)) for d, s in rows]

        return await self._read(run, "listing blobs")

    async def blob_delete(self, digest: str) -> None:
        await self._submit(WriteBatch(), [BlobForget(digest)])

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._writer.stop()
        try:
            await asyncio.wait_for(self._pool.close(), 10)
        except Exception:
            self._pool.terminate()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk
