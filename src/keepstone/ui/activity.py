"""Activity over time, sampled: the event log's and the audit chain's seq
against their timestamps at a few dozen points (one tiny query each), drawn
as a sparkline of items per time bucket. Exact counts would mean reading
everything; a sample costs the same on a store of any size."""

from __future__ import annotations

import asyncio

from keepstone import Store
from keepstone.schemas import AuditQuery, EventQuery
from keepstone.ui.charts import Bar, rate_sparkline
from keepstone.ui.paging import newest_events, to_us

SAMPLES = 24


async def event_activity(store: Store) -> tuple[list[Bar], str]:
    """Sparkline of memory events over time, sampled along the whole log."""
    last = await store.events.last_seq()
    if last == 0:
        return [], ""
    marks = sorted({max(1, round(k * last / SAMPLES)) for k in range(SAMPLES + 1)})

    async def at(seq: int) -> tuple[float, int] | None:
        page = await store.events.list(EventQuery(after_seq=seq - 1), limit=1)
        if not page.items:
            return None
        event = page.items[0]
        return to_us(event.at) / 1e6, event.seq or 0

    found = await asyncio.gather(*(at(s) for s in marks))
    return rate_sparkline(sorted({p for p in found if p is not None}, key=lambda p: p[1]))


async def recent_activity(store: Store, profile_id: str, n: int = 500) -> tuple[list[Bar], str]:
    """Sparkline of one profile's newest ``n`` events over time (exact)."""
    newest = await newest_events(store, EventQuery(profile_id=profile_id), before=None, n=n)
    times = sorted(to_us(e.at) / 1e6 for e in newest.items)
    if len(times) < 2:
        return [], ""
    bars, span = rate_sparkline([(t, i + 1) for i, t in enumerate(times)])
    return bars, f"its newest {len(times)} events over {span.removesuffix(' span')}"


async def audit_activity(store: Store) -> tuple[list[Bar], str]:
    """Sparkline of audit records (every change) over time."""
    head = await store.audit.head()
    if head is None:
        return [], ""
    marks = sorted({max(1, round(k * head.seq / SAMPLES)) for k in range(SAMPLES + 1)})

    async def at(seq: int) -> tuple[float, int] | None:
        page = await store.audit.list(AuditQuery(after_seq=seq - 1), limit=1)
        if not page.items:
            return None
        return to_us(page.items[0].at) / 1e6, page.items[0].seq

    found = await asyncio.gather(*(at(s) for s in marks))
    return rate_sparkline(sorted({p for p in found if p is not None}, key=lambda p: p[1]))
