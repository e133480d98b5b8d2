"""In-memory RecordEngine: dicts of canonical rows, one asyncio lock for writes.

The reference engine: a batch is staged by :class:`~keepstone.engine.stager.GroupStager`
over the dicts (the engine is its own committed view) and the net effect is
stored in place. Rows are kept with their canonical JSON bytes, which reads
return, so callers can never mutate stored state through a returned object.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from typing import Any

import orjson

from keepstone.engine.match import (
    matches,
    order_key,
    seq_key_of,
    tags_storable,
    text_matches,
)
from keepstone.engine.spi import BatchResult, CheckNone, Cmp, Table, Where, WriteBatch
from keepstone.engine.stager import GroupStager, NetEffect
from keepstone.engine.tables import AUDIT
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps
from keepstone.schemas.artifacts import BlobInfo
from keepstone.schemas.audit import GENESIS_HASH


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

    def _named(self, name: str) -> _TableData:
        data = self._tables.get(name)
        if data is None:
            data = self._tables[name] = _TableData()
        return data

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("unavailable", "the store is closed")

    # ------------------------------------------------------------------ writes

    async def apply(self, batch: WriteBatch) -> BatchResult:
        self._check_open()
        async with self._lock:
            stager = GroupStager(self)
            result = stager.stage(batch)
            self._commit(stager.group)
            return result

    def _commit(self, net: NetEffect) -> None:
        """Write a staged net effect (nothing here can fail)."""
        for name, staged in net.rows.items():
            data = self._named(name)
            for key, (_, row, body) in staged.items():
                # A copy of the row, decoded from its bytes: what the caller
                # does with its dict afterwards cannot change what is stored.
                data.store(key, None if row is None or body is None else (orjson.loads(body), body))
        for name, (seq, head) in net.counters.items():
            data = self._named(name)
            data.seq = seq  # the stager's value: up, or down for SetCounter
            if name == AUDIT.name and head is not None:
                self._audit_hash = head
        for digest, change in net.blobs.items():
            if change.kind == "forget":
                self._blobs.pop(digest, None)
            elif change.data is not None:
                self._blobs.setdefault(digest, change.data)

    # ------------------------------------------------------------------ committed state
    # (the view the stager reads: engine.stager.CommittedView)

    def row(self, table: Table, key: str) -> dict[str, Any] | None:
        found = self._t(table).rows.get(key)
        return None if found is None else found[0]

    def exists(self, table: Table, key: str) -> bool:
        return key in self._t(table).rows

    def counter(self, name: str) -> tuple[int, str | None]:
        data = self._tables.get(name)
        seq = 0 if data is None else data.seq
        return seq, (self._audit_hash if name == AUDIT.name else None)

    def matching(self, op: CheckNone, limit: int) -> list[str]:
        data = self._t(op.table)
        floor = _seq_floor(op.where.get("seq")) if op.table.seq else None
        if floor is None:
            keys: Any = data.rows.keys()
        else:  # "nothing after seq N": walk only the rows after it, in the seq index
            start = bisect.bisect_left(data.seqs, floor)
            keys = (data.seq_keys[seq] for seq in data.seqs[start:])
        found: list[str] = []
        for key in keys:
            if matches(op.table, data.rows[key][0], op.where):
                found.append(key)
                if len(found) >= limit:
                    break
        return found

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
        if tags and not tags_storable(tags):
            return []
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

    async def blob_get_many(self, digests: Sequence[str]) -> dict[str, bytes]:
        self._check_open()
        return {d: self._blobs[d] for d in digests if d in self._blobs}

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


def _key_before(table: Table, key: str, after: tuple[Any, ...]) -> bool:
    return seq_key_of(table, (after[0], key)) < seq_key_of(table, after)


def _key_after(table: Table, key: str, after: tuple[Any, ...]) -> bool:
    return seq_key_of(table, (after[0], key)) > seq_key_of(table, after)


def _seq_floor(cond: Any) -> int | None:
    """The lowest seq a ``seq`` filter can match (``None``: no lower bound)."""
    conds = cond if isinstance(cond, tuple) else (cond,)
    floors = [
        int(c.value) + (1 if c.op == ">" else 0)
        for c in conds
        if isinstance(c, Cmp) and c.op in (">", ">=") and isinstance(c.value, int)
    ]
    return max(floors) if floors else None


def _tags_match(values: Mapping[str, Any], tags: Mapping[str, Any]) -> bool:
    return all(k in values and dumps(values[k]) == dumps(v) for k, v in tags.items())
