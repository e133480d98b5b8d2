"""Scenario 2: durable event append, many concurrent asyncio callers, one
event per call.

keepstone is called from ``concurrent_callers`` tasks at once; eventsourcing,
a synchronous library, from the same number of tasks through
``asyncio.to_thread`` (the default executor), one event per ``save``. The
yardstick of group commit is a single raw sqlite3 writer committing one row
per transaction (scenario 1's loop, run again here): many callers must beat
what one writer can do with an fsync per event.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.context import Context
from bench.keepstone_side import make_event, open_store, payload_data
from bench.report import Row, ratio_row
from bench.s1_append import raw_one_row
from bench.timing import Measurement, Stopwatch

NAME = "concurrent"
TITLE = "2. durable event append, concurrent asyncio callers, one event per call"
ROWS = {
    "2a": "append 1/call, 64 callers vs one raw writer",
    "2b": "append 1/call, 64 callers vs eventsourcing",
}


async def run(ctx: Context) -> list[Row]:
    callers = ctx.sizes.concurrent_callers
    per_caller = max(1, ctx.sizes.concurrent_events // callers)
    with ctx.workdir(NAME) as work:
        async with open_store(ctx.keepstone_url(work)) as store:
            profile = await store.memory.create_profile("bench")

            async def caller(prefix: str, c: int, count: int) -> None:
                for k in range(count):
                    event = make_event(profile.id, f"evt_{prefix}{c}_{k}", k)
                    await store.events.append([event])

            # warm-up: two events per caller
            await asyncio.gather(*(caller("w", c, 2) for c in range(callers)))
            with Stopwatch() as sw:
                await asyncio.gather(*(caller("c", c, per_caller) for c in range(callers)))
            ks = ctx.record(
                sw.measurement(
                    f"keepstone append, {callers} callers", callers * per_caller, writes=True
                )
            )
            profile_id = profile.id
        raw = raw_one_row(ctx, work, profile_id, ctx.sizes.append_one)
        es = await eventsourcing_concurrent(ctx, work, callers)

    label = f"append 1/call, {callers} callers"
    return [
        ratio_row("2a", f"{label} vs one raw writer", ks, raw, "sqlite3 1-row tx", 8.0),
        ratio_row("2b", f"{label} vs eventsourcing", ks, es, "eventsourcing", 10.0),
    ]


async def eventsourcing_concurrent(ctx: Context, work: Path, callers: int) -> Measurement | None:
    es = ctx.peer("eventsourcing")
    if es is None:
        return None
    per_caller = max(1, ctx.sizes.concurrent_peer_events // callers)
    app = es.open_app(work / "eventsourcing.db")
    try:
        aggregates = [es.new_aggregate(app) for _ in range(callers)]

        async def caller(c: int, count: int) -> None:
            for k in range(count):
                await asyncio.to_thread(es.save_one, app, aggregates[c], payload_data(k))

        await asyncio.gather(*(caller(c, 1) for c in range(callers)))
        with Stopwatch() as sw:
            await asyncio.gather(*(caller(c, per_caller) for c in range(callers)))
        return ctx.record(
            sw.measurement(
                f"eventsourcing save(1), {callers} callers", callers * per_caller, writes=True
            )
        )
    finally:
        app.close()
