"""The in-memory index of a workspace: where every row is, and what to filter on.

Per table, every row's key maps to an :class:`Entry`: its file (and, in a
JSONL file, its offset and length) plus the values of the table's filterable
columns, its tags and its full-text words. Queries run on entries; only the
rows a query returns are read from disk. So listing runs, finding an event
or an artifact by id, or checking that an event id is new never reads every
file.

* Tables without ``seq``: hash indexes on each declared column (and ``id``)
  narrow equality and ``In`` filters; the rest is filtered in memory.
* ``seq`` tables: a sorted list of seqs (and one per partition file), so
  ``order=("seq",)`` with a range or a cursor is a bisect and a short walk.

The index is a cache: the files are the truth. It is saved to ``index.json``
at a clean close, stamped with the journal header it matches, and rebuilt from
the files when that stamp does not match (see ``docs/storage-layout.md``).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from keepstone.backends.fs.layout import partition_path
from keepstone.engine.match import seq_key_of, tags_storable, words
from keepstone.engine.spi import Cmp, In, Table
from keepstone.schemas._base import dumps

_HASHABLE = (str, int, float, bool, type(None))

Loader = Callable[[str, "Entry"], Mapping[str, Any]]
"""Reads and parses the row of an entry (for filters on non-indexed fields)."""


class Entry:
    """Where one row is and its indexed values."""

    __slots__ = ("file", "off", "size", "tags", "vals", "words")

    def __init__(
        self,
        file: str,
        off: int,
        size: int,
        vals: tuple[Any, ...],
        tags: Any = None,
        words: frozenset[str] | None = None,
    ) -> None:
        self.file = file
        self.off = off
        """Offset in a JSONL file; ``-1`` for a record file."""
        self.size = size
        """Length in bytes, newline included."""
        self.vals = vals
        self.tags = tags
        self.words = words


def cond_ok(value: Any, cond: Any) -> bool:
    """One ``where`` condition, with the reference engine's semantics."""
    if isinstance(cond, tuple):
        return all(_compare(value, c) for c in cond)
    if isinstance(cond, Cmp):
        return _compare(value, cond)
    if isinstance(cond, In):
        return value in cond.values
    return bool(value == cond)


def _compare(value: Any, cond: Cmp) -> bool:
    if value is None:
        return False
    if cond.op == ">":
        return bool(value > cond.value)
    if cond.op == ">=":
        return bool(value >= cond.value)
    if cond.op == "<":
        return bool(value < cond.value)
    return bool(value <= cond.value)


