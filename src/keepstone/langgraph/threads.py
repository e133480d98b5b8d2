"""Reading threads back: which run holds a thread, the index of its
snapshots, and headers and values by digest (cached, since content never
changes under a digest).

Nothing here imports LangGraph: the ``keepstone threads`` commands use it
to show threads as JSON on a machine without the ``langgraph`` extra.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from keepstone.errors import StorageError
from keepstone.langgraph.layout import (
    CHECKPOINT_PART,
    DELETED,
    RUN_NAME,
    WRITES_PART,
    Label,
    check_header,
    parse_label,
    thread_run_id,
)
from keepstone.langgraph.parts import closure
from keepstone.schemas import Run, RunQuery
from keepstone.store import Store

_PAGE = 5000


# --------------------------------------------------------------------------- caches


class DigestCache:
    """Bytes and parsed JSON by digest, least recently used first out, within
    a byte budget. Safe to share: what a digest names never changes."""

    def __init__(self, budget: int = 64 << 20) -> None:
        self._budget = budget
        self._used = 0
        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def get(self, digest: str) -> Any | None:
        item = self._items.get(digest)
        if item is None:
            return None
        self._items.move_to_end(digest)
        return item[1]

    def put(self, digest: str, value: Any, size: int) -> None:
        if size > self._budget // 4:
            return
        if digest in self._items:
            self._items.move_to_end(digest)
            return
        self._items[digest] = (size, value)
        self._used += size
        while self._used > self._budget and self._items:
            _, (old, _) = self._items.popitem(last=False)
            self._used -= old


async def load_json(store: Store, cache: DigestCache, digest: str) -> Any:
    """The JSON stored under ``digest`` (verified once, then cached).

    Raises:
        StorageError: ``corrupt`` when the bytes are missing or damaged.
    """
    found = cache.get(digest)
    if found is not None:
        return found
    try:
        raw = await store.blobs.get(digest)
    except StorageError as exc:
        if exc.code == "not_found":
            raise StorageError(
                "corrupt",
                f"a LangGraph thread refers to {digest}, which the store no longer holds; "
                "run the doctor",
                {"digest": digest},
            ) from exc
        raise
    value = orjson.loads(raw)
    cache.put(digest, value, len(raw) + 64)
    return value


async def load_many(store: Store, cache: DigestCache, digests: list[str]) -> dict[str, Any]:
    """:func:`load_json` for several digests at once."""
    wanted = list(dict.fromkeys(digests))
    values = await asyncio.gather(*(load_json(store, cache, d) for d in wanted))
    return dict(zip(wanted, values, strict=True))


async def load_closure(store: Store, cache: DigestCache, roots: list[str]) -> dict[str, Any]:
    """Every part reachable from ``roots`` (see :func:`keepstone.langgraph.parts.closure`)."""
    if not roots:
        return {}

    async def load(digests: list[str]) -> dict[str, Any]:
        return await load_many(store, cache, digests)

    return await closure(load, roots)


# --------------------------------------------------------------------------- runs


def is_deleted(run: Run) -> bool:
    return run.status == "cancelled" and run.error is not None and run.error.type == DELETED


async def current_run(store: Store, thread_id: str) -> tuple[Run | None, int]:
    """The live run of ``thread_id`` (or ``None``) and its generation; when
    there is none, the generation a new one would take."""
    generation = 1
    while True:
        try:
            run = await store.runs.get(thread_run_id(thread_id, generation))
        except StorageError as exc:
            if exc.code == "not_found":
                return None, generation
            raise
        if not is_deleted(run):
            return run, generation
        generation += 1


async def thread_runs(store: Store, *, include_deleted: bool = False) -> list[Run]:
    """Every thread's run, oldest first."""
    found: list[Run] = []
    cursor = None
    while True:
        page = await store.runs.list(RunQuery(name=RUN_NAME), cursor=cursor, limit=1000)
        found += [r for r in page.items if include_deleted or not is_deleted(r)]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def run_thread_id(run: Run) -> str:
    """The LangGraph thread id a thread run holds."""
    params = run.params or {}
    value = params.get("thread_id")
    if not isinstance(value, str):
        raise StorageError("corrupt", f"run {run.id} does not name its LangGraph thread", {})
    return value


# --------------------------------------------------------------------------- index


@dataclass(frozen=True, slots=True)
class Entry:
    """One snapshot of a thread, as its record describes it."""

    number: int
    label: Label
    parts: dict[str, str]
    created_at: datetime

    @property
    def header_digest(self) -> str | None:
        part = CHECKPOINT_PART if self.label.kind == "checkpoint" else WRITES_PART
        return self.parts.get(part)


