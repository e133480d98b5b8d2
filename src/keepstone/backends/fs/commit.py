"""Turning a group of write batches into one journal entry.

The writer holds the workspace lock and has caught up with the journal, so
the index is the committed state: :class:`IndexView` shows it to the shared
:class:`~keepstone.engine.stager.GroupStager`, which stages each batch of the
group exactly as every engine does (a refused batch fails alone).
:func:`compile_group` then turns the group's net effect into resolved ops
(seqs, paths, offsets) for one journal line.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from keepstone.backends.fs.layout import record_path, stream_path
from keepstone.backends.fs.ops import lines_of, rewritten
from keepstone.backends.fs.state import WorkspaceIndex
from keepstone.engine.spi import CheckNone, Table
from keepstone.engine.stager import NetEffect, Staged
from keepstone.engine.tables import AUDIT

INLINE_BLOB_MAX = 64 * 1024
"""Blobs up to this size travel inside the journal entry; larger ones are
written durably to their file before the commit."""

RowReader = Callable[[Table, str], dict[str, Any] | None]
"""Reads the committed row of a key (``None`` when absent)."""

FileProbe = Callable[[Table, str], tuple[int, bool]]
"""Size of a JSONL file and whether it ends with a newline, checked against the
index (re-scanning it if it changed behind keepstone's back)."""

ContentReader = Callable[[str], bytes]
"""The current bytes of a JSONL file (for rewrites)."""


class IndexView:
    """The committed state of a workspace, as the stager reads it."""

    def __init__(self, index: WorkspaceIndex, read_row: RowReader) -> None:
        self.index = index
        self._read_row = read_row

    def row(self, table: Table, key: str) -> dict[str, Any] | None:
        if key not in self.index.table(table).rows:
            return None
        return self._read_row(table, key)

    def exists(self, table: Table, key: str) -> bool:
        return key in self.index.table(table).rows

    def counter(self, name: str) -> tuple[int, str | None]:
        head = self.index.head if name == AUDIT.name else None
        return self.index.last_seq(name), head

    def matching(self, op: CheckNone, limit: int) -> list[str]:
        def load(key: str, _entry: Any) -> dict[str, Any]:
            return self._read_row(op.table, key) or {}

        found = self.index.table(op.table).select(
            op.where,
            order=(),
            after=None,
            desc=False,
            limit=limit,
            tags=None,
            text=None,
            load=load,
        )
        return [key for key, _ in found]


def journal_counters(net: NetEffect) -> tuple[dict[str, int], str | None]:
    """The seqs a group moved, and the audit chain head after it (``None`` when
    unchanged), as a journal entry records them."""
    seqs = {name: seq for name, (seq, _) in net.counters.items()}
    audit = net.counters.get(AUDIT.name)
    return seqs, None if audit is None else audit[1]


def compile_group(
    net: NetEffect,
    index: WorkspaceIndex,
    probe: FileProbe,
    content: ContentReader,
    blob_exists: Callable[[str], bool],
) -> tuple[list[dict[str, Any]], list[bytes | None]]:
    """The group's resolved ops and the bytes each writes."""
    ops: list[dict[str, Any]] = []
    datas: list[bytes | None] = []
    for digest, change in net.blobs.items():
        if change.kind == "put" and change.data is not None:
            if blob_exists(digest):
                continue
            data = change.data
            ops.append({"op": "blob", "d": digest, "data": base64.b64encode(data).decode()})
            datas.append(data)
        elif change.kind == "stored":
            ops.append({"op": "blobfile", "d": digest, "size": change.size})
            datas.append(None)
        elif change.kind == "forget":
            ops.append({"op": "unblob", "d": digest})
            datas.append(None)
    streams: list[tuple[Table, dict[str, Staged]]] = []
    for name, staged in net.rows.items():
        table = next(iter(staged.values()))[0]
        if table.seq:
            streams.append((table, staged))
            continue
        table_index = index.table(table)
        for key, (_, row, body) in staged.items():
            if row is None or body is None:
                entry = table_index.rows.get(key)
                if entry is not None:
                    ops.append({"op": "del", "t": name, "k": key, "f": entry.file})
                    datas.append(None)
                continue
            rel = record_path(table, row)
            old = table_index.rows.get(key)
            if old is not None and old.file != rel:
                ops.append({"op": "del", "t": name, "k": key, "f": old.file})
                datas.append(None)
            # The index keeps a copy decoded from the bytes, not the caller's dict.
            ops.append({"op": "put", "t": name, "k": key, "f": rel, "row": orjson.loads(body)})
            datas.append(body + b"\n")
    for table, staged in streams:
        _compile_stream(index, table, staged, probe, content, ops, datas)
    return ops, datas


def _compile_stream(
    index: WorkspaceIndex,
    table: Table,
    staged: dict[str, Staged],
    probe: FileProbe,
    content: ContentReader,
    ops: list[dict[str, Any]],
    datas: list[bytes | None],
) -> None:
    table_index = index.table(table)
    adds: dict[str, list[dict[str, Any]]] = {}
    drops: dict[str, list[str]] = {}
    for key, (_, row, _) in staged.items():
        old = table_index.rows.get(key)
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
        ops.append({"op": "add", "t": table.name, "f": rel, "at": size, "sep": sep, "rows": rows})
        datas.append(lines_of(rows, sep))
