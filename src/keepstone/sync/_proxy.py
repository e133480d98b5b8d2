"""The one implementation of the sync API: a proxy that drives keepstone's
async objects on the private loop thread.

Calling a method of a proxy runs it on the loop thread and waits for it:
a coroutine becomes its result, an async iterator an :class:`SyncIterator`,
an async context manager a :class:`SyncContextManager`, and an object with
async methods (a port, a service, a running pipeline) another proxy. Plain
values (records, pages, handlers) come back as they are. An argument that
should be an async stream of bytes or records may be any iterable: it is
read in a worker thread, so a generator that blocks (a file, a network
read) never holds up the loop.
"""

from __future__ import annotations

import asyncio
import collections.abc
import functools
import inspect
import logging
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from keepstone.services.loopthread import LoopThread


class SyncProxy:
    """Blocking access to an async keepstone object (see the module docstring)."""

    __slots__ = ("_runner", "_target")

    def __init__(self, target: Any, runner: LoopThread) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_runner", runner)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value) and not isinstance(value, type):
            return _blocking(value, self._runner)
        return wrap(value, self._runner)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __dir__(self) -> Iterable[str]:
        return [n for n in dir(self._target) if not n.startswith("_")]

    def __repr__(self) -> str:
        return f"<sync {self._target!r}>"


class SyncIterator(Iterator[Any]):
    """An async iterator, read item by item on the loop thread."""

    def __init__(self, source: Any, runner: LoopThread) -> None:
        self._source = source
        self._runner = runner

    def __iter__(self) -> SyncIterator:
        return self

    def __next__(self) -> Any:
        try:
            item = self._runner.run(_next(self._source))
        except StopAsyncIteration:
            raise StopIteration from None
        return wrap(item, self._runner)

    def close(self) -> None:
        """Stop early (runs the async generator's clean-up)."""
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            self._runner.run(aclose())


class SyncContextManager:
    """An async context manager, entered and exited on the loop thread.
    An exception of the block, ``KeyboardInterrupt`` included, is handed to
    its ``__aexit__`` as it would be in async code."""

    def __init__(self, manager: Any, runner: LoopThread) -> None:
        self._manager = manager
        self._runner = runner

    def __enter__(self) -> Any:
        return wrap(self._runner.run(_enter(self._manager)), self._runner)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return bool(self._runner.run(_exit(self._manager, exc_type, exc, tb)))


def wrap(value: Any, runner: LoopThread) -> Any:
    """``value`` as the sync API hands it out (see the module docstring)."""
    if value is None or isinstance(value, str | bytes | int | float | BaseModel | logging.Handler):
        return value
    if hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
        return SyncContextManager(value, runner)
    if hasattr(value, "__anext__"):
        return SyncIterator(value, runner)
    kind: Any = type(value)
    if _is_async_object(kind):
        return SyncProxy(value, runner)
    return value


@functools.cache
def _is_async_object(cls: Any) -> bool:
    """Whether instances of ``cls`` have async methods worth a proxy."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name, None)
        if inspect.iscoroutinefunction(attr) or inspect.isasyncgenfunction(attr):
            return True
    return False


def _blocking(method: Callable[..., Any], runner: LoopThread) -> Callable[..., Any]:
    streams = _stream_params(getattr(method, "__func__", method))

    def call(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_adapt(v) for v in args)
        kwargs = {k: _adapt(v) for k, v in kwargs.items()}
        if streams:
            args, kwargs = _adapt_streams(method, streams, args, kwargs)
        return wrap(runner.run(_invoke(method, args, kwargs)), runner)

    call.__name__ = getattr(method, "__name__", "call")
    call.__doc__ = getattr(method, "__doc__", None)
    return call


async def _invoke(method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = method(*args, **kwargs)
    if inspect.isawaitable(result) and not hasattr(result, "__aenter__"):
        return await result
    return result


async def _next(source: Any) -> Any:
    return await source.__anext__()


async def _enter(manager: Any) -> Any:
    return await manager.__aenter__()


async def _exit(
    manager: Any,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> Any:
    return await manager.__aexit__(exc_type, exc, tb)


# --------------------------------------------------------------------------- stream arguments


@functools.cache
def _stream_params(func: Callable[..., Any]) -> frozenset[str]:
    """Parameters of ``func`` that take an async iterable."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable hints: fall back to their text
        raw = getattr(func, "__annotations__", {})
        return frozenset(n for n, a in raw.items() if n != "return" and "AsyncIterable" in str(a))
    return frozenset(n for n, h in hints.items() if n != "return" and _takes_async_stream(h))


def _takes_async_stream(hint: Any) -> bool:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else ()
    for part in args or (hint,):
        origin = typing.get_origin(part) or part
        if origin in (collections.abc.AsyncIterable, collections.abc.AsyncIterator):
            return True
    return False


_UnionType = type(int | str)


def _adapt(value: Any) -> Any:
    """A sync iterator (a generator of chunks or records) as an async one."""
    if (
        hasattr(value, "__next__")
        and hasattr(value, "__iter__")
        and not hasattr(value, "__aiter__")
    ):
        return _read_in_thread(value)
    return value


def _adapt_streams(
    method: Callable[..., Any], names: frozenset[str], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Lists and other iterables given where the async method takes an async stream."""
    bound = inspect.signature(method).bind_partial(*args, **kwargs)
    for name in names & bound.arguments.keys():
        value = bound.arguments[name]
        if isinstance(value, str | bytes | bytearray | memoryview | dict):
            continue
        if hasattr(value, "__iter__") and not hasattr(value, "__aiter__"):
            bound.arguments[name] = _read_in_thread(value)
    return bound.args, bound.kwargs


async def _read_in_thread(items: Iterable[Any]) -> AsyncIterator[Any]:
    """An async iterator over ``items``, each item taken in a worker thread."""
    if isinstance(items, list | tuple):
        for item in items:
            yield item
        return
    iterator = iter(items)
    done = object()
    while True:
        item = await asyncio.to_thread(next, iterator, done)
        if item is done:
            return
        yield item
