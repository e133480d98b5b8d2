"""The files of one workspace, reached without ever following a symbolic link.

A workspace is a directory tree keepstone writes itself; it never holds a
symbolic link. One that appears there was put by someone else, and following
it would read a record, or append a log line, somewhere outside the
workspace. So every file and directory is reached from the root's descriptor,
one path component at a time, with ``O_NOFOLLOW`` (``openat(2)`` and friends):
a link anywhere on the path, or anything but a regular file where a file is
expected (a FIFO, a device, a directory), is refused with ``corrupt`` naming
the workspace-relative path, before anything is read or written through it.
The root itself is resolved once, when the workspace is opened (a workspace
may live behind a link; nothing inside it may be one).

``O_NONBLOCK`` is set on every open so that a FIFO planted at a record's
path is refused instead of blocking the open; it changes nothing for regular
files.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keepstone.errors import StorageError

FILE_MODE = 0o600
DIR_MODE = 0o700
"""Workspaces are owner-only: records, logs and blobs may hold private data."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def refused(rel: str, what: str, target: str | None = None) -> StorageError:
    """The ``corrupt`` error for ``rel``, which is ``what`` (a symbolic link,
    not a directory...) where keepstone expects its own file or directory."""
    pointing = f" (to {target})" if target is not None else ""
    return StorageError(
        "corrupt",
        f"{rel} in the workspace is {what}{pointing}; keepstone never follows links or "
        "opens special files in a workspace, and reads and writes of it are refused "
        "(replace it with the file it should be, or remove it; `keepstone doctor` "
        "lists every such path)",
        {"file": rel, "found": what, **({"target": target} if target is not None else {})},
    )


def describe(mode: int) -> str:
    """What a file of ``mode`` is, for messages."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a regular file"


class Tree:
    """The root directory of one workspace, and safe access below it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    # ------------------------------------------------------------------ directories

    def _refuse(self, dir_fd: int, name: str, rel: str, expected_dir: bool) -> StorageError:
        """Why ``name`` (in ``dir_fd``, at ``rel``) could not be opened as expected."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return refused(rel, "not what keepstone wrote there")
        target = None
        if stat.S_ISLNK(st.st_mode):
            with contextlib.suppress(OSError):
                target = os.readlink(name, dir_fd=dir_fd)
        what = describe(st.st_mode)
        if not expected_dir and stat.S_ISDIR(st.st_mode):
            what = "a directory"
        elif expected_dir and not stat.S_ISLNK(st.st_mode):
            what = f"{what}, not a directory"
        return refused(rel, what, target)

    def _open_dir(self, parts: list[str], create: bool, created: list[str] | None) -> int:
        """A descriptor of the directory ``parts`` below the root (the root's
        own descriptor when ``parts`` is empty: do not close that one)."""
        fd = self.fd
        for i, part in enumerate(parts):
            try:
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, DIR_MODE, dir_fd=fd)
                        if created is not None:
                            created.append("/".join(parts[: i + 1]))
                    except FileExistsError:
                        pass
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    error = self._refuse(fd, part, "/".join(parts[: i + 1]), expected_dir=True)
                    if fd != self.fd:
                        os.close(fd)
                    raise error from exc
                if fd != self.fd:
                    os.close(fd)
                raise
            if fd != self.fd:
                os.close(fd)
            fd = nxt
        return fd

    @contextlib.contextmanager
    def directory(
        self, rel_dir: str, create: bool = False, created: list[str] | None = None
    ) -> Iterator[int]:
        """A descriptor of directory ``rel_dir`` ("" is the root) for the block.

        Raises:
            FileNotFoundError: it is missing (and ``create`` is false).
            StorageError: ``corrupt`` when a component is a link or not a directory.
        """
        parts = [p for p in rel_dir.split("/") if p]
        fd = self._open_dir(parts, create, created)
        try:
            yield fd
        finally:
            if fd != self.fd:
                os.close(fd)

    def makedirs(self, rel_dir: str) -> list[str]:
        """Create ``rel_dir`` and its missing parents; returns those created."""
        created: list[str] = []
        with self.directory(rel_dir, create=True, created=created):
            pass
        return created

    # ------------------------------------------------------------------ files

    def open(self, rel: str, flags: int, mode: int = FILE_MODE, create_dirs: bool = False) -> int:
        """A descriptor of the regular file ``rel`` opened with ``flags``.

        Raises:
            FileNotFoundError: the file (or a directory on its path) is missing.
            StorageError: ``corrupt`` when the file or a directory on its path is
                a link, or the file is not a regular file.
        """
        return self._open(rel, flags, mode, create_dirs)[0]

    def _open(self, rel: str, flags: int, mode: int, create_dirs: bool) -> tuple[int, int]:
        """:meth:`open`, also returning the file's size."""
        fd = _openat2(self.fd, rel, flags | _FILE_FLAGS, mode)
        if fd < 0:  # no openat2, or something to create or to explain: the walk
            parent, _, name = rel.rpartition("/")
            with self.directory(parent, create=create_dirs) as dir_fd:
                try:
                    fd = os.open(name, flags | _FILE_FLAGS, mode, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR):
                        raise self._refuse(dir_fd, name, rel, expected_dir=False) from exc
                    raise
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise refused(rel, describe(st.st_mode))
        return fd, st.st_size

    def read(self, rel: str) -> bytes:
        """The bytes of the regular file ``rel`` (see :meth:`open` for errors)."""
        fd, size = self._open(rel, os.O_RDONLY, FILE_MODE, False)
        try:
            data = os.read(fd, size + 1)  # one call, unless the file grew meanwhile
            if len(data) <= size:
                return data
            parts = [data]
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        finally:
            os.close(fd)

    def lstat(self, rel: str) -> os.stat_result:
        """``rel``'s own metadata, refusing a link or a special file there.

        Raises:
            FileNotFoundError: it, or a directory on its path, is missing.
            StorageError: ``corrupt`` when it or a directory on its path is a
                link, or it is not a regular file.
        """
        parent, _, name = rel.rpartition("/")
        with self.directory(parent) as dir_fd:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise self._refuse(dir_fd, name, rel, expected_dir=False)
        return st

    def size(self, rel: str) -> int | None:
        """The size of the regular file ``rel``; ``None`` when it is missing."""
        try:
            return self.lstat(rel).st_size
        except FileNotFoundError:
            return None

    def check(self, rel: str) -> None:
        """Refuse ``rel`` if it, or a directory on its path, is a link or not
        what keepstone writes there (a missing file or directory is fine)."""
        self.size(rel)

    def unlink(self, rel: str) -> None:
        """Remove the file ``rel`` (never anything a link on its path points to).

        Raises:
            FileNotFoundError: it is missing.
        """
        parent, _, name = rel.rpartition("/")
        with self.directory(parent) as dir_fd:
            os.unlink(name, dir_fd=dir_fd)

    def replace(self, temp_rel: str, rel: str) -> list[str]:
        """Rename ``temp_rel`` over ``rel`` (a link at ``rel`` is replaced, never
        followed); creates ``rel``'s directories, returns those created."""
        src_parent, _, src_name = temp_rel.rpartition("/")
        dst_parent, _, dst_name = rel.rpartition("/")
        created: list[str] = []
        with (
            self.directory(src_parent) as src_fd,
            self.directory(dst_parent, create=True, created=created) as dst_fd,
        ):
            os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return created

    def fsync_dir(self, rel_dir: str) -> None:
        """Make the entries of directory ``rel_dir`` durable."""
        with self.directory(rel_dir) as fd:
            os.fsync(fd)

    # ------------------------------------------------------------------ listing

    def entries(self, rel_dir: str) -> list[Item]:
        """The entries of directory ``rel_dir``, sorted by name ([] when missing).

        Raises:
            StorageError: ``corrupt`` when ``rel_dir`` or a directory on its
                path is a link or not a directory.
        """
        try:
            with self.directory(rel_dir) as fd, os.scandir(fd) as found:
                # Entries of a descriptor scan stat through that descriptor:
                # read what is needed before it closes.
                items = [Item(e.name, _kind(e, fd)) for e in found]
        except FileNotFoundError:
            return []
        return sorted(items, key=lambda i: i.name)

    def files(self, rel_dir: str) -> Iterator[str]:
        """Workspace-relative paths of the regular files below ``rel_dir``, in
        sorted order, never entering a link (see :meth:`entries` for errors)."""
        for item in self.entries(rel_dir):
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            if item.kind == "dir":
                yield from self.files(rel)
            elif item.kind == "file":
                yield rel

    def links(self, rel_dir: str = "") -> Iterator[tuple[str, str]]:
        """Every path below ``rel_dir`` that is a link or a special file (a
        FIFO, a socket, a device), with what it is, in sorted order."""
        for item in self.entries(rel_dir):
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            if item.kind == "dir":
                yield from self.links(rel)
            elif item.kind != "file":
                yield rel, item.kind