def _tags_ok(values: Any, tags: Mapping[str, Any]) -> bool:
    values = values or {}
    return all(k in values and dumps(values[k]) == dumps(v) for k, v in tags.items())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class TableIndex:
    """The entries of one table."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.stream = table.seq
        cols: list[str] = []
        for col in (*(("seq",) if table.seq else ()), *table.key, *table.columns, "id"):
            if col not in cols:
                cols.append(col)
        self.cols = tuple(cols)
        self._getters = [_getter(c) for c in cols]
        self.pos = {c: i for i, c in enumerate(cols)}
        self.rows: dict[str, Entry] = {}
        self.seq_key = table.keyed_by_seq
        indexed = () if table.seq else (*table.columns, "id")
        self.eq: dict[str, dict[Any, set[str]]] = {c: {} for c in indexed}
        self.loose: dict[str, set[str]] = {c: set() for c in indexed}
        self.seqs: list[int] = []
        self.by_seq: dict[int, str] = {}
        self.file_seqs: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ building

    def entry(self, row: Mapping[str, Any], file: str, off: int, size: int) -> Entry:
        """An entry for ``row`` stored at ``file`` (``off`` -1 for a record file)."""
        table = self.table
        vals = tuple([get(row) for get in self._getters])
        tags = row.get(table.tags) if table.tags else None
        found: frozenset[str] | None = None
        if table.text:
            have: set[str] = set()
            for col in table.text:
                value = Table.value(row, col)
                if isinstance(value, str):
                    have.update(words(value))
            found = frozenset(have)
        return Entry(file, off, size, vals, tags, found)

    def seq_of(self, entry: Entry) -> int:
        return int(entry.vals[0])

    def put(self, key: str, entry: Entry) -> None:
        """Insert or replace the entry of ``key``."""
        if key in self.rows:
            self.remove(key)
        self.rows[key] = entry
        if self.stream:
            seq = entry.vals[0]
            if not _is_int(seq):
                return
            if seq not in self.by_seq:
                _insort(self.seqs, seq)
                _insort(self.file_seqs.setdefault(entry.file, []), seq)
            self.by_seq[seq] = key
            return
        for col, idx in self.eq.items():
            value = entry.vals[self.pos[col]]
            if isinstance(value, _HASHABLE):
                idx.setdefault(value, set()).add(key)
            else:
                self.loose[col].add(key)

    def remove(self, key: str) -> Entry | None:
        """Forget ``key``; returns its entry."""
        entry = self.rows.pop(key, None)
        if entry is None:
            return None
        if self.stream:
            seq = entry.vals[0]
            if _is_int(seq) and self.by_seq.get(seq) == key:
                del self.by_seq[seq]
                _discard(self.seqs, seq)
                per_file = self.file_seqs.get(entry.file)
                if per_file is not None:
                    _discard(per_file, seq)
                    if not per_file:
                        del self.file_seqs[entry.file]
            return entry
        for col, idx in self.eq.items():
            value = entry.vals[self.pos[col]]
            if isinstance(value, _HASHABLE):
                keys = idx.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del idx[value]
            else:
                self.loose[col].discard(key)
        return entry

    def keys_in_file(self, file: str) -> list[str]:
        """Keys of a stream table's rows stored in ``file``."""
        by_seq = self.by_seq
        return [by_seq[s] for s in self.file_seqs.get(file, ())]

    # ------------------------------------------------------------------ queries

    def _value(self, key: str, entry: Entry, col: str, load: Loader) -> Any:
        at = self.pos.get(col)
        if at is not None:
            return entry.vals[at]
        return Table.value(load(key, entry), col)

    def matches(
        self,
        key: str,
        entry: Entry,
        where: Mapping[str, Any] | None,
        tags: Mapping[str, Any] | None,
        text: list[str] | None,
        load: Loader,
    ) -> bool:
        if where:
            pos = self.pos
            for col, cond in where.items():
                at = pos.get(col)
                value = entry.vals[at] if at is not None else Table.value(load(key, entry), col)
                if not cond_ok(value, cond):
                    return False
        if tags and not _tags_ok(entry.tags, tags):
            return False
        if text is not None:
            have = entry.words or frozenset()
            if not text or not all(w in have for w in text):
                return False
        return True

    def _candidates(self, where: Mapping[str, Any] | None) -> Iterable[str]:
        best: set[str] | None = None
        for col, cond in (where or {}).items():
            idx = self.eq.get(col)
            if idx is None:
                continue
            if isinstance(cond, In):
                if not all(isinstance(v, _HASHABLE) for v in cond.values):
                    continue
                found: set[str] = set()
                for v in cond.values:
                    found |= idx.get(v, set())
            elif isinstance(cond, _HASHABLE):
                found = idx.get(cond, set())
            else:
                continue
            if self.loose[col]:
                found = found | self.loose[col]
            if best is None or len(found) < len(best):
                best = found
        return list(self.rows) if best is None else list(best)

    def select(
        self,
        where: Mapping[str, Any] | None,
        *,
        order: tuple[str, ...],
        after: tuple[Any, ...] | None,
        desc: bool,
        limit: int | None,
        tags: Mapping[str, Any] | None,
        text: str | None,
        load: Loader,
    ) -> list[tuple[str, Entry]]:
        """The ``(key, entry)`` pairs a ``find`` returns, in order."""
        if tags and not tags_storable(tags):
            return []
        wanted = None if text is None else words(text)
        if self.stream and (order == ("seq",) or (order == () and self.seq_key)):
            fast = self._select_by_seq(where, order, after, desc, limit, tags, wanted, load)
            if fast is not None:
                return fast
        picked: list[tuple[tuple[Any, ...], str, Entry]] = []
        rows = self.rows
        for key in self._candidates(where):
            entry = rows[key]
            if self.matches(key, entry, where, tags, wanted, load):
                values = tuple(self._value(key, entry, c, load) for c in order)
                picked.append((seq_key_of(self.table, (*values, key)), key, entry))
        if after is not None:
            after_key = seq_key_of(self.table, after)
            if desc:
                picked = [p for p in picked if p[0] < after_key]
            else:
                picked = [p for p in picked if p[0] > after_key]
        if limit is not None and limit < len(picked) // 4:
            # A page of a large table: a heap of ``limit`` instead of a full sort.
            pick = heapq.nlargest if desc else heapq.nsmallest
            picked = pick(limit, picked, key=lambda item: item[0])
        else:
            picked.sort(key=lambda item: item[0], reverse=desc)
            if limit is not None:
                picked = picked[:limit]
        return [(key, entry) for _, key, entry in picked]

    def _select_by_seq(
        self,
        where: Mapping[str, Any] | None,
        order: tuple[str, ...],
        after: tuple[Any, ...] | None,
        desc: bool,
        limit: int | None,
        tags: Mapping[str, Any] | None,
        text: list[str] | None,
        load: Loader,
    ) -> list[tuple[str, Entry]] | None:
        """Walk the sorted seqs; ``None`` when the filters do not allow it."""
        lo, hi = _seq_bounds((where or {}).get("seq"))
        if lo is _NO:
            return None
        after_key: tuple[Any, ...] | None = None
        if after is not None:
            after_key = seq_key_of(self.table, after)
            if not after_key or not _is_int(after_key[0]):
                return None
            if desc:
                hi = after_key[0] if hi is None else min(hi, after_key[0])
            else:
                lo = after_key[0] if lo is None else max(lo, after_key[0])
        seqs = self.seqs
        part = self.table.partition
        if part is not None and where and isinstance(where.get(part), str):
            seqs = self.file_seqs.get(partition_path(self.table, where[part]), [])
        start = 0 if lo is None else bisect.bisect_left(seqs, lo)
        stop = len(seqs) if hi is None else bisect.bisect_right(seqs, hi)
        indices: Iterator[int] = iter(
            range(stop - 1, start - 1, -1) if desc else range(start, stop)
        )
        # Plain equalities on indexed columns are tested inline (replay filters
        # on the profile); anything else goes through ``matches``.
        equal: list[tuple[int, Any]] = []
        rest: dict[str, Any] = {}
        for col, cond in (where or {}).items():
            at = self.pos.get(col)
            if at is not None and isinstance(cond, _HASHABLE):
                equal.append((at, cond))
            else:
                rest[col] = cond
        general = bool(rest or tags or text is not None)
        out: list[tuple[str, Entry]] = []
        by_seq, rows, with_key = self.by_seq, self.rows, order == ("seq",)
        for i in indices:
            seq = seqs[i]
            key = by_seq[seq]
            entry = rows[key]
            if after_key is not None:
                okey: tuple[Any, ...] = (seq, key) if with_key else (seq,)
                if self.seq_key and with_key:
                    okey = (seq, seq)
                if (okey >= after_key) if desc else (okey <= after_key):
                    continue
            if equal:
                vals = entry.vals
                if any(vals[at] != value for at, value in equal):
                    continue
            if general and not self.matches(key, entry, rest, tags, text, load):
                continue
            out.append((key, entry))
            if limit is not None and len(out) >= limit:
                break
        return out

    def count(self, where: Mapping[str, Any] | None, load: Loader) -> int:
        rows = self.rows
        return sum(
            1
            for key in self._candidates(where)
            if self.matches(key, rows[key], where, None, None, load)
        )

    # ------------------------------------------------------------------ persistence

    def dump(self) -> list[list[Any]]:
        """The entries as JSON lists, in a deterministic order."""
        if self.stream:
            keys: Iterable[str] = [self.by_seq[s] for s in self.seqs]
            extra = sorted(set(self.rows) - set(self.by_seq.values()))
            keys = [*keys, *extra]
        else:
            keys = sorted(self.rows)
        out = []
        for key in keys:
            e = self.rows[key]
            out.append(
                [
                    key,
                    e.file,
                    e.off,
                    e.size,
                    list(e.vals),
                    e.tags,
                    None if e.words is None else sorted(e.words),
                ]
            )
        return out

    def load(self, items: list[list[Any]]) -> None:
        for key, file, off, size, vals, tags, found in items:
            self.put(
                key,
                Entry(
                    file, off, size, tuple(vals), tags, None if found is None else frozenset(found)
                ),
            )


