"""Reaching an async keepstone store from LangGraph's sync and async calls.

A :class:`~keepstone.Store` lives on the event loop it was opened on.
LangGraph calls a checkpointer's or a store's sync methods from sync code
(``graph.invoke``, possibly from worker threads) and its async methods from
async code. :class:`LoopBinding` runs each call on the store's loop: async
calls on that loop run directly, calls from elsewhere are handed to it.
``from_url`` opens the store on a background loop of its own when used with
``with``, or on the caller's loop with ``async with``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, TypeVar

import keepstone
from keepstone.errors import StorageError
from keepstone.store import Store

T = TypeVar("T")


class BackgroundLoop:
    """An event loop running in a daemon thread of its own."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class LoopBinding:
    """Runs coroutines on the loop a store lives on (see the module docstring)."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.store = store
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self.loop = loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the store's loop, from async code."""
        running = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = running
        if self.loop is running:
            return await coro
        if self.loop.is_closed() or not self.loop.is_running():
            coro.close()
            raise _loop_gone()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the store's loop from sync code and wait for it.

        Raises:
            StorageError: ``config`` when called on the store's own loop
                (use the async method there) or when that loop is gone.
        """
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            coro.close()
            raise _loop_gone()
        if running is loop:
            coro.close()
            raise StorageError(
                "config",
                "a synchronous LangGraph call reached keepstone on the event loop its store "
                "runs on, which would block that loop: use the async API there (ainvoke, "
                "astream, aget_state...), or open the saver with "
                "`with KeepstoneSaver.from_url(url)` so it runs on a loop of its own",
                {},
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()


def _loop_gone() -> StorageError:
    return StorageError(
        "unavailable",
        "the event loop this keepstone store was opened on is no longer running; open the "
        "saver or store again (with `with ....from_url(url)` it gets a loop of its own)",
        {},
    )


class Opening(Generic[T]):
    """``with`` / ``async with`` an object built over a store opened from a URL."""

    def __init__(
        self,
        url: str | os.PathLike[str],
        build: Callable[[LoopBinding], T],
        close: Callable[[T], Awaitable[None]],
        options: dict[str, Any],
    ) -> None:
        self._url = url
        self._build = build
        self._close = close
        self._options = options
        self._made: T | None = None
        self._background: BackgroundLoop | None = None
        self._store: Store | None = None

    def __enter__(self) -> T:
        background = BackgroundLoop("keepstone-langgraph")
        try:
            future = asyncio.run_coroutine_threadsafe(self._open(), background.loop)
            store = future.result()
        except BaseException:
            background.stop()
            raise
        self._background, self._store = background, store
        self._made = self._build(LoopBinding(store, background.loop))
        return self._made

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        background, made = self._background, self._made
        self._background = self._made = None
        if background is None or made is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(made), background.loop).result()
        finally:
            background.stop()

    async def __aenter__(self) -> T:
        self._store = await self._open()
        self._made = self._build(LoopBinding(self._store, asyncio.get_running_loop()))
        return self._made

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        made, self._made = self._made, None
        if made is not None:
            await self._shutdown(made)

    async def _open(self) -> Store:
        return await keepstone.open(self._url, **self._options)

    async def _shutdown(self, made: T) -> None:
        try:
            await self._close(made)
        finally:
            if self._store is not None:
                await self._store.close()
                self._store = None
