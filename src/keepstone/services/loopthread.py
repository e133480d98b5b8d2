"""A private event loop in a daemon thread, for callers that must not (or
cannot) use their own loop: the sync API (:mod:`keepstone.sync`) and the run
log writer (:mod:`keepstone.services.loghandler`).

Coroutines are submitted from any thread and run on the private loop, in
the caller's :mod:`contextvars` context (so ``keepstone.acting_as`` applies).
A blocking wait from the loop's own thread would deadlock, so it is refused.
Exceptions of every kind come back to the caller: a ``KeyboardInterrupt``
raised inside a coroutine never reaches (and stops) the private loop.

``exit_hooks`` run when the interpreter shuts down, before it joins
non-daemon threads and stops thread pools, while the private loop still runs
(they flush log lines that are still queued).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from keepstone.errors import StorageError

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running in its own daemon thread. Use :meth:`shared`."""

    _shared: ClassVar[LoopThread | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()
    _exit_hooks: ClassVar[list[Callable[[], None]]] = []
    _hooked: ClassVar[bool] = False

    def __init__(self, name: str = "keepstone-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._pid = os.getpid()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    @classmethod
    def shared(cls) -> LoopThread:
        """The process's private loop thread (started on first use, and again
        in a child process after ``fork``)."""
        with cls._shared_lock:
            current = cls._shared
            if current is None or current._pid != os.getpid() or not current.thread.is_alive():
                current = cls._shared = LoopThread()
                cls._install_exit_hook()
            return current

    @classmethod
    def at_exit(cls, hook: Callable[[], None]) -> None:
        """Run ``hook`` when the interpreter shuts down (see the module docstring)."""
        with cls._shared_lock:
            cls._exit_hooks.append(hook)
            cls._install_exit_hook()

    @classmethod
    def _install_exit_hook(cls) -> None:
        if cls._hooked:
            return
        cls._hooked = True
        # threading's own exit hooks run before non-daemon threads are joined
        # and, registered after concurrent.futures' hook, before thread pools
        # refuse work: a flush can still read and write through the backends.
        register = getattr(threading, "_register_atexit", None)
        if register is None:  # pragma: no cover - every CPython >= 3.9 has it
            import atexit

            atexit.register(cls._run_exit_hooks)
        else:
            register(cls._run_exit_hooks)

    @classmethod
    def _run_exit_hooks(cls) -> None:
        for hook in list(cls._exit_hooks):
            with contextlib.suppress(Exception):
                hook()

    def in_loop_thread(self) -> bool:
        """Whether the calling thread is this loop's thread."""
        return threading.current_thread() is self.thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the private loop, in the caller's context.
        Cancelling the returned future cancels the coroutine."""
        context = contextvars.copy_context()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            if future.cancelled():
                coro.close()
                return
            task = self.loop.create_task(_captured(coro), context=context)

            def settle(t: asyncio.Task[tuple[bool, Any]]) -> None:
                if future.done():  # cancelled by the caller meanwhile
                    return
                if t.cancelled():
                    future.cancel()
                    return
                ok, value = t.result()
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

            def stop(f: concurrent.futures.Future[T]) -> None:
                if f.cancelled() and not task.done():
                    self.loop.call_soon_threadsafe(task.cancel)

            task.add_done_callback(settle)
            future.add_done_callback(stop)

        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError as exc:  # the loop was closed
            coro.close()
            raise StorageError("unavailable", "keepstone's private event loop has stopped") from exc
        return future

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the private loop and wait for its result.

        A ``KeyboardInterrupt`` while waiting cancels the coroutine and is
        raised again.

        Raises:
            StorageError: ``invalid`` when called from the private loop's
                own thread (a callback of keepstone calling back into it);
                whatever ``coro`` raises.
        """
        if self.in_loop_thread():
            coro.close()
            raise StorageError(
                "invalid",
                "a blocking keepstone call was made from keepstone's own event loop thread "
                "(inside a callback or a progress hook); use the async API there",
            )
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise


async def _captured(coro: Awaitable[T]) -> tuple[bool, Any]:
    """Await ``coro``; its outcome as a value, whatever it raised, so that a
    ``KeyboardInterrupt`` or ``SystemExit`` never escapes into the loop."""
    try:
        return True, await coro
    except BaseException as exc:
        return False, exc