def _getter(column: str) -> Callable[[Mapping[str, Any]], Any]:
    """``Table.value`` for one column, without its per-call ``Mapping`` check
    on plain dicts (an ABC ``isinstance`` costs more than the lookup)."""
    if "." not in column:
        return lambda row: row.get(column)
    parts = column.split(".")

    def get(row: Mapping[str, Any]) -> Any:
        value: Any = row
        for part in parts:
            if type(value) is not dict and not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return get


class _Missing:
    pass


_NO = _Missing()


def _seq_bounds(cond: Any) -> tuple[Any, Any]:
    """Inclusive integer bounds implied by a ``seq`` condition (``_NO`` if unusable)."""
    if cond is None:
        return None, None
    conds = cond if isinstance(cond, tuple) else (cond,)
    lo: int | None = None
    hi: int | None = None
    for c in conds:
        if not isinstance(c, Cmp) or not _is_int(c.value):
            return _NO, None
        v = int(c.value)
        if c.op in (">", ">="):
            bound = v + 1 if c.op == ">" else v
            lo = bound if lo is None else max(lo, bound)
        else:
            bound = v - 1 if c.op == "<" else v
            hi = bound if hi is None else min(hi, bound)
    return lo, hi


def _insort(values: list[int], value: int) -> None:
    if not values or value > values[-1]:
        values.append(value)
    else:
        at = bisect.bisect_left(values, value)
        if at == len(values) or values[at] != value:
            values.insert(at, value)


def _discard(values: list[int], value: int) -> None:
    at = bisect.bisect_left(values, value)
    if at < len(values) and values[at] == value:
        del values[at]
