"""A run's log lines, written in order and durably: :class:`RunLogWriter`
and the stdlib ``logging.Handler`` over it, :class:`KeepstoneLogHandler`.

Every line of a run that goes through the writer (``logging`` records,
``run.log``, ``artifact.persisted``) is queued and appended in the order it
was logged, by one task on keepstone's private event loop thread
(:class:`~keepstone.services.loopthread.LoopThread`). Where the lines go:

* a store opened with the sync API already lives on that loop: the writer
  uses it;
* a durable store that other processes may share (SQLite, the file
  workspace, PostgreSQL) gets a second connection of its own, opened on that
  loop: a ``logging`` call made on the application's event loop can then
  wait for its line to commit without needing that loop;
* otherwise (``memory://``) lines are appended through the application's
  own loop, in order, and nothing waits for them.

A line at ``ERROR`` or above is committed, with every line queued before it,
before the ``logging`` call returns (on a durable store; from the private
loop's thread, or through ``memory://``, the call does not wait). Other lines
are committed within ``flush_interval`` seconds, when a step or the run ends,
on ``handler.flush()``, or when the interpreter exits normally. A hard crash
(SIGKILL, power loss, ``os._exit``) loses at most the lines below ``ERROR``
logged in the last ``flush_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from keepstone.errors import StorageError
from keepstone.ports.logs import LogStore
from keepstone.schemas._base import SystemClock, current_actor
from keepstone.schemas.logs import LogLevel, LogLine
from keepstone.services.loopthread import LoopThread

FLUSH_INTERVAL = 0.5
"""Seconds a line below ``ERROR`` may wait in the queue before it is written."""

ERROR_WAIT = 10.0
"""Longest a ``logging`` call at ``ERROR`` or above waits for its commit.

A longer wait means the store is stuck (or, on PostgreSQL, the application's
own loop holds a lock the second connection needs); the line stays queued
and is written once the store answers."""

MAX_BATCH = 500
"""Most lines in one append."""

_LEVELS: dict[int, LogLevel] = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}

_writing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "keepstone_log_writing", default=False
)
"""Set while the writer appends: records logged by that very write are dropped,
so a backend that logs cannot feed the writer forever."""


def _level(levelno: int) -> LogLevel:
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _LEVELS[threshold]
    return "debug"


class StoreOpener(Protocol):
    """Opens another connection to the same store (see :mod:`keepstone.store`)."""

    def __call__(self) -> Awaitable[Any]: ...


class _Sink:
    """Where the writer's appends go; runs on the private loop."""

    def may_wait(self, writer_loop: LoopThread) -> bool:
        """Whether the calling thread may block until a line is committed."""
        return not writer_loop.in_loop_thread()

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> list[LogLine]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class _Direct(_Sink):
    """The store itself lives on the private loop (the sync API)."""

    def __init__(self, logs: LogStore) -> None:
        self._logs = logs

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> list[LogLine]:
        return await self._logs.append(run_id, lines)


class _SecondConnection(_Sink):
    """A connection of the writer's own to a durable, multi-process store."""

    def __init__(self, opener: StoreOpener) -> None:
        self._opener = opener
        self._store: Any = None

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> list[LogLine]:
        if self._store is None:
            self._store = await self._opener()
        stored: list[LogLine] = await self._store.logs.append(run_id, lines)
        return stored

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()


class _ThroughCallerLoop(_Sink):
    """Appends run on the loop the store belongs to (``memory://``)."""

    def __init__(self, logs: LogStore, loop: asyncio.AbstractEventLoop) -> None:
        self._logs = logs
        self._loop = loop
        self._thread = threading.get_ident()

    def may_wait(self, writer_loop: LoopThread) -> bool:
        return (
            super().may_wait(writer_loop)
            and threading.get_ident() != self._thread
            and not self._loop.is_closed()
        )

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> list[LogLine]:
        actor = current_actor.get()

        async def call() -> list[LogLine]:
            current_actor.set(actor)
            return await self._logs.append(run_id, lines)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), self._loop))


@dataclass
class _Queued:
    line: LogLine | None  # None: a flush marker
    actor: str | None
    urgent: bool
    at: float = field(default_factory=time.monotonic)
    future: concurrent.futures.Future[LogLine | None] = field(
        default_factory=concurrent.futures.Future
    )


_live: weakref.WeakSet[RunLogWriter] = weakref.WeakSet()
_hooked = threading.Event()