@dataclass
class ThreadIndex:
    """The snapshots of one thread run, in number order, kept up to date
    with one short read per refresh.

    ``list_snapshots`` pages forward with opaque cursors; the index keeps the
    cursor positioned just before the last snapshot it knows, so a refresh
    reads that snapshot again (checking nothing before it changed) plus
    whatever came after. When the run's revision moved (a writer claimed it
    or a prune ran), the index is rebuilt.
    """

    run_id: str
    revision: int = 0
    entries: list[Entry] = field(default_factory=list)
    tail_cursor: str | None = None
    tail_index: int = 0
    checkpoints: dict[tuple[str, str], Entry] = field(default_factory=dict)
    writes: dict[tuple[str, str], list[Entry]] = field(default_factory=dict)
    latest: dict[str, Entry] = field(default_factory=dict)
    numbers: set[int] = field(default_factory=set)
    void: list[Entry] = field(default_factory=list)
    """Writes of a fenced-off writer that landed after a newer claim."""
    epoch: int = 0
    """The newest claim seen."""

    def reset(self, revision: int) -> None:
        self.revision = revision
        self.entries = []
        self.tail_cursor = None
        self.tail_index = 0
        self.numbers = set()
        self._clear()

    def _clear(self) -> None:
        self.checkpoints = {}
        self.writes = {}
        self.latest = {}
        self.void = []
        self.epoch = 0

    def add(self, entry: Entry) -> None:
        """Record a snapshot (from a read, or one this process just wrote)."""
        if entry.number in self.numbers:
            return
        self.numbers.add(entry.number)
        if self.entries and entry.number < self.entries[-1].number:
            self.entries.append(entry)
            self.entries.sort(key=lambda e: e.number)
            self._clear()
            for known in self.entries:
                self._place(known)
        else:
            self.entries.append(entry)
            self._place(entry)

    def _place(self, entry: Entry) -> None:
        label = entry.label
        if label.kind == "claim":
            self.epoch = max(self.epoch, label.epoch)
            return
        if label.kind in ("checkpoint", "writes") and label.epoch < self.epoch:
            self.void.append(entry)  # written by a writer fenced off before it landed
            return
        key = (label.checkpoint_ns, label.checkpoint_id)
        if label.kind == "checkpoint":
            old = self.checkpoints.get(key)
            if old is None or old.number < entry.number:
                self.checkpoints[key] = entry
            head = self.latest.get(label.checkpoint_ns)
            if head is None or head.label.checkpoint_id <= label.checkpoint_id:
                self.latest[label.checkpoint_ns] = entry
        elif label.kind == "writes":
            self.writes.setdefault(key, []).append(entry)

    async def refresh(self, store: Store, run: Run) -> None:
        """Catch up with the store (see the class docstring)."""
        if run.revision != self.revision or not self.entries:
            self.reset(run.revision)
        cursor = self.tail_cursor
        check = self.entries[self.tail_index].number if cursor is not None else None
        while True:
            page = await store.runs.list_snapshots(self.run_id, cursor=cursor, limit=_PAGE)
            items = page.items
            if check is not None:
                if not items or items[0].number != check:
                    # Something at or before our tail changed: read it all again.
                    self.reset(run.revision)
                    cursor = check = None
                    continue
                check = None
            for record in items:
                label = parse_label(record.step)
                if label is not None:
                    self.add(Entry(record.number, label, dict(record.parts), record.created_at))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        await self._move_tail(store, cursor, items)

    async def _move_tail(self, store: Store, cursor: str | None, last_page: list[Any]) -> None:
        """Keep a cursor that points just before the last snapshot."""
        if not last_page:
            return
        if len(last_page) == 1:
            self.tail_cursor = cursor
        else:
            page = await store.runs.list_snapshots(
                self.run_id, cursor=cursor, limit=len(last_page) - 1
            )
            if page.next_cursor is None:  # the listing moved under us; read it all next time
                self.reset(self.revision)
                return
            self.tail_cursor = page.next_cursor
        last = last_page[-1].number
        self.tail_index = next(
            (i for i in range(len(self.entries) - 1, -1, -1) if self.entries[i].number == last),
            0,
        )


async def read_header(store: Store, cache: DigestCache, entry: Entry) -> dict[str, Any]:
    """The header of a checkpoint or writes snapshot."""
    digest = entry.header_digest
    if digest is None:
        raise StorageError(
            "corrupt", f"snapshot {entry.number} of a LangGraph thread has no header", {}
        )
    return check_header(await load_json(store, cache, digest), entry.label.kind)
