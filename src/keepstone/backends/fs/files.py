"""File primitives of the workspace: atomic replacement, fsync, the lock.

Two kinds of write, and why:

* :func:`write_durably` — temp file, fsync, rename, directory fsync. For the
  files that are their own commit point: the stamp, a new journal, the index
  snapshot, blobs too large to travel in the journal.
* :func:`write_replacing` — temp file and rename, no fsync. For record files
  and small blobs, whose content is already durable in the journal; a
  checkpoint makes them durable (:func:`sync_paths`) before the journal
  entries that describe them are dropped.

The workspace lock is ``flock(2)`` on ``<root>/lock``: exclusive around each
commit, checkpoint and recovery. ``flock`` locks belong to an open file
description, so two stores opened on one workspace in one process exclude
each other like two processes do (POSIX ``fcntl`` record locks would not).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import fcntl
import itertools
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from keepstone.errors import StorageError

_counter = itertools.count()
_TEMP_MAX_AGE = 3600.0

FILE_MODE = 0o600
DIR_MODE = 0o700
"""Workspaces are owner-only: records, logs and blobs may hold private data."""

SYNCFS_THRESHOLD = 64
"""A checkpoint with more touched files than this uses one ``syncfs(2)``."""


def fsync_dir(path: str | Path) -> None:
    """Make the entries of directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(root: Path) -> Path:
    """A fresh temp file name under ``<root>/tmp`` (pid-tagged for cleanup)."""
    return root / "tmp" / f"{os.getpid()}-{next(_counter)}-{time.monotonic_ns()}.tmp"


def ensure_dir(path: Path, created: set[Path] | None = None) -> None:
    """Create directory ``path`` and its parents; remember what was created."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)
        if created is not None:
            created.add(folder)


def write_replacing(root: Path, final: Path, data: bytes) -> None:
    """Replace ``final`` with ``data`` atomically (no fsync: see the module doc)."""
    temp = temp_path(root)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.replace(temp, final)
    except FileNotFoundError:
        ensure_dir(final.parent)
        os.replace(temp, final)


def write_durably(root: Path, final: Path, data: bytes) -> None:
    """Replace ``final`` with ``data``: temp file, fsync, rename, directory fsync."""
    ensure_dir(root / "tmp")
    temp = temp_path(root)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    os.close(fd)
    created: set[Path] = set()
    ensure_dir(final.parent, created)
    os.replace(temp, final)
    for folder in sorted({final.parent, *(c.parent for c in created)}, key=str, reverse=True):
        fsync_dir(folder)


def _libc_syncfs() -> object | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    return getattr(libc, "syncfs", None)


_SYNCFS = _libc_syncfs() if hasattr(os, "O_DIRECTORY") else None


def sync_paths(root: Path, files: Iterable[str]) -> None:
    """Make ``files`` (relative to ``root``) and their directories durable.

    Many files: one ``syncfs(2)`` of the workspace's filesystem (Linux), far
    cheaper than one fsync each. Few files, or no ``syncfs``: fsync each
    existing file, then each directory on their way up to ``root``.
    """
    wanted = sorted(set(files))
    if not wanted:
        return
    if len(wanted) > SYNCFS_THRESHOLD and _SYNCFS is not None:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _SYNCFS(fd) == 0:  # type: ignore[operator]
                return
        finally:
            os.close(fd)
    dirs: set[Path] = {root}
    for rel in wanted:
        path = root / rel
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        parent = path.parent
        while parent != root and parent not in dirs:
            dirs.add(parent)
            parent = parent.parent
    for folder in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(folder)


def clean_temps(root: Path) -> None:
    """Remove temp files of dead processes, or older than an hour."""
    tmp = root / "tmp"
    if not tmp.is_dir():
        return
    cutoff = time.time() - _TEMP_MAX_AGE
    for entry in tmp.iterdir():
        pid_text = entry.name.partition("-")[0]
        with contextlib.suppress(OSError, ValueError):
            alive = _alive(int(pid_text)) if pid_text.isdigit() else False
            if not alive or entry.stat().st_mtime < cutoff:
                entry.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkspaceLock:
    """The exclusive workspace write lock (``flock`` on ``<root>/lock``).

    ``flock`` alone would let two holders of this one descriptor (two tasks,
    two threads) both "take" it; an in-process lock makes each handle
    exclusive within the process too.
    """

    GIVE_UP = 120.0
    """Seconds of waiting for another writer before ``unavailable``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        self._mine = threading.Lock()
        self.held = False

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks."""
        if not self._mine.acquire(blocking=False):
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._mine.release()
            return False
        except BaseException:
            self._mine.release()
            raise
        self.held = True
        return True

    def acquire(self) -> None:
        """Take the lock, waiting (blocking this thread) for other writers."""
        if not self.try_acquire():
            self._wait(time.monotonic() + self.GIVE_UP)

    def _wait(self, deadline: float) -> None:
        delay = 0.0005
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise self._timeout()
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def acquire_async(self) -> None:
        """Take the lock; while another process holds it, sleep without blocking the loop."""
        if self.try_acquire():
            return
        deadline = time.monotonic() + self.GIVE_UP
        delay = 0.0002
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise self._timeout()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)

    def _timeout(self) -> StorageError:
        return StorageError(
            "unavailable",
            f"the workspace lock {self.path} stayed held by another writer for "
            f"{self.GIVE_UP:.0f} s",
            {"path": str(self.path)},
        )

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                self._mine.release()

    def close(self) -> None:
        self.release()
        with contextlib.suppress(OSError):
            os.close(self._fd)
