"""File primitives of the workspace: atomic replacement, fsync, the lock.

Two kinds of write, and why:

Every path is relative to the workspace root and reached through a
:class:`~keepstone.backends.fs.tree.Tree`, which never follows a link.

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

from keepstone.backends.fs.layout import LOCK, TMP
from keepstone.backends.fs.tree import FILE_MODE, Tree
from keepstone.errors import StorageError

_counter = itertools.count()
_TEMP_MAX_AGE = 3600.0

SYNCFS_THRESHOLD = 64
"""A checkpoint with more touched files than this uses one ``syncfs(2)``."""


def fsync_dir(path: str | Path) -> None:
    """Make the entries of directory ``path`` durable (a path outside a
    workspace, such as its parent; inside, use :meth:`Tree.fsync_dir`)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name() -> str:
    """A fresh temp file, relative to the root: ``tmp/<pid>-<n>-<ns>.tmp``
    (pid-tagged for cleanup)."""
    return f"{TMP}/{os.getpid()}-{next(_counter)}-{time.monotonic_ns()}.tmp"


def create_temp(tree: Tree) -> tuple[str, int]:
    """A new, empty temp file (created with ``O_EXCL``): its name and a
    write descriptor."""
    name = temp_name()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    return name, tree.open(name, flags, FILE_MODE, create_dirs=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_replacing(tree: Tree, rel: str, data: bytes) -> None:
    """Replace ``rel`` with ``data`` atomically (no fsync: see the module doc)."""
    temp, fd = create_temp(tree)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)
    try:
        tree.replace(temp, rel)
    except BaseException:
        with contextlib.suppress(OSError):
            tree.unlink(temp)
        raise


def write_durably(tree: Tree, rel: str, data: bytes) -> None:
    """Replace ``rel`` with ``data``: temp file, fsync, rename, directory fsync."""
    temp, fd = create_temp(tree)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tree.unlink(temp)
        raise
    os.close(fd)
    place(tree, temp, rel)


def place(tree: Tree, temp: str, rel: str) -> None:
    """Rename the durable temp file ``temp`` to ``rel`` and make the rename
    (and any directory it created) durable."""
    try:
        created = tree.replace(temp, rel)
    except BaseException:
        with contextlib.suppress(OSError):
            tree.unlink(temp)
        raise
    folders = {_parent(rel), *(_parent(c) for c in created)}
    for folder in sorted(folders, key=lambda f: f.count("/") + bool(f), reverse=True):
        tree.fsync_dir(folder)


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


def _libc_syncfs() -> object | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    return getattr(libc, "syncfs", None)


_SYNCFS = _libc_syncfs() if hasattr(os, "O_DIRECTORY") else None


def sync_paths(tree: Tree, files: Iterable[str]) -> None:
    """Make ``files`` (relative to the root) and their directories durable.

    Many files: one ``syncfs(2)`` of the workspace's filesystem (Linux), far
    cheaper than one fsync each. Few files, or no ``syncfs``: fsync each
    existing file, then each directory on their way up to the root. A file or
    directory that is no longer keepstone's (a link put in its place) is
    skipped: what was written there is gone, and the doctor reports the link.
    """
    wanted = sorted(set(files))
    if not wanted:
        return
    many = len(wanted) > SYNCFS_THRESHOLD and _SYNCFS is not None
    if many and _SYNCFS(tree.fd) == 0:  # type: ignore[operator]
        return
    dirs: set[str] = {""}
    for rel in wanted:
        with contextlib.suppress(FileNotFoundError, StorageError):
            fd = tree.open(rel, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        parent = _parent(rel)
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = _parent(parent)
    for folder in sorted(dirs, key=lambda f: f.count("/") + bool(f), reverse=True):
        with contextlib.suppress(FileNotFoundError, StorageError):
            tree.fsync_dir(folder)


def clean_temps(tree: Tree) -> None:
    """Remove temp files of dead processes, or older than an hour.

    Raises:
        StorageError: ``corrupt`` when ``tmp`` is a link or not a directory.
    """
    cutoff = time.time() - _TEMP_MAX_AGE
    for item in tree.entries(TMP):
        rel = f"{TMP}/{item.name}"
        pid_text = item.name.partition("-")[0]
        with contextlib.suppress(OSError, ValueError, StorageError):
            alive = _alive(int(pid_text)) if pid_text.isdigit() else False
            if item.kind != "file" or not alive or tree.lstat(rel).st_mtime < cutoff:
                tree.unlink(rel)  # a link is removed, never followed


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

    def __init__(self, tree: Tree) -> None:
        self.path = tree.root / LOCK
        self._fd = tree.open(LOCK, os.O_RDWR | os.O_CREAT, FILE_MODE)
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
