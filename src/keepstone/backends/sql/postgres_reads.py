"""Lookups by key from many concurrent callers, coalesced into one query per table.

Under load, dozens of tasks of one process ask for rows by key at the same
moment (every event append reads its profile and its write version). Each
:meth:`KeyLookups.fetch` queues its keys; at the next turn of the event loop
one ``WHERE key = ANY($1)`` per table answers every queued caller. A query is
only ever sent *after* every request it answers was made, so each caller
still reads everything committed before its call (read-your-writes holds).
A lone caller pays one extra turn of the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from keepstone.backends.sql.postgres_schema import PgLayout
from keepstone.errors import StorageError

T = TypeVar("T")

Reader = Callable[[Callable[[asyncpg.Connection], Awaitable[Any]], str], Awaitable[Any]]

_Waiter = tuple[list[str], "asyncio.Future[dict[str, bytes]]"]


class _Batch:
    __slots__ = ("layout", "params", "waiters")

    def __init__(self, layout: PgLayout, params: dict[str, Any]) -> None:
        self.layout = layout
        self.params = dict(params)
        self.waiters: list[_Waiter] = []


class KeyLookups:
    """Coalesces concurrent lookups by key (see the module docstring).

    The first caller for a table leads: it lets the tasks that are ready in
    this turn of the loop add their keys, closes the batch, sends one query
    and hands every follower its rows.
    """

    def __init__(self, read: Reader) -> None:
        self._read = read
        self._open: dict[str, _Batch] = {}

    async def fetch(self, layout: PgLayout, params: dict[str, Any]) -> dict[str, bytes]:
        """The bodies of the rows whose key column is one of ``params``' values,
        by ``str(value)`` (``params`` maps ``str(value)`` to the value bound)."""
        batch = self._open.get(layout.name)
        if batch is not None:  # a leader is collecting: join its query
            future: asyncio.Future[dict[str, bytes]] = asyncio.get_running_loop().create_future()
            batch.params.update(params)
            batch.waiters.append((list(params), future))
            return await future
        batch = self._open[layout.name] = _Batch(layout, params)
        try:
            await asyncio.sleep(0)  # tasks ready in this turn join the batch
        finally:
            del self._open[layout.name]  # closed before the query is sent
        sql = layout.sql["get_many"]
        values = list(batch.params.values())

        async def run(conn: asyncpg.Connection) -> dict[str, bytes]:
            return {str(k): bytes(body) for k, body in await conn.fetch(sql, values)}

        try:
            found: dict[str, bytes] = await self._read(run, "reading")
        except BaseException as exc:
            for _, future in batch.waiters:
                if not future.done():
                    future.set_exception(_copy(exc) if isinstance(exc, Exception) else _closed())
            raise
        for keys, future in batch.waiters:
            if not future.done():
                future.set_result({k: found[k] for k in keys if k in found})
        return {k: found[k] for k in params if k in found}


def _closed() -> StorageError:
    return StorageError("unavailable", "the read was cancelled")


def _copy(exc: BaseException) -> BaseException:
    if isinstance(exc, StorageError):
        copied = StorageError(exc.code, exc.message, exc.details)
        copied.__cause__ = exc.__cause__
        return copied
    return exc