def _flush_live_writers() -> None:
    """At exit: write what every open writer still holds."""
    for writer in list(_live):
        writer.flush(timeout=5.0)


class RunLogWriter:
    """Writes one run's log lines in order (see the module docstring)."""

    def __init__(
        self,
        run_id: str,
        sink: _Sink,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        error_wait: float = ERROR_WAIT,
    ) -> None:
        self.run_id = run_id
        self.flush_interval = flush_interval
        self.error_wait = error_wait
        self.errors: list[StorageError] = []
        """Appends the store refused (the lines are lost), newest last."""
        self._sink = sink
        self._loop = LoopThread.shared()
        self._lock = threading.Lock()
        self._queue: collections.deque[_Queued] = collections.deque()
        self._urgent = 0
        self._closing = False
        self._wake = asyncio.Event()
        self._done = self._loop.submit(self._consume())
        _live.add(self)
        if not _hooked.is_set():
            _hooked.set()
            LoopThread.at_exit(_flush_live_writers)

    @classmethod
    def for_store(
        cls,
        run_id: str,
        logs: LogStore,
        opener: StoreOpener | None,
        *,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> RunLogWriter:
        """A writer for ``run_id`` of the store whose ``logs`` port is given,
        called from the loop that store is used on."""
        try:
            here = asyncio.get_running_loop()
        except RuntimeError as exc:
            raise StorageError(
                "invalid", "a run's log writer is made inside the run's async code", {}
            ) from exc
        if here is LoopThread.shared().loop:
            sink: _Sink = _Direct(logs)
        elif opener is not None:
            sink = _SecondConnection(opener)
        else:
            sink = _ThroughCallerLoop(logs, here)
        return cls(run_id, sink, flush_interval=flush_interval)

    @property
    def closed(self) -> bool:
        return self._closing

    def may_wait(self) -> bool:
        """Whether the calling thread may wait for a commit (see the module docstring)."""
        return self._sink.may_wait(self._loop)

    def submit(
        self, line: LogLine | None, *, urgent: bool
    ) -> concurrent.futures.Future[LogLine | None]:
        """Queue ``line`` (``None``: a flush marker); the future resolves once
        it and every line before it are stored. ``urgent`` writes it now
        instead of within the flush interval."""
        item = _Queued(line, current_actor.get(), urgent)
        with self._lock:
            if self._closing:
                item.future.set_exception(
                    StorageError(
                        "conflict",
                        f"the log writer of run {self.run_id} is closed (the run has ended)",
                        {"run": self.run_id},
                    )
                )
                return item.future
            first = not self._queue
            self._queue.append(item)
            if urgent:
                self._urgent += 1
        if urgent or first:
            self._poke()
        return item.future

    def _poke(self) -> None:
        if self._loop.in_loop_thread():
            self._wake.set()
        else:
            self._loop.loop.call_soon_threadsafe(self._wake.set)

    async def write(self, line: LogLine) -> LogLine:
        """Queue ``line`` and wait (without blocking the caller's loop) until it is stored."""
        stored = await asyncio.wrap_future(self.submit(line, urgent=True))
        assert stored is not None
        return stored

    async def drain(self) -> None:
        """Wait (without blocking the caller's loop) until every queued line is stored."""
        await asyncio.wrap_future(self.submit(None, urgent=True))

    def flush(self, timeout: float | None = None) -> bool:
        """Write every queued line now; wait for them when the calling thread
        may (see :meth:`may_wait`). ``True`` when they are stored."""
        if self._closing and not self._queue:
            return True
        marker = self.submit(None, urgent=True)
        if not self.may_wait():
            return False
        try:
            marker.result(timeout)
        except (concurrent.futures.TimeoutError, StorageError):
            return False
        return True

    async def aclose(self) -> None:
        """Write what is queued, stop, and close the second connection."""
        with self._lock:
            self._closing = True
        self._poke()
        await asyncio.wrap_future(self._done)
        _live.discard(self)

    # ------------------------------------------------------------------ the private loop

    async def _consume(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while True:
                    with self._lock:
                        if not self._queue:
                            break
                        hurry = self._urgent > 0 or self._closing
                        due = self._queue[0].at + self.flush_interval
                    if not hurry and len(self._queue) < MAX_BATCH:
                        wait = due - time.monotonic()
                        if wait > 0:
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(self._wake.wait(), wait)
                            self._wake.clear()
                            continue
                    await self._write_some()
                if self._closing:
                    with self._lock:
                        if not self._queue:
                            return
        finally:
            await self._sink.close()

    async def _write_some(self) -> None:
        """Append the longest run of queued lines with one actor, in order."""
        with self._lock:
            chunk: list[_Queued] = []
            while self._queue and len(chunk) < MAX_BATCH:
                head = self._queue[0]
                if head.line is not None and chunk and head.actor != chunk[-1].actor:
                    break
                chunk.append(self._queue.popleft())
                if head.line is None:
                    break  # a marker: settle what precedes it first
            self._urgent -= sum(1 for q in chunk if q.urgent)
        lines = [q for q in chunk if q.line is not None]
        if lines:
            await self._append(lines)
        for q in chunk:
            if q.line is None:
                _settle(q.future, None)

    async def _append(self, items: list[_Queued]) -> None:
        token = _writing.set(True)
        actor = current_actor.set(items[0].actor)
        try:
            try:
                stored = await self._sink.append(self.run_id, [q.line for q in items if q.line])
            except StorageError as exc:
                if len(items) == 1:
                    self._fail(items[0], exc)
                    return
                for item in items:  # one refused line must not lose its neighbours
                    assert item.line is not None
                    try:
                        one = await self._sink.append(self.run_id, [item.line])
                    except StorageError as err:
                        self._fail(item, err)
                    else:
                        _settle(item.future, one[0])
                return
            except BaseException as exc:
                failed = StorageError("unavailable", f"writing log lines failed: {exc!r}", {})
                for item in items:
                    _settle(item.future, error=failed)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            for item, line in zip(items, stored, strict=True):
                _settle(item.future, line)
        finally:
            current_actor.reset(actor)
            _writing.reset(token)

    def _fail(self, item: _Queued, exc: StorageError) -> None:
        self.errors.append(exc)
        del self.errors[:-100]
        _settle(item.future, error=exc)


def _settle(
    future: concurrent.futures.Future[LogLine | None],
    value: LogLine | None = None,
    *,
    error: BaseException | None = None,
) -> None:
    """Resolve a waiter, unless it gave up (cancelled) meanwhile."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


class KeepstoneLogHandler(logging.Handler):
    """Send ``logging`` records to a run's log stream, in order (see the
    module docstring for what is durable when).

    Each record becomes a line with event ``log.<logger name>``, the
    formatted message, and ``data`` holding the logger, the module and the
    source line (``lineno``; the line's own number in the run's log is
    ``LogLine.line``), plus the exception text when there is one. ``flush()`` writes what is queued
    and, where the calling thread may wait, waits for it.
    """

    def __init__(
        self,
        writer: RunLogWriter,
        level: int = logging.NOTSET,
        step_source: Callable[[], str | None] | None = None,
    ) -> None:
        super().__init__(level)
        self.writer = writer
        self.step_source: Callable[[], str | None] = step_source or (lambda: None)
        self.dropped = 0
        """Records logged after the run ended (they cannot be stored)."""
        self._clock = SystemClock()

    @property
    def errors(self) -> list[StorageError]:
        """Appends the store refused (see :attr:`RunLogWriter.errors`)."""
        return self.writer.errors

    def emit(self, record: logging.LogRecord) -> None:
        if _writing.get():
            return
        if self.writer.closed:
            self.dropped += 1
            return
        try:
            data: dict[str, Any] = {
                "logger": record.name,
                "module": record.module,
                "lineno": record.lineno,
            }
            if record.exc_info:
                data["exception"] = logging.Formatter().formatException(record.exc_info)
            line = LogLine(
                run_id=self.writer.run_id,
                at=self._clock.now(),
                level=_level(record.levelno),
                event=f"log.{record.name}"[:512],
                step=self.step_source(),
                message=record.getMessage(),
                data=data,
            )
        except Exception:  # a bad record must not break the caller's logging
            self.handleError(record)
            return
        urgent = record.levelno >= logging.ERROR
        future = self.writer.submit(line, urgent=urgent)
        if urgent and self.writer.may_wait():
            # A refusal is kept in writer.errors; after a timeout the line stays queued.
            with contextlib.suppress(concurrent.futures.TimeoutError, StorageError):
                future.result(self.writer.error_wait)

    def flush(self) -> None:
        self.writer.flush(timeout=self.writer.error_wait)
