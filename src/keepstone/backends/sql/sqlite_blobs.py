"""The content-addressed directory beside a SQLite store for large blobs.

``<db>.blobs/ab/cd/<hex>`` holds the bytes of ``sha256:<hex>``. A file is
written to ``<db>.blobs/tmp/``, fsync'd, renamed into place and its directory
fsync'd *before* the transaction that records the blob commits, so a committed
``blobs`` row never points at a missing or partial file. A crash can leave an
unreferenced file behind (invisible: reads go through the ``blobs`` table);
never the other way round.

Directories are created ``0700`` and files ``0600``: blobs are the store's
data and are readable by its owner only, like the database file.

All methods block; the engine calls them from worker threads.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import BinaryIO

_TEMP_MAX_AGE = 24 * 3600.0
"""Temp files older than this are leftovers of a crashed writer."""


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class TempBlob:
    """A blob being written: an open temp file under ``<db>.blobs/tmp/``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()


class BlobDirectory:
    """Blob files of one SQLite store (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, digest: str) -> Path:
        """Where the bytes of ``digest`` live."""
        hexdigest = digest.partition(":")[2]
        return self.root / hexdigest[:2] / hexdigest[2:4] / hexdigest

    def _ensure_dir(self, path: Path) -> None:
        """Create ``path`` (and its parents up to the store's directory) durably."""
        missing: list[Path] = []
        probe = path
        while not probe.is_dir():
            missing.append(probe)
            probe = probe.parent
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
            fsync_dir(folder.parent)

    def new_temp(self) -> TempBlob:
        """A new temp file to stream bytes into."""
        tmp = self.root / "tmp"
        self._ensure_dir(tmp)
        return TempBlob(tmp / f"{os.getpid()}-{uuid.uuid4().hex}.tmp")

    def finish(self, temp: TempBlob, digest: str) -> None:
        """Make ``temp`` durable as the file of ``digest``."""
        try:
            temp.file.flush()
            os.fsync(temp.file.fileno())
            temp.file.close()
            final = self.path_for(digest)
            self._ensure_dir(final.parent)
            os.replace(temp.path, final)
            fsync_dir(final.parent)
        except BaseException:
            temp.discard()
            raise

    def write(self, digest: str, data: bytes) -> None:
        """Store ``data`` as the file of ``digest`` (idempotent), durably."""
        final = self.path_for(digest)
        if final.is_file() and final.stat().st_size == len(data):
            # Written before, maybe by a writer killed before its directory
            # fsync: make the entry durable now, then trust the content address.
            fsync_dir(final.parent)
            return
        temp = self.new_temp()
        try:
            temp.write(data)
        except BaseException:
            temp.discard()
            raise
        self.finish(temp, digest)

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def read(self, digest: str) -> bytes | None:
        """The file's bytes, or ``None`` if it is missing."""
        try:
            return self.path_for(digest).read_bytes()
        except FileNotFoundError:
            return None

    def open(self, digest: str) -> BinaryIO | None:
        """The file opened for reading, or ``None`` if it is missing."""
        try:
            return open(self.path_for(digest), "rb")
        except FileNotFoundError:
            return None

    def delete(self, digest: str) -> None:
        """Remove the file of ``digest`` if present."""
        path = self.path_for(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def clean_temps(self) -> None:
        """Remove temp files left by writers that crashed long ago."""
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return
        cutoff = time.time() - _TEMP_MAX_AGE
        for entry in tmp.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
