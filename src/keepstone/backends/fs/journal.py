"""``journal.jsonl``: the write-ahead journal, and the commit point of every write.

Line 1 is the header: the state at the last checkpoint (``base``, the last
commit number folded into the files; the seq counters; the audit chain head).
Then, per group commit, a commit line and, once its ops are in the files, a
done line::

    {"base": 41, "format": "keepstone-journal", "head": "sha256:…", "journal": 1, "seqs": {…}}
    {"n": 42, "ops": [...], "seqs": {"audit": 7, "events": 3}, "head": "sha256:…"}
    {"done": 42}

A commit is durable when its line is fsync'd; that is when ``apply`` may
return. The files are written after it, without fsync; a checkpoint fsyncs
them and starts a new journal whose header says so. A commit line without its
done line means the writer died while writing the files: the next lock holder
re-applies it (every op is idempotent) before anything else. A partial last
line is a commit that never became durable, never acknowledged: the next
lock holder cuts it off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from keepstone.backends.fs.files import write_durably
from keepstone.backends.fs.layout import JOURNAL
from keepstone.backends.fs.tree import Tree
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps

JOURNAL_FORMAT = "keepstone-journal"
JOURNAL_VERSION = 1


def header_line(base: int, seqs: dict[str, int], head: str) -> bytes:
    """The header of a journal starting after commit ``base``."""
    return (
        dumps(
            {
                "base": base,
                "format": JOURNAL_FORMAT,
                "head": head,
                "journal": JOURNAL_VERSION,
                "seqs": {k: v for k, v in sorted(seqs.items()) if v},
            }
        )
        + b"\n"
    )


@dataclass
class JournalDamage:
    """A journal line that is not JSON (reported by ``diagnose``)."""

    line: int
    message: str


@dataclass
class Journal:
    """The open journal of one workspace (one generation, until a checkpoint)."""

    tree: Tree
    fd: int = -1
    ino: int = 0
    offset: int = 0
    """Bytes consumed (every complete line before it has been read)."""
    line: int = 0
    """Lines consumed."""
    header: dict[str, Any] = field(default_factory=dict)
    header_bytes: bytes = b""
    damage: list[JournalDamage] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.tree.root

    @property
    def path(self) -> Path:
        return self.root / JOURNAL

    @functools.cached_property
    def path_s(self) -> str:
        return f"{self.root}/{JOURNAL}"

    @property
    def base(self) -> int:
        return int(self.header.get("base", 0))

    @property
    def stamp(self) -> str:
        """Digest of the header: what ``index.json`` must be stamped with to match."""
        return "sha256:" + hashlib.sha256(self.header_bytes).hexdigest()

    @staticmethod
    def create(tree: Tree, header: bytes) -> None:
        """Start a new journal holding only ``header`` (durably, atomically)."""
        write_durably(tree, JOURNAL, header)

    def exists(self) -> bool:
        """Whether the journal file exists (a link there is refused: ``corrupt``)."""
        return self.tree.size(JOURNAL) is not None

    def open(self) -> None:
        """Open the journal file and read its header."""
        self.close()
        self.fd = self.tree.open(JOURNAL, os.O_RDWR | os.O_APPEND)
        self.ino = os.fstat(self.fd).st_ino
        first = b""
        while not first.endswith(b"\n"):
            chunk = os.pread(self.fd, 4096, len(first))
            if not chunk:
                break
            first += chunk
        head, sep, _ = first.partition(b"\n")
        try:
            header = orjson.loads(head) if sep else None
        except orjson.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("format") != JOURNAL_FORMAT:
            raise StorageError(
                "corrupt",
                f"the journal {self.path} has no valid header line",
                {"path": str(self.path)},
            )
        if int(header.get("journal", 0)) > JOURNAL_VERSION:
            raise StorageError(
                "unsupported_schema",
                f"the journal {self.path} was written by a newer keepstone",
                {"path": str(self.path), "journal": header.get("journal")},
            )
        self.header = header
        self.header_bytes = head + b"\n"
        self.offset = len(self.header_bytes)
        self.line = 1
        self.damage = []

    def rotated(self) -> bool:
        """Whether a checkpoint replaced the journal file since it was opened."""
        try:
            return os.lstat(self.path_s).st_ino != self.ino
        except FileNotFoundError:
            return True

    def size(self) -> int:
        """The journal file's current size (it grows under other writers too)."""
        try:
            st = os.lstat(self.path_s)
        except FileNotFoundError:
            return -1
        return st.st_size if st.st_ino == self.ino else -1

    def read_new(self) -> tuple[list[dict[str, Any]], int]:
        """Parse the complete lines after :attr:`offset` and consume them.

        Returns the parsed lines and the number of bytes left after the last
        newline (a line being written, or a torn one if its writer died).
        """
        end = os.fstat(self.fd).st_size
        if end <= self.offset:
            return [], 0
        data = os.pread(self.fd, end - self.offset, self.offset)
        items: list[dict[str, Any]] = []
        start = 0
        while True:
            stop = data.find(b"\n", start)
            if stop < 0:
                break
            self.line += 1
            try:
                item = orjson.loads(data[start:stop])
            except orjson.JSONDecodeError as exc:
                item = None
                self.damage.append(JournalDamage(self.line, f"not JSON ({exc})"))
            if isinstance(item, dict) and ("n" in item or "done" in item):
                items.append(item)
            elif item is not None:
                self.damage.append(JournalDamage(self.line, "neither a commit nor a done line"))
            start = stop + 1
        self.offset += start
        return items, len(data) - start

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole lines) at the end of the journal."""
        written = os.write(self.fd, data)
        if written < len(data):
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(self.fd, view) :]
        self.offset += len(data)
        self.line += data.count(b"\n")

    def sync(self) -> None:
        os.fsync(self.fd)

    def cut_torn_tail(self) -> int:
        """Remove a partial last line (the lock holder only); returns bytes cut."""
        end = os.fstat(self.fd).st_size
        if end > self.offset:
            os.ftruncate(self.fd, self.offset)
            os.fsync(self.fd)
        return max(0, end - self.offset)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
