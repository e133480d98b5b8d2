"""Turning a group of write batches into one journal entry.

The writer holds the workspace lock and has caught up with the journal, so
the index is the committed state. Each batch is checked against that state
plus everything staged before it — the earlier ops of the same batch and the
earlier, accepted batches of the group — exactly as the reference engine
does. A refused batch's staging is dropped and its caller alone gets the
error. :meth:`GroupStage.compile` then turns what the accepted batches left
staged into resolved ops (seqs, paths, offsets) for one journal line.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keepstone.backends.fs.layout import record_path, stream_path
from keepstone.backends.fs.ops import lines_of, rewritten
from keepstone.backends.fs.state import WorkspaceIndex
from keepstone.engine.match import check_row, matches
from keepstone.engine.spi import (
    Append,
    BatchResult,
    BlobPut,
    Check,
    CheckNone,
    Delete,
    Op,
    Put,
    Restore,
    Table,
)
from keepstone.engine.tables import AUDIT
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps
from keepstone.schemas.audit import chain_audit

INLINE_BLOB_MAX = 64 * 1024
"""Blobs up to this size travel inside the journal entry; larger ones are
written durably to their file before the commit."""


@dataclass(slots=True)
class BlobFile:
    """Internal op: a blob whose file is already durable."""

    digest: str
    size: int


@dataclass(slots=True)
class BlobDelete:
    """Internal op: remove a blob's bytes."""

    digest: str


WriterOp = Op | BlobFile | BlobDelete

RowReader = Callable[[Table, str], dict[str, Any] | None]
"""Reads the committed row of a key (``None`` when absent)."""

FileProbe = Callable[[Table, str], tuple[int, bool]]
"""Size of a JSONL file and whether it ends with a newline, checked against the
index (re-scanning it if it changed behind keepstone's back)."""

ContentReader = Callable[[str], bytes]
"""The current bytes of a JSONL file (for rewrites)."""


class _Layer:
    """Rows, counters and blobs staged by one batch, or by a group's batches."""

    __slots__ = ("blobs", "head", "restored", "rows", "seqs", "tables")

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, dict[str, Any] | None]] = {}
        self.tables: dict[str, Table] = {}
        self.seqs: dict[str, int] = {}
        self.head: str | None = None
        self.restored: tuple[int, str] | None = None
        self.blobs: dict[str, tuple[str, Any]] = {}

    def merge(self, other: _Layer) -> None:
        for name, staged in other.rows.items():
            self.rows.setdefault(name, {}).update(staged)
        self.tables.update(other.tables)
        self.seqs.update(other.seqs)
        if other.head is not None:
            self.head = other.head
        if other.restored is not None and (
            self.restored is None or other.restored[0] > self.restored[0]
        ):
            self.restored = other.restored
        self.blobs.update(other.blobs)


