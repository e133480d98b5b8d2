"""Journal ops: the effects of a commit, and how they are written to files.

A commit is one journal line holding fully resolved ops (seqs assigned,
paths and offsets decided)::

    {"op": "put",      "t": table, "k": key, "f": path, "row": {...}}
    {"op": "del",      "t": table, "k": key, "f": path}
    {"op": "add",      "t": table, "f": path, "at": offset, "sep": false, "rows": [...]}
    {"op": "rewrite",  "t": table, "f": path, "drop": [keys], "rows": [...],
                       "size": n, "digest": "sha256:..."}
    {"op": "blob",     "d": digest, "data": "<base64>"}
    {"op": "blobfile", "d": digest, "size": n}
    {"op": "unblob",   "d": digest}

Every op can be applied again with the same result, which is what recovery
does: in *verify* mode an op first compares what is on disk with what it
would write and only writes the difference (so replaying committed entries
while other processes read the files changes nothing they can see).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterable, KeysView
from typing import Any

import orjson

from keepstone.backends.fs.files import write_replacing
from keepstone.backends.fs.layout import TABLES, blob_path
from keepstone.backends.fs.tree import FILE_MODE, Tree
from keepstone.engine.spi import Table
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps

MAX_OPEN_STREAMS = 128
"""JSONL files kept open for appending."""


def lines_of(rows: Iterable[dict[str, Any]], sep: bool = False) -> bytes:
    """The JSONL bytes of ``rows`` (a leading newline closes a torn tail)."""
    body = b"".join(dumps(r) + b"\n" for r in rows)
    return b"\n" + body if sep else body


def table_named(name: str) -> Table:
    """The table a journal op names (tables outside the schema get a default)."""
    return TABLES.get(name) or Table(name)


def rewritten(
    table: Table, content: bytes, drop: Iterable[str], rows: list[dict[str, Any]]
) -> bytes:
    """A JSONL file's content without the lines of ``drop`` and of ``rows``'
    keys, then ``rows`` appended. Lines that do not parse are kept as they are
    (damage stays visible); a torn tail gets its newline."""
    gone = set(drop) | {table.key_of(r) for r in rows}
    kept: list[bytes] = []
    for line in content.splitlines(keepends=True):
        try:
            row = orjson.loads(line)
            key = table.key_of(row) if isinstance(row, dict) else None
        except (orjson.JSONDecodeError, KeyError):
            key = None
        if key is not None and key in gone:
            continue
        kept.append(line if line.endswith(b"\n") else line + b"\n")
    return b"".join(kept) + lines_of(rows)


class FileWriter:
    """Applies ops to the files of one workspace."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._inodes: dict[str, int] = {}
        self.touched: set[str] = set()
        """Files written since the last checkpoint (what it must make durable)."""

    # ------------------------------------------------------------------ streams

    def stream_fd(self, rel: str) -> int:
        """A read-write descriptor of the JSONL file ``rel`` (created if missing)."""
        fd = self._fds.get(rel)
        if fd is not None:
            self._fds.move_to_end(rel)
            return fd
        flags = os.O_RDWR | os.O_CREAT
        return self._keep(rel, self.tree.open(rel, flags, FILE_MODE, create_dirs=True))

    def _keep(self, rel: str, fd: int) -> int:
        self._fds[rel] = fd
        self._inodes[rel] = os.fstat(fd).st_ino
        while len(self._fds) > MAX_OPEN_STREAMS:
            old_rel, old = self._fds.popitem(last=False)
            self._inodes.pop(old_rel, None)
            os.close(old)
        return fd

    def inode(self, rel: str) -> int | None:
        """The inode of the open descriptor of ``rel`` (``None`` if not open)."""
        return self._inodes.get(rel)

    def read_fd(self, rel: str) -> int:
        """A descriptor of the existing JSONL file ``rel`` (for ``pread``).

        Raises:
            FileNotFoundError: the file does not exist.
        """
        fd = self._fds.get(rel)
        if fd is not None:
            return fd
        return self._keep(rel, self.tree.open(rel, os.O_RDWR))

    def cached(self) -> KeysView[str]:
        """The files with an open descriptor."""
        return self._fds.keys()

    def forget(self, rel: str) -> None:
        """Close the cached descriptor of ``rel`` (its inode was replaced)."""
        fd = self._fds.pop(rel, None)
        self._inodes.pop(rel, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self._inodes.clear()

    # ------------------------------------------------------------------ ops

    def apply(self, op: dict[str, Any], *, data: bytes | None = None, verify: bool = False) -> None:
        """Write one op's effect. ``data`` is the op's bytes when the caller has
        them already; ``verify`` compares first and writes only what differs."""
        kind = op["op"]
        if kind == "add":
            self._add(op, data if data is not None else lines_of(op["rows"], op["sep"]), verify)
        elif kind == "put":
            self._put(op["f"], data if data is not None else dumps(op["row"]) + b"\n", verify)
        elif kind == "del":
            self._unlink(op["f"])
        elif kind == "rewrite":
            self._rewrite(op, verify)
        elif kind == "blob":
            self._blob(op["d"], base64.b64decode(op["data"]), verify)
        elif kind == "unblob":
            rel = blob_path(op["d"])
            if rel is not None:
                self._unlink(rel)
        # "blobfile": the file was made durable before the commit; nothing to write.

    def _add(self, op: dict[str, Any], data: bytes, verify: bool) -> None:
        rel, at = op["f"], op["at"]
        fd = self.stream_fd(rel)
        self.touched.add(rel)
        if verify:
            size = os.fstat(fd).st_size
            if size >= at + len(data) and os.pread(fd, len(data), at) == data:
                return
            if size > at:
                os.ftruncate(fd, at)
        _pwrite_all(fd, data, at)

    def _put(self, rel: str, data: bytes, verify: bool) -> None:
        self.touched.add(rel)
        if verify:
            # A link or special file in the record's place is replaced, never followed.
            with contextlib.suppress(OSError, StorageError):
                if self.tree.read(rel) == data:
                    return
        write_replacing(self.tree, rel, data)

    def _unlink(self, rel: str) -> None:
        self.touched.add(rel)
        with contextlib.suppress(FileNotFoundError):
            self.tree.unlink(rel)

    def _rewrite(self, op: dict[str, Any], verify: bool) -> None:
        rel = op["f"]
        try:
            content = self.tree.read(rel)
        except FileNotFoundError:
            content = b""
        if verify and len(content) >= op["size"]:
            head = content[: op["size"]]
            if "sha256:" + hashlib.sha256(head).hexdigest() == op["digest"]:
                return
        new = rewritten(table_named(op["t"]), content, op["drop"], op["rows"])
        self.forget(rel)
        self.touched.add(rel)
        write_replacing(self.tree, rel, new)

    def _blob(self, digest: str, data: bytes, verify: bool) -> None:
        rel = blob_path(digest)
        if rel is None:
            return
        try:
            size = self.tree.size(rel)
            if size == len(data) and (not verify or self.tree.read(rel) == data):
                return
        except StorageError:
            pass  # a link or special file in the blob's place: replaced, never followed
        self.touched.add(rel)
        write_replacing(self.tree, rel, data)


def _pwrite_all(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, at)
        view = view[written:]
        at += written
