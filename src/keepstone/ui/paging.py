"""Newest-first pages over listings that the public API serves oldest first.

``store.runs.list`` returns runs oldest first (by ``created_at``, then id)
and takes ``created_after``/``created_before`` bounds; the audit chain and
the event log list by ``seq`` with an ``after_seq`` bound. A person wants the
newest first. Reading everything and reversing it is not an option on a
store of 100,000 runs or a million events, so :func:`newest` finds the
newest ``n`` items below a bound with a handful of bounded queries:

1. from an anchor (now, or the top of the log), look back over windows that
   double until one holds more than ``n`` items;
2. narrow the window by bisection until it holds about ``n`` items, jumping
   over empty stretches to the oldest item a query returned;
3. read that window once and keep its newest ``n`` items.

Each query asks for at most ``n + 1`` items, so a page costs O(log range)
small indexed reads, whatever the store's size.

A UI cursor (``before``) is the key of the last item shown and, for keys
that can repeat (timestamps), its id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from keepstone import Store
from keepstone.schemas import AuditQuery, AuditRecord, EventQuery, MemoryEvent, Run, RunQuery

T = TypeVar("T")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIME_FLOOR = -62_135_596_800_000_000
"""Microseconds from the epoch to 0001-01-01: no timestamp is older."""
TIME_CEILING = 253_402_300_799_999_999
"""Microseconds from the epoch to 9999-12-31T23:59:59.999999."""
SMALL_SET = 5_000
"""A label-filtered listing with fewer runs than this is read whole."""
MAX_BURST = 10_000
"""Items sharing one key read at most (more than this many runs created in
the same microsecond show in part)."""

Fetch = Callable[[int, int, int], Awaitable[Sequence[T]]]
"""``fetch(after, before, limit)``: items with ``after < key < before``,
oldest first, at most ``limit``."""


def to_us(value: datetime) -> int:
    """A timestamp as whole microseconds since the epoch."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    """Whole microseconds since the epoch as a UTC timestamp."""
    return EPOCH + timedelta(microseconds=value)


@dataclass(frozen=True)
class NewestPage(Generic[T]):
    """Items newest first, and the cursor of the next (older) page."""

    items: list[T]
    before: str | None


async def newest(
    fetch: Fetch[T],
    key: Callable[[T], int],
    *,
    top: int,
    floor: int,
    anchor: int,
    n: int,
    first_step: int,
) -> list[T]:
    """The newest ``n`` items with ``floor < key < top``, newest first (ties
    on the key in the reverse of ``fetch``'s order).

    Args:
        fetch: see :data:`Fetch`.
        key: an item's integer key (microseconds or seq).
        top: exclusive upper bound.
        floor: no item has a key at or below it.
        anchor: where to start looking back from; items above it are found
            too, by bisection between ``anchor`` and ``top``.
        first_step: the first look-back window (it grows fourfold).
    """
    cap = 2 * n + 1  # a window holding n+1 .. 2n items is read whole: done
    anchor = max(floor, min(anchor, top - 1))
    found = list(await fetch(anchor, top, cap))
    if n < len(found) < cap:
        return found[::-1][:n]
    hi_items: list[T] = []  # every item in (hi, top): fewer than cap
    if len(found) == cap:
        lo, hi = max(anchor, key(found[0]) - 1), top
    else:
        hi, hi_items, step = anchor, found, first_step
        while True:
            if hi <= floor:
                return hi_items[::-1]
            start = max(floor, anchor - step)
            found = list(await fetch(start, top, cap))
            if n < len(found) < cap:
                return found[::-1][:n]
            if len(found) == cap:
                lo = max(start, key(found[0]) - 1)
                break
            hi, hi_items, step = start, found, step * 4
    # invariant: count(lo, top) >= cap > n >= count(hi, top). Bisect, every
    # other step guessing from the density seen (few probes when keys are
    # spread evenly, never more than twice plain bisection's).
    density = len(found) / max(1, key(found[-1]) - lo)
    guess = True
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if guess:
            want = 1.5 * n
            if hi_items:  # extrapolate from the items above hi
                newest_key = key(hi_items[-1])
                span = max(1, newest_key - hi)
                estimate = newest_key - int(span * want / len(hi_items))
            else:
                estimate = hi - int(want / density) if density > 0 else mid
            if lo < estimate < hi:
                mid = estimate
        guess = not guess
        found = list(await fetch(mid, top, cap))
        if n < len(found) < cap:
            return found[::-1][:n]
        if len(found) == cap:
            lo = max(mid, key(found[0]) - 1)
            density = len(found) / max(1, key(found[-1]) - lo)
        else:
            hi, hi_items = mid, found
    # more than n items share the key lo + 1 (a burst): read them
    above = list(await fetch(lo + 1, top, cap))
    burst = list(await fetch(lo, lo + 2, MAX_BURST))
    return (burst + above)[::-1][:n]


# --------------------------------------------------------------------------- runs


def run_key(run: Run) -> int:
    return to_us(run.created_at)


async def newest_runs(
    store: Store, query: RunQuery, *, before: str | None, n: int, now: datetime
) -> NewestPage[Run]:
    """Runs matching ``query``, newest first, created before the cursor."""
    top, before_id = TIME_CEILING, None
    if before:
        top, before_id = _split_cursor(before)

    async def fetch(after: int, below: int, limit: int) -> list[Run]:
        bounded = query.model_copy(
            update={
                "created_after": _later(query.created_after, after),
                "created_before": _earlier(query.created_before, below),
            }
        )
        page = await store.runs.list(bounded, limit=limit)
        return page.items

    want = n + 1  # one more than shown: is there an older page?
    items: list[Run] = []
    if query.labels:
        # a label filter makes every windowed read walk all runs with that
        # label (the tag index): when they are few, one read of them all is
        # cheaper than a search
        everything = await fetch(TIME_FLOOR, top + 1 if before_id else top, SMALL_SET)
        if len(everything) < SMALL_SET:
            items = [
                r
                for r in everything
                if run_key(r) < top or (before_id is not None and r.id < before_id)
            ][::-1][:want]
            return _runs_page(items, n)
    if before_id is not None:  # runs sharing the cursor's timestamp, older by id
        same = await fetch(top - 1, top + 1, MAX_BURST)
        items = [r for r in same if r.id < before_id][::-1][:want]
    if len(items) < want:
        items += await newest(
            fetch,
            run_key,
            top=top,
            floor=TIME_FLOOR,
            anchor=to_us(now),
            n=want - len(items),
            first_step=60_000_000,
        )
    return _runs_page(items, n)


def _runs_page(items: list[Run], n: int) -> NewestPage[Run]:
    if len(items) <= n:
        return NewestPage(items, None)
    last = items[n - 1]
    return NewestPage(items[:n], f"{run_key(last)}:{last.id}")


def _later(bound: datetime | None, after_us: int) -> datetime | None:
    if after_us <= TIME_FLOOR:
        return bound
    value = from_us(after_us)
    return value if bound is None or value > bound else bound


def _earlier(bound: datetime | None, before_us: int) -> datetime | None:
    if before_us >= TIME_CEILING:
        return bound
    value = from_us(before_us)
    return value if bound is None or value < bound else bound


def _split_cursor(text: str) -> tuple[int, str | None]:
    head, _, tail = text.partition(":")
    try:
        return int(head), (tail or None)
    except ValueError:
        from keepstone.errors import StorageError

        raise StorageError("invalid", f"not a page cursor: {text!r}", {"cursor": text}) from None


# --------------------------------------------------------------------------- seq-keyed logs


async def newest_audit(
    store: Store, query: AuditQuery, *, before: int | None, n: int
) -> NewestPage[AuditRecord]:
    """Audit records matching ``query``, newest first, below seq ``before``."""
    head = await store.audit.head()
    if head is None:
        return NewestPage([], None)
    top = head.seq + 1 if before is None else min(before, head.seq + 1)
    floor = query.after_seq or 0

    async def fetch(after: int, below: int, limit: int) -> list[AuditRecord]:
        after = max(after, floor)
        page = await store.audit.list(query.model_copy(update={"after_seq": after}), limit=limit)
        return [r for r in page.items if r.seq < below]

    items = await newest(
        fetch, _audit_seq, top=top, floor=floor, anchor=top - 3 - 2 * n, n=n + 1, first_step=4 * n
    )
    return _seq_page(items, n, _audit_seq)


async def newest_events(
    store: Store, query: EventQuery, *, before: int | None, n: int
) -> NewestPage[MemoryEvent]:
    """Events matching ``query``, newest first, below seq ``before``."""
    last = await store.events.last_seq()
    top = last + 1 if before is None else min(before, last + 1)
    if query.through_seq is not None:
        top = min(top, query.through_seq + 1)
    floor = query.after_seq or 0
    if query.kinds and (query.profile_id or query.path_id):
        # narrow the seq range to the profile's (or path's) own events first:
        # those reads use its index; kind-filtered reads may not
        span = query.model_copy(update={"kinds": None})
        first = await store.events.list(span, limit=1)
        if not first.items:
            return NewestPage([], None)
        floor = max(floor, (first.items[0].seq or 1) - 1)
        newest_one = await newest_events(store, span, before=before, n=1)
        if not newest_one.items:
            return NewestPage([], None)
        top = min(top, (newest_one.items[0].seq or 0) + 1)

    async def fetch(after: int, below: int, limit: int) -> list[MemoryEvent]:
        bounded = query.model_copy(
            update={"after_seq": max(after, floor), "through_seq": below - 1}
        )
        if below - 1 < max(after, floor) + 1:
            return []
        page = await store.events.list(bounded, limit=limit)
        return page.items

    items = await newest(
        fetch, _seq, top=top, floor=floor, anchor=top - 3 - 2 * n, n=n + 1, first_step=4 * n
    )
    return _seq_page(items, n, _seq)


def _seq(event: MemoryEvent) -> int:
    return event.seq or 0


def _audit_seq(record: AuditRecord) -> int:
    return record.seq


def _seq_page(items: list[T], n: int, key: Callable[[T], int]) -> NewestPage[T]:
    if len(items) <= n:
        return NewestPage(items, None)
    return NewestPage(items[:n], str(key(items[n - 1])))
