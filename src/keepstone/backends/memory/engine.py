"""In-memory RecordEngine: dicts of canonical rows, one asyncio lock for writes.

It is the reference for every other engine: same preconditions, same order,
same seq and audit-chain rules. Rows are kept as canonical JSON bytes so that
callers can never mutate stored state through a returned object.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import Any

from keepstone.engine.match import (
    check_row,
    matches,
    order_key,
    seq_key_of,
    text_matches,
)
from keepstone.engine.spi import (
    Append,
    BatchResult,
    BlobPut,
    Check,
    CheckNone,
    Delete,
    Put,
    Restore,
    Table,
    Where,
    WriteBatch,
)
from keepstone.engine.tables import AUDIT
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps
from keepstone.schemas.artifacts import BlobInfo
from keepstone.schemas.audit import GENESIS_HASH, chain_audit


class _TableData:
    __slots__ = ("key_seq", "rows", "seq", "seq_keys", "seqs")

    def __init__(self) -> None:
        self.rows: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.seq = 0
        # For seq tables: the stored seqs in order, so seq-ordered reads walk
        # only the rows they return instead of sorting the table each call.
        self.seqs: list[int] = []
        self.seq_keys: dict[int, str] = {}
        self.key_seq: dict[str, int] = {}

    def store(self, key: str, value: tuple[dict[str, Any], bytes] | None) -> None:
        """Put (or, with ``None``, remove) a row, keeping the seq index in step."""
        old = self.key_seq.pop(key, None)
        if old is not None:
            del self.seq_keys[old]
            del self.seqs[bisect.bisect_left(self.seqs, old)]
        if value is None:
            self.rows.pop(key, None)
            return
        self.rows[key] = value
        seq = value[0].get("seq")
        if isinstance(seq, int) and seq not in self.seq_keys:
            self.key_seq[key] = seq
            self.seq_keys[seq] = key
            bisect.insort(self.seqs, seq)


class MemoryEngine:
    """A RecordEngine held in process memory; gone when the process ends."""

    name = "memory"
    capabilities = frozenset({"fts"})

    def __init__(self) -> None:
        self._tables: dict[str, _TableData] = {}
        self._blobs: dict[str, bytes] = {}
        self._lock = asyncio.Lock()
        self._audit_hash = GENESIS_HASH
        self._closed = False

    def _t(self, table: Table) -> _TableData:
        data = self._tables.get(table.name)
        if data is None:
            data = self._tables[table.name] = _TableData()
        return data

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("unavailable", "the store is closed")

    # ------------------------------------------------------------------ writes

    async def apply(self, batch: WriteBatch) -> BatchResult:
        self._check_open()
        async with self._lock:
            return self._apply(batch)

    def _apply(self, batch: WriteBatch) -> BatchResult:
        # Stage into overlays so a refused batch leaves nothing behind.
        staged: dict[str, dict[str, tuple[dict[str, Any], bytes] | None]] = {}
        seqs_next: dict[str, int] = {}
        blobs: dict[str, bytes] = {}
        result: list[int | None] = []
        restored_head: tuple[int, str] | None = None

        def current(table: Table, key: str) -> tuple[dict[str, Any], bytes] | None:
            overlay = staged.get(table.name)
            if overlay is not None and key in overlay:
                return overlay[key]
            return self._t(table).rows.get(key)

        def rows_of(table: Table) -> list[dict[str, Any]]:
            merged = dict(self._t(table).rows)
            for key, value in staged.get(table.name, {}).items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            return [row for row, _ in merged.values()]

        for op in batch.ops:
            if isinstance(op, Put):
                key = op.table.key_of(op.row)
                exists = current(op.table, key) is not None
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
                staged.setdefault(op.table.name, {})[key] = (op.row, dumps(op.row))
                result.append(None)
            elif isinstance(op, Append):
                table = op.table
                if "seq" not in table.key:
                    key = table.key_of(op.row)
                    existing = current(table, key)
                    if existing is not None:
                        if op.idempotent and _same_content(existing[0], op.row):
                            result.append(int(existing[0]["seq"]))
                            continue
                        raise StorageError(
                            "conflict",
                            f"{table.name} {key!r} already exists with different content",
                            {"table": table.name, "key": key},
                        )
                n = seqs_next.get(table.name, self._t(table).seq) + 1
                seqs_next[table.name] = n
                row = dict(op.row)
                row["seq"] = n
                staged.setdefault(table.name, {})[table.key_of(row)] = (row, dumps(row))
                result.append(n)
            elif isinstance(op, Delete):
                staged.setdefault(op.table.name, {})[op.key] = None
                result.append(None)
            elif isinstance(op, Check):
                found = current(op.table, op.key)
                check_row(op, None if found is None else found[0])
                result.append(None)
            elif isinstance(op, CheckNone):
                for row in rows_of(op.table):
                    if matches(op.table, row, op.where):
                        raise StorageError(op.code, op.message, dict(op.details))
                result.append(None)
            elif isinstance(op, BlobPut):
                blobs[op.digest] = op.data
                result.append(None)
            elif isinstance(op, Restore):
                row = dict(op.row)
                staged.setdefault(op.table.name, {})[op.table.key_of(row)] = (row, dumps(row))
                if op.table.seq:
                    n = max(seqs_next.get(op.table.name, self._t(op.table).seq), int(row["seq"]))
                    seqs_next[op.table.name] = n
                if op.table.name == AUDIT.name and (
                    restored_head is None or int(row["seq"]) > restored_head[0]
                ):
                    restored_head = (int(row["seq"]), str(row["hash"]))
                result.append(None)
        # Commit: nothing below can fail.
        audit_seqs: list[int] = []
        audit_data = self._t(AUDIT)
        for draft in batch.audit:
            audit_data.seq += 1
            row = chain_audit(draft, audit_data.seq, self._audit_hash)
            self._audit_hash = str(row["hash"])
            audit_data.store(str(audit_data.seq), (row, dumps(row)))
            audit_seqs.append(audit_data.seq)
        for name, n in seqs_next.items():
            self._tables[name].seq = max(self._tables[name].seq, n)
        if restored_head is not None and restored_head[0] >= audit_data.seq:
            self._audit_hash = restored_head[1]
        for name, overlay in staged.items():
            table_data = self._tables.setdefault(name, _TableData())
            for key, value in overlay.items():
                table_data.store(key, value)
        for digest, blob in blobs.items():
            self._blobs.setdefault(digest, blob)
        return BatchResult(result, audit_seqs)

    # ------------------------------------------------------------------ reads

    async def get(self, table: Table, key: str) -> bytes | None:
        self._check_open()
        found = self._t(table).rows.get(key)
        return None if found is None else found[1]

    async def get_many(self, table: Table, keys: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        rows = self._t(table).rows
        return {k: rows[k][1] for k in keys if k in rows}

    async def find(
        self,
        table: Table,
        where: Where | None = None,
        *,
        order: tuple[str, ...] = (),
        after: tuple[Any, ...] | None = None,
        desc: bool = False,
        limit: int | None = None,
        tags: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> list[bytes]:
        self._check_open()
        data = self._t(table)
        if table.seq and order == ("seq",):
            return self._find_by_seq(table, data, where, after, desc, limit, tags, text)
        picked: list[tuple[tuple[Any, ...], bytes]] = []
        for key, (row, raw) in data.rows.items():
            if where and not matches(table, row, where):
                continue
            if tags and not _tags_match(row.get(table.tags or "") or {}, tags):
                continue
            if text is not None and not text_matches(table, row, text):
                continue
            picked.append((order_key(table, row, order, key), raw))
        picked.sort(key=lambda item: item[0], reverse=desc)
        if after is not None:
            after_key = seq_key_of(table, after)
            if desc:
                picked = [p for p in picked if p[0] < after_key]
            else:
                picked = [p for p in picked if p[0] > after_key]
        if limit is not None:
            picked = picked[:limit]
        return [raw for _, raw in picked]

    @staticmethod
    def _find_by_seq(
        table: Table,
        data: _TableData,
        where: Where | None,
        after: tuple[Any, ...] | None,
        desc: bool,
        limit: int | None,
        tags: Mapping[str, Any] | None,
        text: str | None,
    ) -> list[bytes]:
        seqs = data.seqs
        if desc:
            end = len(seqs)
            if after is not None:
                # The row at the cursor's seq still comes first if its key sorts
                # before the cursor's (the full (seq, key) tuple decides).
                end = bisect.bisect_right(seqs, int(after[0]))
                if (
                    end
                    and seqs[end - 1] == int(after[0])
                    and not _key_before(table, data.seq_keys[seqs[end - 1]], after)
                ):
                    end -= 1
            walk: Any = (seqs[i] for i in range(end - 1, -1, -1))
        else:
            start = 0
            if after is not None:
                start = bisect.bisect_left(seqs, int(after[0]))
                if (
                    start < len(seqs)
                    and seqs[start] == int(after[0])
                    and not _key_after(table, data.seq_keys[seqs[start]], after)
                ):
                    start += 1
            walk = (seqs[i] for i in range(start, len(seqs)))
        out: list[bytes] = []
        for seq in walk:
            row, raw = data.rows[data.seq_keys[seq]]
            if where and not matches(table, row, where):
                continue
            if tags and not _tags_match(row.get(table.tags or "") or {}, tags):
                continue
            if text is not None and not text_matches(table, row, text):
                continue
            out.append(raw)
            if limit is not None and len(out) >= limit:
                break
        return out

    async def count(self, table: Table, where: Where | None = None) -> int:
        self._check_open()
        return sum(
            1 for row, _ in self._t(table).rows.values() if not where or matches(table, row, where)
        )

    async def last_seq(self, table: Table) -> int:
        self._check_open()
        return self._t(table).seq

    # ------------------------------------------------------------------ blobs

    async def blob_get(self, digest: str) -> bytes | None:
        self._check_open()
        return self._blobs.get(digest)

    async def blob_stream(self, digest: str, chunk_size: int) -> AsyncIterator[bytes]:
        self._check_open()
        data = self._blobs.get(digest)
        if data is None:
            raise StorageError("not_found", f"blob {digest!r} does not exist", {"digest": digest})
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    async def blob_put_stream(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        self._check_open()
        hasher = hashlib.sha256()
        parts: list[bytes] = []
        async for chunk in chunks:
            hasher.update(chunk)
            parts.append(chunk)
        digest = "sha256:" + hasher.hexdigest()
        data = b"".join(parts)
        async with self._lock:
            self._blobs.setdefault(digest, data)
        return BlobInfo(digest=digest, size=len(data))

    async def blob_size(self, digest: str) -> int | None:
        self._check_open()
        data = self._blobs.get(digest)
        return None if data is None else len(data)

    async def blob_list(self, after: str | None, limit: int) -> list[BlobInfo]:
        self._check_open()
        digests = sorted(d for d in self._blobs if after is None or d > after)[:limit]
        return [BlobInfo(digest=d, size=len(self._blobs[d])) for d in digests]

    async def blob_delete(self, digest: str) -> None:
        self._check_open()
        async with self._lock:
            self._blobs.pop(digest, None)

    async def close(self) -> None:
        self._closed = True

    # ------------------------------------------------------------------ test hooks

    def tamper(self, table: Table, key: str, row: dict[str, Any]) -> None:
        """Replace a stored row behind keepstone's back (tests of tamper evidence)."""
        self._t(table).store(key, (row, dumps(row)))

    def tamper_blob(self, digest: str, data: bytes) -> None:
        """Replace a blob's bytes behind keepstone's back (tests of verification)."""
        self._blobs[digest] = data


def _key_before(table: Table, key: str, after: tuple[Any, ...]) -> bool:
    return seq_key_of(table, (after[0], key)) < seq_key_of(table, after)


def _key_after(table: Table, key: str, after: tuple[Any, ...]) -> bool:
    return seq_key_of(table, (after[0], key)) > seq_key_of(table, after)


def _same_content(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    a = {k: v for k, v in stored.items() if k != "seq"}
    b = {k: v for k, v in new.items() if k != "seq"}
    return dumps(a) == dumps(b)


def _tags_match(values: Mapping[str, Any], tags: Mapping[str, Any]) -> bool:
    return all(k in values and dumps(values[k]) == dumps(v) for k, v in tags.items())
