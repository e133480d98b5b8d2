"""Scenario 4: replay a log into typed events.

Each system first loads the same number of events (not timed), then reads
them all back twice: a warm-up pass, then the timed pass. The yardstick is
raw sqlite3 reading the same rows and decoding them with ``orjson.loads``
into plain dicts (no types): the floor of a SQLite read.
"""

from __future__ import annotations

from pathlib import Path

from bench.context import Context
from bench.keepstone_side import make_event, open_store, payload_data
from bench.peer_raw import RawEventTable, event_row
from bench.report import Row, ratio_row
from bench.timing import Measurement, Stopwatch
from keepstone.schemas.memory import EventQuery

NAME = "replay"
TITLE = "4. replay into typed events"
ROWS = {
    "4a": "replay events.iterate → MemoryEvent vs raw sqlite3 + orjson.loads",
    "4b": "replay vs eventsourcing",
}
LOAD_BATCH = 1000


async def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.replay_events
    with ctx.workdir(NAME) as work:
        async with open_store(ctx.keepstone_url(work)) as store:
            profile = await store.memory.create_profile("bench")
            for start in range(0, n, LOAD_BATCH):
                stop = min(n, start + LOAD_BATCH)
                await store.events.append(
                    [make_event(profile.id, f"evt_{i}", i) for i in range(start, stop)]
                )
            query = EventQuery(profile_id=profile.id)

            async def replay() -> int:
                count = 0
                async for _event in store.events.iterate(query):
                    count += 1
                return count

            await replay()
            with Stopwatch() as sw:
                count = await replay()
            ks = ctx.record(sw.measurement("keepstone events.iterate", count))

        table = RawEventTable(work / "raw.db")
        for start in range(0, n, LOAD_BATCH):
            stop = min(n, start + LOAD_BATCH)
            table.append_many([event_row(profile.id, f"evt_{i}", i) for i in range(start, stop)])
        sum(1 for _ in table.replay())
        with Stopwatch() as sw:
            count = sum(1 for _ in table.replay())
        raw = ctx.record(sw.measurement("sqlite3 SELECT + orjson.loads", count))
        table.close()

        es = eventsourcing_replay(ctx, work, n)

    return [
        ratio_row("4a", ROWS["4a"], ks, raw, "sqlite3+orjson dicts", 0.6),
        ratio_row("4b", ROWS["4b"], ks, es, "eventsourcing log+decode", 2.5),
    ]


def eventsourcing_replay(ctx: Context, work: Path, n: int) -> Measurement | None:
    es = ctx.peer("eventsourcing")
    if es is None:
        return None
    app = es.open_app(work / "eventsourcing.db")
    try:
        agg = es.new_aggregate(app)
        for start in range(0, n - 1, LOAD_BATCH):
            stop = min(n - 1, start + LOAD_BATCH)
            es.save_batch(app, agg, [payload_data(i) for i in range(start, stop)])
        es.replay(app)
        with Stopwatch() as sw:
            count = es.replay(app)
        return ctx.record(sw.measurement("eventsourcing notification log + decode", count))
    finally:
        app.close()