class GroupStage:
    """The staged effect of the accepted batches of one group commit."""

    def __init__(
        self, index: WorkspaceIndex, read_row: RowReader, blob_exists: Callable[[str], bool]
    ) -> None:
        self.index = index
        self._read_row = read_row
        self._blob_exists = blob_exists
        self.group = _Layer()
        self.batch = _Layer()
        self.accepted = 0

    # ------------------------------------------------------------------ state view

    def _staged(self, name: str, key: str) -> tuple[bool, dict[str, Any] | None]:
        for layer in (self.batch, self.group):
            staged = layer.rows.get(name)
            if staged is not None and key in staged:
                return True, staged[key]
        return False, None

    def exists(self, table: Table, key: str) -> bool:
        found, row = self._staged(table.name, key)
        if found:
            return row is not None
        return key in self.index.table(table).rows

    def current(self, table: Table, key: str) -> dict[str, Any] | None:
        found, row = self._staged(table.name, key)
        if found:
            return row
        if key not in self.index.table(table).rows:
            return None
        return self._read_row(table, key)

    def _stage(self, table: Table, key: str, row: dict[str, Any] | None) -> None:
        self.batch.rows.setdefault(table.name, {})[key] = row
        self.batch.tables[table.name] = table

    def _next_seq(self, table: Table) -> int:
        name = table.name
        last = self.batch.seqs.get(name)
        if last is None:
            last = self.group.seqs.get(name)
        if last is None:
            last = self.index.last_seq(name)
        self.batch.seqs[name] = last + 1
        return last + 1

    def _head(self) -> str:
        if self.batch.head is not None:
            return self.batch.head
        if self.group.head is not None:
            return self.group.head
        return self.index.head

    # ------------------------------------------------------------------ one batch

    def run(self, ops: list[WriterOp], audit: list[dict[str, Any]]) -> BatchResult:
        """Stage one batch; raises its first failing precondition's error."""
        # The group's first batch stages straight into the (still empty) group.
        first = self.accepted == 0
        self.batch = self.group if first else _Layer()
        try:
            result = self._run(ops, audit)
        except BaseException:
            if first:
                self.group = _Layer()
            self.batch = _Layer()
            raise
        if not first:
            self.group.merge(self.batch)
        self.batch = _Layer()
        self.accepted += 1
        return result

    def changed(self) -> bool:
        """Whether the accepted batches change anything at all."""
        g = self.group
        return bool(g.rows or g.blobs or g.seqs or g.head is not None)

    def _run(self, ops: list[WriterOp], audit: list[dict[str, Any]]) -> BatchResult:
        result: list[int | None] = []
        for op in ops:
            if isinstance(op, Put):
                key = op.table.key_of(op.row)
                exists = self.exists(op.table, key)
                if op.expect == "absent" and exists:
                    raise StorageError(
                        "conflict",
                        f"{op.table.name} {key!r} already exists",
                        {"table": op.table.name, "key": key},
                    )
                if op.expect == "present" and not exists:
                    raise StorageError(
                        "not_found",
                        f"{op.table.name} {key!r} does not exist",
                        {"table": op.table.name, "key": key},
                    )
                self._stage(op.table, key, op.row)
                result.append(None)
            elif isinstance(op, Append):
                result.append(self._append(op))
            elif isinstance(op, Delete):
                self._stage(op.table, op.key, None)
                result.append(None)
            elif isinstance(op, Check):
                if op.equals:
                    check_row(op, self.current(op.table, op.key))
                else:
                    check_row(op, {} if self.exists(op.table, op.key) else None)
                result.append(None)
            elif isinstance(op, CheckNone):
                self._check_none(op)
                result.append(None)
            elif isinstance(op, BlobPut):
                if self._staged_blob(op.digest) not in ("blob", "blobfile"):
                    self.batch.blobs[op.digest] = ("blob", op.data)
                result.append(None)
            elif isinstance(op, Restore):
                self._restore(op)
                result.append(None)
            elif isinstance(op, BlobFile):
                self.batch.blobs[op.digest] = ("blobfile", op.size)
                result.append(None)
            elif isinstance(op, BlobDelete):
                self.batch.blobs[op.digest] = ("unblob", None)
                result.append(None)
            else:
                raise StorageError("invalid", f"unknown write op {type(op).__name__}")
        # Like the reference engine: drafts chain on from the committed audit
        # counter and head; a restored head takes over when it is the newest.
        audit_seqs: list[int] = []
        last = self.group.seqs.get(AUDIT.name, self.index.last_seq(AUDIT.name))
        for draft in audit:
            last += 1
            row = chain_audit(draft, last, self._head())
            self.batch.head = str(row["hash"])
            self._stage(AUDIT, str(last), dict(row))
            audit_seqs.append(last)
        if audit_seqs:
            self.batch.seqs[AUDIT.name] = max(last, self.batch.seqs.get(AUDIT.name, 0))
        restored = self.batch.restored
        if restored is not None:
            counter = self.batch.seqs.get(AUDIT.name, last)
            if restored[0] >= counter:
                self.batch.head = restored[1]
        return BatchResult(result, audit_seqs)

    def _staged_blob(self, digest: str) -> str | None:
        for layer in (self.batch, self.group):
            found = layer.blobs.get(digest)
            if found is not None:
                return found[0]
        return None

    def _append(self, op: Append) -> int:
        table = op.table
        if "seq" not in table.key:
            key = table.key_of(op.row)
            existing = self.current(table, key)
            if existing is not None:
                if op.idempotent and _same_content(existing, op.row):
                    return int(existing["seq"])
                raise StorageError(
                    "conflict",
                    f"{table.name} {key!r} already exists with different content",
                    {"table": table.name, "key": key},
                )
        seq = self._next_seq(table)
        row = dict(op.row)
        row["seq"] = seq
        self._stage(table, table.key_of(row), row)
        return seq

    def _restore(self, op: Restore) -> None:
        table = op.table
        row = dict(op.row)
        self._stage(table, table.key_of(row), row)
        if table.seq:
            name = table.name
            last = self.batch.seqs.get(name, self.group.seqs.get(name, self.index.last_seq(name)))
            self.batch.seqs[name] = max(last, int(row["seq"]))
        if table.name == AUDIT.name:
            seq = int(row["seq"])
            if self.batch.restored is None or seq > self.batch.restored[0]:
                self.batch.restored = (seq, str(row["hash"]))

    def _check_none(self, op: CheckNone) -> None:
        name = op.table.name
        overridden: set[str] = set()
        for layer in (self.batch, self.group):
            staged = layer.rows.get(name, {})
            for key, row in staged.items():
                if key in overridden:
                    continue
                overridden.add(key)
                if row is not None and matches(op.table, row, op.where):
                    raise StorageError(op.code, op.message, dict(op.details))
        index = self.index.table(op.table)

        def load(key: str, _entry: Any) -> dict[str, Any]:
            return self._read_row(op.table, key) or {}

        for key, _ in index.select(
            op.where,
            order=(),
            after=None,
            desc=False,
            limit=len(overridden) + 1,
            tags=None,
            text=None,
            load=load,
        ):
            if key not in overridden:
                raise StorageError(op.code, op.message, dict(op.details))

    # ------------------------------------------------------------------ compile

    def final_head(self) -> str | None:
        """The audit chain head after the group (``None`` when unchanged)."""
        return self.group.head

    def compile(
        self, probe: FileProbe, content: ContentReader
    ) -> tuple[list[dict[str, Any]], list[bytes | None]]:
        """The group's resolved ops and the bytes each writes."""
        ops: list[dict[str, Any]] = []
        datas: list[bytes | None] = []
        for digest, (kind, value) in self.group.blobs.items():
            if kind == "blob":
                if self._blob_exists(digest):
                    continue
                ops.append({"op": "blob", "d": digest, "data": base64.b64encode(value).decode()})
                datas.append(value)
            elif kind == "blobfile":
                ops.append({"op": "blobfile", "d": digest, "size": value})
                datas.append(None)
            else:
                ops.append({"op": "unblob", "d": digest})
                datas.append(None)
        streams: list[tuple[Table, dict[str, dict[str, Any] | None]]] = []
        for name, staged in self.group.rows.items():
            table = self.group.tables[name]
            if table.seq:
                streams.append((table, staged))
                continue
            index = self.index.table(table)
            for key, row in staged.items():
                if row is None:
                    entry = index.rows.get(key)
                    if entry is not None:
                        ops.append({"op": "del", "t": name, "k": key, "f": entry.file})
                        datas.append(None)
                    continue
                rel = record_path(table, row)
                old = index.rows.get(key)
                if old is not None and old.file != rel:
                    ops.append({"op": "del", "t": name, "k": key, "f": old.file})
                    datas.append(None)
                ops.append({"op": "put", "t": name, "k": key, "f": rel, "row": row})
                datas.append(dumps(row) + b"\n")
        for table, staged in streams:
            self._compile_stream(table, staged, probe, content, ops, datas)
        return ops, datas

    def _compile_stream(
        self,
        table: Table,
        staged: dict[str, dict[str, Any] | None],
        probe: FileProbe,
        content: ContentReader,
        ops: list[dict[str, Any]],
        datas: list[bytes | None],
    ) -> None:
        index = self.index.table(table)
        adds: dict[str, list[dict[str, Any]]] = {}
        drops: dict[str, list[str]] = {}
        for key, row in staged.items():
            old = index.rows.get(key)
            if old is not None:
                drops.setdefault(old.file, []).append(key)
            if row is not None:
                adds.setdefault(stream_path(table, row), []).append(row)
        files = sorted(adds) if not drops else sorted(set(adds) | set(drops))
        for rel in files:
            rows = adds.get(rel, [])
            if rel in drops:
                new = rewritten(table, content(rel), drops[rel], rows)
                op = {
                    "op": "rewrite",
                    "t": table.name,
                    "f": rel,
                    "drop": sorted(drops[rel]),
                    "rows": rows,
                    "size": len(new),
                    "digest": "sha256:" + hashlib.sha256(new).hexdigest(),
                }
                ops.append(op)
                datas.append(new)
                continue
            size, ends_nl = probe(table, rel)
            sep = size > 0 and not ends_nl
            ops.append(
                {"op": "add", "t": table.name, "f": rel, "at": size, "sep": sep, "rows": rows}
            )
            datas.append(lines_of(rows, sep))


def _same_content(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    a = {k: v for k, v in stored.items() if k != "seq"}
    b = {k: v for k, v in new.items() if k != "seq"}
    return dumps(a) == dumps(b)
