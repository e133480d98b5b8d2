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


class KeyLookups:
    """Coalesces concurrent lookups by key (see the module docstring)."""

    def __init__(self, read: Reader) -> None:
        self._read = read
        self._pending: dict[str, tuple[PgLayout, dict[str, Any], list[_Waiter]]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def fetch(self, layout: PgLayout, params: dict[str, Any]) -> dict[str, bytes]:
        """The bodies of the rows whose key column is one of ``params``' values,
        by ``str(value)`` (``params`` maps ``str(value)`` to the value bound)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, bytes]] = loop.create_future()
        entry = self._pending.get(layout.name)
        if entry is None:
            entry = self._pending[layout.name] = (layout, {}, [])
        entry[1].update(params)
        entry[2].append((list(params), future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for layout, params, waiters in pending.values():
            task = asyncio.ensure_future(self._run(layout, params, waiters))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, layout: PgLayout, params: dict[str, Any], waiters: list[_Waiter]) -> None:
        sql = layout.sql["get_many"]
        values = list(params.values())

        async def run(conn: asyncpg.Connection) -> dict[str, bytes]:
            return {str(k): bytes(body) for k, body in await conn.fetch(sql, values)}

        try:
            found: dict[str, bytes] = await self._read(run, "reading")
        except BaseException as exc:
            for _, future in waiters:
                if not future.done():
                    future.set_exception(_copy(exc))
            if not isinstance(exc, Exception):
                raise
            return
        for keys, future in waiters:
            if not future.done():
                future.set_result({k: found[k] for k in keys if k in found})


def _copy(exc: BaseException) -> BaseException:
    if isinstance(exc, StorageError):
        copied = StorageError(exc.code, exc.message, exc.details)
        copied.__cause__ = exc.__cause__
        return copied
    return exc