# --------------------------------------------------------------------------- openat2

_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437
"""``openat2(2)`` (Linux 5.6): the same number on every architecture."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _libc_syscall() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
    call = getattr(libc, "syscall", None)
    if call is not None:
        call.restype = ctypes.c_long
    return call


_syscall: Any = _libc_syscall()


def _openat2(root_fd: int, rel: str, flags: int, mode: int) -> int:
    """``rel`` opened below ``root_fd`` in one system call that refuses any
    link on the way (``RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH``); -1 when it
    did not open it, for the component-by-component walk to open it or to
    explain why (a missing directory to create, a link to name), or when the
    kernel or a sandbox does not offer ``openat2`` (then it is not tried again).

    Raises:
        FileNotFoundError: the file is missing (and not to be created).
    """
    global _syscall
    if _syscall is None:
        return -1
    how = _HOWS.get((flags, mode))
    if how is None:
        resolve = _RESOLVE_NO_SYMLINKS | _RESOLVE_BENEATH
        how = _HOWS[flags, mode] = _OpenHow(flags, mode if flags & os.O_CREAT else 0, resolve)
    fd: int = _syscall(_SYS_OPENAT2, root_fd, rel.encode(), ctypes.byref(how), _HOW_SIZE)
    if fd >= 0:
        return fd
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG):
        _syscall = None  # not offered here: the walk does the same, in more calls
    elif code == errno.ENOENT and not flags & os.O_CREAT:
        raise FileNotFoundError(code, os.strerror(code), rel)
    return -1


_HOW_SIZE = ctypes.sizeof(_OpenHow)
_HOWS: dict[tuple[int, int], _OpenHow] = {}


@dataclass(frozen=True, slots=True)
class Item:
    """One directory entry: its name, and ``file``, ``dir`` or what else it is
    (``a symbolic link to <target>``, ``a FIFO``...)."""

    name: str
    kind: str


def _kind(entry: os.DirEntry[str], dir_fd: int) -> str:
    if entry.is_symlink():
        try:
            return f"a symbolic link to {os.readlink(entry.name, dir_fd=dir_fd)}"
        except OSError:
            return "a symbolic link"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    if entry.is_file(follow_symlinks=False):
        return "file"
    try:
        return describe(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        return "not a regular file"


__all__ = ["DIR_MODE", "FILE_MODE", "Item", "Tree", "describe", "refused"]
