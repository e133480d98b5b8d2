"""The index of a whole workspace: every table's entries, the seq counters,
the audit chain head, and the expected size of every JSONL file.

It changes only by applying journal entries (:meth:`WorkspaceIndex.apply_entry`)
— the writer's own and those other processes committed — or by re-scanning a
file that is not what the index expected. :func:`rebuild` makes it from the
files alone; :meth:`WorkspaceIndex.save` and :func:`load` keep a copy in
``index.json`` so a clean reopen does not read every file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from keepstone.backends.fs.index import Entry, TableIndex
from keepstone.backends.fs.jsonl import Scan, scan_lines
from keepstone.backends.fs.layout import (
    BLOB_ROOT,
    INDEX,
    TABLES,
    key_from_path,
    partition_path,
    segment,
)
from keepstone.backends.fs.ops import lines_of, table_named
from keepstone.backends.fs.tree import Tree, refused
from keepstone.engine.spi import Table
from keepstone.engine.tables import AUDIT
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps
from keepstone.schemas.audit import GENESIS_HASH
from keepstone.schemas.fulltext import WORDS_RULE

INDEX_FORMAT = "keepstone-fs-index"
INDEX_VERSION = 1
"""The shape of ``index.json``. It also names the words rule its full-text
words were built with (:data:`~keepstone.schemas.fulltext.WORDS_RULE`): an
index saved under another rule is ignored and rebuilt from the files."""


class WorkspaceIndex:
    """Everything the engine knows without reading row files."""

    def __init__(self) -> None:
        self.tables: dict[str, TableIndex] = {}
        self.seqs: dict[str, int] = {}
        self.head = GENESIS_HASH
        self.files: dict[str, tuple[int, bool]] = {}
        """JSONL file -> (size, ends with a newline), as committed."""
        self.n = 0
        """The last commit applied."""
        self.links: dict[str, str] = {}
        """Paths found to be links or special files while indexing (a stream
        file, a table's directory, a directory inside it), with what they are:
        their rows cannot be indexed without following them, so reads of the
        table (of that partition, for a partitioned stream) are refused."""

    def table(self, table: Table) -> TableIndex:
        found = self.tables.get(table.name)
        if found is None:
            found = self.tables[table.name] = TableIndex(table)
        return found

    def last_seq(self, name: str) -> int:
        return self.seqs.get(name, 0)

    def bump(self, name: str, seq: int) -> None:
        if seq > self.seqs.get(name, 0):
            self.seqs[name] = seq

    # ------------------------------------------------------------------ entries

    def apply_entry(
        self,
        entry: dict[str, Any],
        tree: Tree,
        datas: list[bytes | None] | None = None,
    ) -> None:
        """Apply a committed journal entry (idempotent). ``datas`` are the bytes
        each op wrote, when the caller has them."""
        for i, op in enumerate(entry["ops"]):
            data = datas[i] if datas is not None else None
            kind = op["op"]
            if kind in ("blob", "blobfile", "unblob"):
                continue
            index = self.table(table_named(op["t"]))
            if kind == "put":
                size = len(data) if data is not None else len(dumps(op["row"])) + 1
                index.put(op["k"], index.entry(op["row"], op["f"], -1, size))
            elif kind == "del":
                index.remove(op["k"])
            elif kind == "add":
                self._add_lines(index, op, data)
            elif kind == "rewrite":
                self.rescan(index, tree, op["f"], limit=op["size"])
        for name, seq in entry.get("seqs", {}).items():
            self.seqs[name] = int(seq)  # as staged: up, or down for SetCounter
        head = entry.get("head")
        if head is not None:
            self.head = str(head)
        self.n = max(self.n, int(entry["n"]))

    def _add_lines(self, index: TableIndex, op: dict[str, Any], data: bytes | None) -> None:
        rel = op["f"]
        at = int(op["at"]) + (1 if op["sep"] else 0)
        table = index.table
        rows = op["rows"]
        if data is None:
            sizes = [len(dumps(row)) + 1 for row in rows]
        elif len(rows) == 1:
            sizes = [len(data) - (1 if op["sep"] else 0)]
        else:
            sizes = [len(line) + 1 for line in data[1 if op["sep"] else 0 :].split(b"\n")[:-1]]
        for row, size in zip(rows, sizes, strict=True):
            index.put(table.key_of(row), index.entry(row, rel, at, size))
            at += size
        if table.seq and rows:
            self.bump(table.name, max(int(row["seq"]) for row in rows))
        if data is not None and at != int(op["at"]) + len(data):  # pragma: no cover - a bug
            raise AssertionError("JSONL offsets disagree with the bytes written")
        self.files[rel] = (at, True)

    def blocked(self, table: Table, where: Mapping[str, Any] | None = None) -> StorageError | None:
        """Why reading ``table`` (filtered by ``where``) is refused: a link or
        special file found among its files; ``None`` when nothing is in the way."""
        if not self.links:
            return None
        name = table.name
        part = table.partition
        if table.seq and part is not None and where and isinstance(where.get(part), str):
            own = {name, partition_path(table, where[part])}
            found = sorted(rel for rel in self.links if rel in own)
        else:
            found = sorted(
                rel
                for rel in self.links
                if rel in (name, f"{name}.jsonl") or rel.startswith(f"{name}/")
            )
        return refused(found[0], self.links[found[0]]) if found else None

    def rescan(self, index: TableIndex, tree: Tree, rel: str, limit: int | None = None) -> Scan:
        """Re-read one JSONL file and replace its entries with what it holds
        (none when it is a link or a special file: see :attr:`links`)."""
        for key in index.keys_in_file(rel):
            index.remove(key)
        result = Scan()
        try:
            fd = tree.open(rel, os.O_RDONLY)
        except FileNotFoundError:
            self.files.pop(rel, None)
            self.links.pop(rel, None)
            return result
        except StorageError as exc:
            self.files.pop(rel, None)
            self.links[rel] = str(exc.details.get("found", "not a regular file"))
            return result
        self.links.pop(rel, None)
        try:
            for _, offset, size, row in scan_lines(fd, index.table, result, limit):
                index.put(index.table.key_of(row), index.entry(row, rel, offset, size))
                if index.table.seq:
                    self.bump(index.table.name, int(row["seq"]))
        finally:
            os.close(fd)
        self.files[rel] = (result.size, result.ends_with_newline)
        return result

    # ------------------------------------------------------------------ persistence

    def save(self, stamp: str) -> bytes:
        """``index.json``'s content: the entries, stamped with the journal header digest."""
        body = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "words": WORDS_RULE,
            "stamp": stamp,
            "n": self.n,
            "files": {k: list(v) for k, v in sorted(self.files.items())},
            "tables": {
                name: {"cols": list(index.cols), "rows": index.dump()}
                for name, index in sorted(self.tables.items())
                if index.rows
            },
        }
        return dumps(body) + b"\n"


