"""A stdlib ``logging.Handler`` that writes records to a run's log stream.

``emit`` may be called from any thread; records are queued and appended in
batches from the event loop the handler was created on. ``drain()`` waits
until every queued record is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from keepstone.errors import StorageError
from keepstone.ports.logs import LogStore
from keepstone.schemas._base import SystemClock
from keepstone.schemas.logs import LogLevel, LogLine

_LEVELS: dict[int, LogLevel] = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


def _level(levelno: int) -> LogLevel:
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _LEVELS[threshold]
    return "debug"


class KeepstoneLogHandler(logging.Handler):
    """Send ``logging`` records to ``logs`` for ``run_id``.

    Each record becomes a line with event ``log.<logger name>``, the
    formatted message, and ``data`` holding the logger, module and line, plus
    the exception text when there is one.
    """

    def __init__(self, logs: LogStore, run_id: str, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._logs = logs
        self._run_id = run_id
        self._loop = asyncio.get_running_loop()
        self._pending: list[LogLine] = []
        self._flushing: asyncio.Task[None] | None = None
        self._clock = SystemClock()
        self.step_source: Callable[[], str | None] = lambda: None
        self.errors: list[StorageError] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data: dict[str, Any] = {
                "logger": record.name,
                "module": record.module,
                "line": record.lineno,
            }
            if record.exc_info:
                data["exception"] = logging.Formatter().formatException(record.exc_info)
            line = LogLine(
                run_id=self._run_id,
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
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._enqueue(line)
        else:
            self._loop.call_soon_threadsafe(self._enqueue, line)

    def _enqueue(self, line: LogLine) -> None:
        self._pending.append(line)
        if self._flushing is None or self._flushing.done():
            self._flushing = self._loop.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._logs.append(self._run_id, batch)
            except StorageError as exc:
                self.errors.append(exc)

    async def drain(self) -> None:
        """Wait until every record emitted so far is stored."""
        await asyncio.sleep(0)
        while self._flushing is not None and not self._flushing.done():
            await self._flushing
        if self._pending:
            await self._flush()
