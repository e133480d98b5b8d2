"""The SQLite backend: ``sqlite:///relative/store.db`` or ``sqlite:////abs/store.db``.

Where it differs from the :class:`~keepstone.engine.spi.RecordEngine` port:

* **Durability.** WAL with ``synchronous=FULL``; ``apply`` returns after its
  transaction committed. Writes go through one writer thread that commits
  everything pending in one transaction (group commit, see
  :mod:`~keepstone.backends.sql.sqlite_writer`), so N concurrent callers share
  one fsync. Reads use a small pool of separate connections in worker threads
  and never wait for writes.
* **Several processes** may open one store: seqs and the audit chain head are
  read inside each write transaction, and lock conflicts are retried (busy
  timeout 30 s, then a retry loop), so "database is locked" never reaches a
  caller while the other writer makes progress.
* **Blobs** up to ``blob_threshold`` bytes (default 64 KiB) live in the
  ``blobs`` table; larger ones are files in ``<db>.blobs/ab/cd/<hex>``,
  written and fsync'd before the transaction that references them commits.
* **Full text** uses FTS5 (unicode61, diacritics kept, ``_`` inside words):
  every word of the query must occur, each quoted so FTS syntax is literal.

Options (URL query string or keyword arguments of :func:`keepstone.open`):
``blob_threshold`` (bytes). A missing parent directory is a ``config`` error;
the store file itself is created on first open.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from keepstone.backends.sql.sqlite_blobs import BlobDirectory, TempBlob
from keepstone.backends.sql.sqlite_errors import is_busy, storage_error
from keepstone.backends.sql.sqlite_open import BUSY_GIVE_UP, connect
from keepstone.backends.sql.sqlite_schema import layout_of, select_sql, stored_bytes
from keepstone.backends.sql.sqlite_writer import Job, SQLiteWriter, settle
from keepstone.engine.spi import BatchResult, BlobPut, Table, Where, WriteBatch
from keepstone.engine.stager import BlobForget, BlobStored, StagedOp
from keepstone.errors import StorageError
from keepstone.schemas.artifacts import BlobInfo

T = TypeVar("T")

DEFAULT_BLOB_THRESHOLD = 64 * 1024
"""Blobs up to this many bytes are stored inside the database."""

READERS = 4
"""Reader connections (and threads) per open store."""

_SPILL = 1 << 20
"""``blob_put_stream`` writes to its temp file in pieces of about this size."""

OPTIONS = ("blob_threshold",)


# --------------------------------------------------------------------------- opening


def parse_url(url: str, options: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The database path and the merged options of a ``sqlite://`` URL.

    Raises:
        StorageError: ``config`` for a URL without a path, a host, or an
            unknown or malformed option.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise StorageError("config", f"not a sqlite:// URL: {url!r}", {"url": url})
    if parts.netloc:
        raise StorageError(
            "config",
            f"a sqlite URL has no host: use sqlite:///relative/path.db or "
            f"sqlite:////absolute/path.db (got {url!r})",
            {"url": url},
        )
    raw = unquote(parts.path)
    path = raw[1:] if raw.startswith("/") else raw
    if not path or path.endswith("/") or path == ":memory:":
        raise StorageError(
            "config",
            f"a sqlite URL needs a database file path, e.g. sqlite:///store.db (got {url!r})",
            {"url": url},
        )
    merged: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged.update(options)
    unknown = sorted(set(merged) - set(OPTIONS))
    if unknown:
        raise StorageError(
            "config",
            f"unknown sqlite option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}",
            {"unknown": unknown, "known": list(OPTIONS)},
        )
    threshold = merged.get("blob_threshold", DEFAULT_BLOB_THRESHOLD)
    try:
        if isinstance(threshold, bool):
            raise ValueError(threshold)
        threshold = int(threshold)
        if threshold < 0:
            raise ValueError(threshold)
    except (TypeError, ValueError) as exc:
        raise StorageError(
            "config",
            f"blob_threshold is a number of bytes >= 0 (got {threshold!r})",
            {"blob_threshold": str(threshold)},
        ) from exc
    return Path(path), {"blob_threshold": threshold}


async def open_engine(url: str, *, options: dict[str, Any]) -> SQLiteEngine:
    """Open (creating if needed) the SQLite store at ``url``."""
    path, opts = parse_url(url, options)
    return await SQLiteEngine.open(path, blob_threshold=opts["blob_threshold"])


# --------------------------------------------------------------------------- readers


SHORT_READ_ROWS = 100
"""Indexed reads of at most this many rows run on the caller's thread."""