def load(tree: Tree, stamp: str) -> WorkspaceIndex | None:
    """The index saved in ``index.json`` if it matches ``stamp``; ``None``
    otherwise.

    Raises:
        StorageError: ``corrupt`` when ``index.json`` is a link or a special file.
    """
    try:
        data = orjson.loads(tree.read(INDEX))
    except (OSError, orjson.JSONDecodeError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("format") != INDEX_FORMAT
        or data.get("version") != INDEX_VERSION
        or data.get("words") != WORDS_RULE
        or data.get("stamp") != stamp
    ):
        return None
    state = WorkspaceIndex()
    try:
        for name, saved in data["tables"].items():
            index = state.table(table_named(name))
            if list(index.cols) != saved["cols"]:
                return None
            index.load(saved["rows"])
        state.files = {k: (int(v[0]), bool(v[1])) for k, v in data["files"].items()}
        state.n = int(data["n"])
    except (KeyError, TypeError, ValueError):
        return None
    return state


# --------------------------------------------------------------------------- rebuild


def _below(tree: Tree, rel_dir: str, links: dict[str, str]) -> Iterator[tuple[str, bool]]:
    """``(path, is a regular file)`` of every non-directory below ``rel_dir``,
    in sorted order, never entering a link; links met on the way (to
    directories, or ``rel_dir`` itself) go to ``links``."""
    try:
        entries = tree.entries(rel_dir)
    except StorageError as exc:
        links[rel_dir] = str(exc.details.get("found", "not a directory"))
        return
    for item in entries:
        rel = f"{rel_dir}/{item.name}"
        if item.kind == "dir":
            yield from _below(tree, rel, links)
        else:
            yield rel, item.kind == "file"


