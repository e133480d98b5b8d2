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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from keepstone.backends.fs.index import Entry, TableIndex
from keepstone.backends.fs.jsonl import Scan, scan_lines
from keepstone.backends.fs.layout import BLOB_ROOT, TABLES, key_from_path, segment
from keepstone.backends.fs.ops import lines_of, table_named
from keepstone.engine.spi import Table
from keepstone.engine.tables import AUDIT
from keepstone.schemas._base import dumps
from keepstone.schemas.audit import GENESIS_HASH

INDEX_FORMAT = "keepstone-fs-index"
INDEX_VERSION = 1


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
        root: Path,
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
                self.rescan(index, root, op["f"], limit=op["size"])
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

    def rescan(self, index: TableIndex, root: Path, rel: str, limit: int | None = None) -> Scan:
        """Re-read one JSONL file and replace its entries with what it holds."""
        for key in index.keys_in_file(rel):
            index.remove(key)
        result = Scan()
        try:
            fd = os.open(root / rel, os.O_RDONLY)
        except FileNotFoundError:
            self.files.pop(rel, None)
            return result
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


def load(path: Path, stamp: str) -> WorkspaceIndex | None:
    """The index saved in ``path`` if it matches ``stamp``; ``None`` otherwise."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("format") != INDEX_FORMAT
        or data.get("version") != INDEX_VERSION
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


def record_files(root: Path, table: Table) -> Iterator[str]:
    """Relative paths of a record table's files, in sorted order."""
    base = root / table.name
    if not base.is_dir():
        return
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        rel_dir = os.path.relpath(folder, root).replace(os.sep, "/")
        for name in sorted(files):
            if name.endswith(".json"):
                yield f"{rel_dir}/{name}"


def stream_files(root: Path, table: Table) -> list[str]:
    """Relative paths of a ``seq`` table's JSONL files."""
    if table.partition is None:
        return [table.name + ".jsonl"] if (root / (table.name + ".jsonl")).is_file() else []
    base = root / table.name
    if not base.is_dir():
        return []
    return sorted(f"{table.name}/{p.name}" for p in base.iterdir() if p.name.endswith(".jsonl"))


def rebuild(root: Path) -> WorkspaceIndex:
    """Index every table from the files (the source of truth)."""
    state = WorkspaceIndex()
    for table in TABLES.values():
        index = state.table(table)
        if table.seq:
            for rel in stream_files(root, table):
                state.rescan(index, root, rel)
            continue
        for rel in record_files(root, table):
            try:
                data = (root / rel).read_bytes()
                row = orjson.loads(data)
                key = table.key_of(row) if isinstance(row, dict) else None
            except (OSError, orjson.JSONDecodeError, KeyError):
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
        state.head = _audit_hash_at(root, entry) or GENESIS_HASH
    return state


def _audit_hash_at(root: Path, entry: Entry) -> str | None:
    try:
        with open(root / entry.file, "rb") as fh:
            fh.seek(entry.off)
            row = orjson.loads(fh.read(entry.size))
    except (OSError, orjson.JSONDecodeError):
        return None
    value = row.get("hash") if isinstance(row, dict) else None
    return value if isinstance(value, str) else None


def blob_digests(root: Path, after: str | None, limit: int) -> list[tuple[str, int]]:
    """Blobs in digest order strictly after ``after``, from the directory tree
    (two levels of fan-out, so a page reads only the folders it needs)."""
    base = root / BLOB_ROOT
    start = (after or "sha256:").partition(":")[2]
    out: list[tuple[str, int]] = []
    if not base.is_dir():
        return out
    for top in sorted(os.listdir(base)):
        if len(top) != 2 or top < start[:2]:
            continue
        for sub in sorted(os.listdir(base / top)):
            if len(sub) != 2 or top + sub < start[:4]:
                continue
            for name in sorted(os.listdir(base / top / sub)):
                if len(name) != 64 or name <= start:
                    continue
                try:
                    size = (base / top / sub / name).stat().st_size
                except FileNotFoundError:
                    continue
                out.append(("sha256:" + name, size))
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