class _Busy:
    """Marker: the database was busy; retry through the pool."""


BUSY = _Busy()


class _Readers:
    """A pool of read connections, one per worker thread, plus short reads on
    the caller's thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(
            READERS, thread_name_prefix="keepstone-sqlite-read"
        )
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            with self._lock:
                if self._closed:
                    conn.close()
                    raise StorageError("unavailable", "the store is closed")
                self._conns.append(conn)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
        return conn

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        deadline = time.monotonic() + BUSY_GIVE_UP
        delay = 0.001
        while True:
            try:
                return fn(self._conn())
            except sqlite3.Error as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise storage_error(exc, self.path, "reading") from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def run_here(self, fn: Callable[[sqlite3.Connection], T]) -> T | _Busy:
        """Run a short read on the calling thread (its own connection).

        A point read on a WAL snapshot takes microseconds, less than the hop to
        a pool thread and back. If the database is busy, returns ``BUSY`` and
        the caller goes through the pool, which waits and retries.
        """
        try:
            return fn(self._conn())
        except sqlite3.Error as exc:
            if is_busy(exc):
                return BUSY
            raise storage_error(exc, self.path, "reading") from exc

    async def run_short(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A short read: on this thread, or through the pool when busy."""
        result = self.run_here(fn)
        if isinstance(result, _Busy):
            return await self.run(fn)
        return result

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, fn)
        except RuntimeError as exc:  # the executor was shut down by close()
            raise StorageError("unavailable", "the store is closed") from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()


# --------------------------------------------------------------------------- engine