def record_files(tree: Tree, table: Table, links: dict[str, str] | None = None) -> Iterator[str]:
    """Relative paths of a record table's ``.json`` files, in sorted order,
    links and special files named ``.json`` included (reading them is refused:
    that is how they show up). Other links met go to ``links``."""
    found = {} if links is None else links
    for rel, regular in _below(tree, table.name, found):
        if rel.endswith(".json"):
            yield rel
        elif not regular:
            found[rel] = "not a regular file"


def stream_files(tree: Tree, table: Table, links: dict[str, str] | None = None) -> list[str]:
    """Relative paths of a ``seq`` table's JSONL files (links named ``.jsonl``
    included: indexing them records them in :attr:`WorkspaceIndex.links`)."""
    if table.partition is None:
        name = table.name + ".jsonl"
        return [name] if any(e.name == name for e in tree.entries("")) else []
    found = {} if links is None else links
    return [rel for rel, _ in _below(tree, table.name, found) if rel.endswith(".jsonl")]


def rebuild(tree: Tree) -> WorkspaceIndex:
    """Index every table from the files (the source of truth), never reading
    through a link (see :attr:`WorkspaceIndex.links`)."""
    state = WorkspaceIndex()
    for table in TABLES.values():
        index = state.table(table)
        if table.seq:
            for rel in stream_files(tree, table, state.links):
                state.rescan(index, tree, rel)
            continue
        for rel in record_files(tree, table, state.links):
            try:
                data = tree.read(rel)
                row = orjson.loads(data)
                key = table.key_of(row) if isinstance(row, dict) else None
            except (OSError, StorageError, orjson.JSONDecodeError, KeyError):
                row, key, data = None, None, b""
            if row is None or key is None:
                key = key_from_path(table, rel)
                if key is None:
                    continue
                row = {}
            index.put(key, index.entry(row, rel, -1, len(data)))
    last = state.tables[AUDIT.name]
    if last.seqs:
        entry = last.rows[last.by_seq[last.seqs[-1]]]
        state.head = _audit_hash_at(tree, entry) or GENESIS_HASH
    return state


def _audit_hash_at(tree: Tree, entry: Entry) -> str | None:
    try:
        fd = tree.open(entry.file, os.O_RDONLY)
        try:
            row = orjson.loads(os.pread(fd, entry.size, entry.off))
        finally:
            os.close(fd)
    except (OSError, StorageError, orjson.JSONDecodeError):
        return None
    value = row.get("hash") if isinstance(row, dict) else None
    return value if isinstance(value, str) else None


def blob_digests(tree: Tree, after: str | None, limit: int) -> list[tuple[str, int]]:
    """Blobs in digest order strictly after ``after``, from the directory tree
    (two levels of fan-out, so a page reads only the folders it needs). Only
    regular files count; a directory on the way that is a link is refused
    (``corrupt``)."""
    start = (after or "sha256:").partition(":")[2]
    out: list[tuple[str, int]] = []
    for top in tree.entries(BLOB_ROOT):
        if len(top.name) != 2 or top.name < start[:2]:
            continue
        for sub in tree.entries(f"{BLOB_ROOT}/{top.name}"):
            if len(sub.name) != 2 or top.name + sub.name < start[:4]:
                continue
            folder = f"{BLOB_ROOT}/{top.name}/{sub.name}"
            for blob in tree.entries(folder):
                if len(blob.name) != 64 or blob.name <= start or blob.kind != "file":
                    continue
                try:
                    size = tree.lstat(f"{folder}/{blob.name}").st_size
                except (FileNotFoundError, StorageError):
                    continue
                out.append(("sha256:" + blob.name, size))
                if len(out) >= limit:
                    return out
    return out


def journal_rows(op: dict[str, Any]) -> bytes:
    """The bytes an ``add`` op appends (for callers without them at hand)."""
    return lines_of(op["rows"], op["sep"])


__all__ = [
    "WorkspaceIndex",
    "blob_digests",
    "load",
    "rebuild",
    "record_files",
    "segment",
    "stream_files",
]
