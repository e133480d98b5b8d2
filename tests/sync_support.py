"""The sync API seen as async again, so the async conformance suite can drive it.

:class:`AsyncOverSync` wraps a :class:`keepstone.SyncStore` (or any object
it hands out): each method call returns an object that is awaitable,
async-iterable and an async context manager, whichever the test uses; the
blocking call runs in a worker thread (``asyncio.to_thread``), exactly as a
threaded application would call the sync API. Results that are sync
proxies, iterators or context managers are wrapped back, so the same test
bodies exercise every path of the sync layer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator, Iterator
from types import TracebackType
from typing import Any

from keepstone.sync import SyncContextManager, SyncIterator, SyncProxy, SyncStore


class AsyncOverSync:
    """An async facade over a sync object (see the module docstring)."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value) and not isinstance(value, type):
            return lambda *args, **kwargs: _Call(value, args, kwargs)
        return back(value)


class _Call:
    """One call of a sync method: await it, iterate it, or enter it."""

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._iterator: Iterator[Any] | None = None
        self._manager: Any = None

    async def _result(self) -> Any:
        return await asyncio.to_thread(self._fn, *self._args, **self._kwargs)

    def __await__(self) -> Generator[Any, None, Any]:
        async def run() -> Any:
            return back(await self._result())

        return run().__await__()

    def __aiter__(self) -> _Call:
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = await self._result()
        done = object()
        item = await asyncio.to_thread(next, self._iterator, done)  # type: ignore[arg-type]
        if item is done:
            raise StopAsyncIteration
        return back(item)

    async def aclose(self) -> None:
        if isinstance(self._iterator, SyncIterator):
            await asyncio.to_thread(self._iterator.close)

    async def __aenter__(self) -> Any:
        self._manager = await self._result()
        return back(await asyncio.to_thread(self._manager.__enter__))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return bool(await asyncio.to_thread(self._manager.__exit__, exc_type, exc, tb))


def back(value: Any) -> Any:
    """A value the sync API returned, in async clothes again."""
    if isinstance(value, SyncProxy | SyncStore):
        return AsyncOverSync(value)
    if isinstance(value, SyncIterator):
        return _Iterated(value)
    if isinstance(value, SyncContextManager | contextlib.AbstractContextManager):
        return _Entered(value)
    return value


class _Iterated:
    def __init__(self, iterator: Iterator[Any]) -> None:
        self._iterator = iterator

    def __aiter__(self) -> _Iterated:
        return self

    async def __anext__(self) -> Any:
        done = object()
        item = await asyncio.to_thread(next, self._iterator, done)  # type: ignore[arg-type]
        if item is done:
            raise StopAsyncIteration
        return back(item)


class _Entered:
    def __init__(self, manager: Any) -> None:
        self._manager = manager

    async def __aenter__(self) -> Any:
        return back(await asyncio.to_thread(self._manager.__enter__))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return bool(await asyncio.to_thread(self._manager.__exit__, exc_type, exc, tb))