class SQLiteEngine:
    """A RecordEngine over one SQLite file (see the module docstring)."""

    name = "sqlite"
    capabilities = frozenset({"fts", "blob_files", "multi_process", "durable"})

    def __init__(self, path: Path, writer: SQLiteWriter, blobs: BlobDirectory, threshold: int):
        self.path = path
        self._writer = writer
        self._blobs = blobs
        self._threshold = threshold
        self._readers = _Readers(str(path))
        self._pending: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        self._pending_lock = threading.Lock()
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path, *, blob_threshold: int = DEFAULT_BLOB_THRESHOLD
    ) -> SQLiteEngine:
        """Open the database at ``path``: pragmas, migrations, writer thread.

        Raises:
            StorageError: ``config`` when the parent directory is missing or the
                path is a directory; ``corrupt`` when the file is not a SQLite
                database; ``unsupported_schema`` for a newer store.
        """
        path = _checked_path(path)
        blobs = BlobDirectory(path.with_name(path.name + ".blobs"))
        writer = SQLiteWriter(str(path), blobs)
        await asyncio.wrap_future(writer.start())
        return cls(path, writer, blobs, blob_threshold)

    @property
    def transactions(self) -> int:
        """Write transactions this engine committed (group commit makes it < batches)."""
        return self._writer.transactions

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("unavailable", "the store is closed")

    # ------------------------------------------------------------------ writes

    async def apply(self, batch: WriteBatch) -> BatchResult:
        self._check_open()
        ops: list[StagedOp] = list(batch.ops)
        big = [op for op in ops if isinstance(op, BlobPut) and len(op.data) > self._threshold]
        if big:
            await asyncio.to_thread(self._write_files, big)
            ops = [
                BlobStored(op.digest, len(op.data), op.data)
                if isinstance(op, BlobPut) and len(op.data) > self._threshold
                else op
                for op in ops
            ]
        return await self._submit(batch, ops)

    def _write_files(self, puts: list[BlobPut]) -> None:
        for op in puts:
            try:
                self._blobs.write(op.digest, op.data)
            except OSError as exc:
                raise _os_error(exc, op.digest) from exc

    async def _submit(self, batch: WriteBatch, ops: Sequence[StagedOp]) -> BatchResult:
        """Queue a write for this turn of the loop's group (see :meth:`_flush`)."""
        self._check_open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BatchResult] = loop.create_future()
        job = Job(batch, ops, loop, future)
        with self._pending_lock:
            pending = self._pending.get(loop)
            if pending is None:
                self._pending[loop] = [job]
                loop.call_soon(self._flush, loop)
            else:
                pending.append(job)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop, *, here: bool = True) -> None:
        """Commit the writes this loop's callers issued in one turn, as one group:
        on this thread (``loop``'s) when that is cheap, else through the writer thread."""
        with self._pending_lock:
            jobs = self._pending.pop(loop, [])
        if not jobs:
            return
        if here and self._writer.commit_here(jobs):
            for job in jobs:
                settle(job)
            return
        for job in jobs:
            try:
                self._writer.submit(job)
            except StorageError as exc:
                job.outcome = exc
                if here:
                    settle(job)
                else:
                    loop.call_soon_threadsafe(settle, job)

    # ------------------------------------------------------------------ reads

    async def get(self, table: Table, key: str) -> bytes | None:
        self._check_open()
        layout = layout_of(table)
        param = layout.key_param(key)
        if param is None:
            return None
        sql = layout.sql["get"]

        def run(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(sql, (param,)).fetchone()
            return None if row is None else stored_bytes(row[0])

        return await self._readers.run_short(run)

    async def get_many(self, table: Table, keys: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        layout = layout_of(table)
        wanted = {}
        for key in keys:
            param = layout.key_param(key)
            if param is not None:
                wanted[param] = key
        if not wanted:
            return {}
        params = list(wanted)

        def run(conn: sqlite3.Connection) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for start in range(0, len(params), 500):
                chunk = params[start : start + 500]
                sql = (
                    f'SELECT "{layout.key_column}", body FROM "{layout.name}" '
                    f'WHERE "{layout.key_column}" IN ({", ".join("?" for _ in chunk)})'
                )
                for k, body in conn.execute(sql, chunk):
                    out[wanted[k]] = stored_bytes(body)
            return out

        return await self._readers.run_short(run)

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

        def run(conn: sqlite3.Connection) -> list[bytes]:
            return [stored_bytes(r[0]) for r in conn.execute(sql, params)]

        if text is None and limit is not None and limit <= SHORT_READ_ROWS:
            return await self._readers.run_short(run)
        return await self._readers.run(run)

    async def count(self, table: Table, where: Where | None = None) -> int:
        self._check_open()
        sql, params = select_sql(layout_of(table), where, what="count(*)", ordered=False)

        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute(sql, params).fetchone()[0])

        return await self._readers.run(run)

    async def last_seq(self, table: Table) -> int:
        self._check_open()
        name = layout_of(table).name

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT seq FROM keepstone_counters WHERE name = ?", (name,)
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._readers.run_short(run)

    # ------------------------------------------------------------------ blobs

    async def blob_get(self, digest: str) -> bytes | None:
        self._check_open()
        blobs = self._blobs

        def inline(conn: sqlite3.Connection) -> tuple[bool, bytes | None]:
            row = conn.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
            if row is None:
                return True, None
            return (True, stored_bytes(row[0])) if row[0] is not None else (False, None)

        def from_file(conn: sqlite3.Connection) -> bytes | None:
            try:
                return blobs.read(digest)
            except OSError as exc:
                raise _os_error(exc, digest) from exc

        # Small blobs live in the database: a point read, on this thread. Large
        # ones are files, read through the pool so the event loop never waits.
        done, data = await self._readers.run_short(inline)
        return data if done else await self._readers.run(from_file)

    async def blob_get_many(self, digests: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return {}
        blobs = self._blobs

        def inline(conn: sqlite3.Connection) -> tuple[dict[str, bytes], list[str]]:
            marks = ", ".join("?" for _ in wanted)
            rows = conn.execute(
                f"SELECT digest, data FROM blobs WHERE digest IN ({marks})", wanted
            ).fetchall()
            found = {str(d): stored_bytes(data) for d, data in rows if data is not None}
            return found, [str(d) for d, data in rows if data is None]

        def from_files(conn: sqlite3.Connection, files: list[str]) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for digest in files:
                try:
                    data = blobs.read(digest)
                except OSError as exc:
                    raise _os_error(exc, digest) from exc
                if data is not None:
                    out[digest] = data
            return out

        if len(wanted) > 500:  # past SQLite's parameter comfort: one point read each
            got = await asyncio.gather(*(self.blob_get(d) for d in wanted))
            return {d: data for d, data in zip(wanted, got, strict=True) if data is not None}
        found, files = await self._readers.run_short(inline)
        if files:
            found.update(await self._readers.run(lambda conn: from_files(conn, files)))
        return found

    async def blob_stream(self, digest: str, chunk_size: int) -> AsyncIterator[bytes]:
        self._check_open()

        def locate(conn: sqlite3.Connection) -> tuple[bool, bytes | None] | None:
            row = conn.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
            if row is None:
                return None
            return (row[0] is None, None if row[0] is None else stored_bytes(row[0]))

        found = await self._readers.run(locate)
        handle: BinaryIO | None = None
        try:
            if found is not None and found[0]:
                handle = await asyncio.to_thread(self._blobs.open, digest)
            if found is None or (found[0] and handle is None):
                raise StorageError(
                    "not_found", f"blob {digest!r} does not exist", {"digest": digest}
                )
            if handle is None:
                data = found[1] or b""
                for start in range(0, len(data), chunk_size):
                    yield data[start : start + chunk_size]
                return
            while True:
                chunk = await asyncio.to_thread(handle.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        except OSError as exc:
            raise _os_error(exc, digest) from exc
        finally:
            if handle is not None:
                handle.close()

    async def blob_put_stream(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        self._check_open()
        hasher = hashlib.sha256()
        size = 0
        pending = bytearray()
        temp: TempBlob | None = None
        try:
            async for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                pending += chunk
                if temp is None and len(pending) > self._threshold:
                    temp = await asyncio.to_thread(self._blobs.new_temp)
                if temp is not None and len(pending) >= _SPILL:
                    await asyncio.to_thread(temp.write, bytes(pending))
                    pending.clear()
            digest = "sha256:" + hasher.hexdigest()
            if temp is None:
                await self._submit(WriteBatch(), [BlobPut(digest, bytes(pending))])
            else:
                if pending:
                    await asyncio.to_thread(temp.write, bytes(pending))
                    pending.clear()
                await asyncio.to_thread(self._blobs.finish, temp, digest)
                temp = None
                await self._submit(WriteBatch(), [BlobStored(digest, size)])
        except OSError as exc:
            raise _os_error(exc, "a streamed blob") from exc
        finally:
            if temp is not None:
                temp.discard()
        return BlobInfo(digest=digest, size=size)

    async def blob_size(self, digest: str) -> int | None:
        self._check_open()

        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT size FROM blobs WHERE digest = ?", (digest,)).fetchone()
            return None if row is None else int(row[0])

        return await self._readers.run(run)

    async def blob_list(self, after: str | None, limit: int) -> list[BlobInfo]:
        self._check_open()

        def run(conn: sqlite3.Connection) -> list[BlobInfo]:
            rows = conn.execute(
                "SELECT digest, size FROM blobs WHERE digest > ? ORDER BY digest LIMIT ?",
                (after or "", max(int(limit), 0)),
            ).fetchall()
            return [BlobInfo(digest=d, size=int(s)) for d, s in rows]

        return await self._readers.run(run)

    async def blob_delete(self, digest: str) -> None:
        await self._submit(WriteBatch(), [BlobForget(digest)])

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._pending_lock:
            loops = list(self._pending)
        current = asyncio.get_running_loop()
        for loop in loops:  # writes issued before close() still commit
            self._flush(loop, here=loop is current)
        await asyncio.to_thread(self._writer.stop)
        await asyncio.to_thread(self._readers.close)


def _checked_path(path: Path) -> Path:
    path = path.absolute()
    if not path.parent.is_dir():
        raise StorageError(
            "config",
            f"the directory {path.parent} does not exist; create it before opening {path.name}",
            {"path": str(path)},
        )
    if path.is_dir():
        raise StorageError(
            "config", f"{path} is a directory, not a SQLite database file", {"path": str(path)}
        )
    return path


def _os_error(exc: OSError, what: str) -> StorageError:
    return StorageError(
        "unavailable",
        f"the blob directory failed on {what}: {exc.strerror or exc}",
        {"digest": what, "errno": exc.errno},
    )
