"""Scenario 3: batch append, ``batch_size`` events per call, one caller."""

from __future__ import annotations

from pathlib import Path

from bench.context import Context
from bench.keepstone_side import make_event, open_store, payload_data
from bench.peer_raw import RawEventTable, event_row
from bench.report import Row, ratio_row
from bench.timing import Measurement, run_async, run_sync

NAME = "batch"
TITLE = "3. batch append, 100 events per call"
ROWS = {
    "3a": "append 100/call vs raw executemany",
    "3b": "append 100/call vs eventsourcing",
}


def ids(prefix: str, call: int, size: int) -> list[str]:
    tag = f"{call}" if call >= 0 else f"w{-call}"
    return [f"evt_{prefix}{tag}_{k}" for k in range(size)]


async def run(ctx: Context) -> list[Row]:
    calls, size = ctx.sizes.batch_calls, ctx.sizes.batch_size
    with ctx.workdir(NAME) as work:
        async with open_store(ctx.keepstone_url(work)) as store:
            profile = await store.memory.create_profile("bench")

            async def append(call: int) -> None:
                events = [
                    make_event(profile.id, eid, k) for k, eid in enumerate(ids("b", call, size))
                ]
                await store.events.append(events)

            ks = ctx.record(
                await run_async(
                    f"keepstone events.append([{size} events])",
                    append,
                    calls,
                    items_per_op=size,
                    writes=True,
                )
            )

        table = RawEventTable(work / "raw.db")

        def raw_append(call: int) -> None:
            table.append_many(
                [event_row(profile.id, eid, k) for k, eid in enumerate(ids("r", call, size))]
            )

        raw = ctx.record(
            run_sync(
                f"sqlite3 executemany({size} rows)",
                raw_append,
                calls,
                items_per_op=size,
                writes=True,
            )
        )
        table.close()
        es = eventsourcing_batch(ctx, work, calls, size)

    return [
        ratio_row("3a", ROWS["3a"], ks, raw, "sqlite3 executemany", 0.5),
        ratio_row("3b", ROWS["3b"], ks, es, f"eventsourcing save({size})", 4.0),
    ]


def eventsourcing_batch(ctx: Context, work: Path, calls: int, size: int) -> Measurement | None:
    es = ctx.peer("eventsourcing")
    if es is None:
        return None
    app = es.open_app(work / "eventsourcing.db")
    try:
        agg = es.new_aggregate(app)
        return ctx.record(
            run_sync(
                f"eventsourcing save({size} pending events)",
                lambda call: es.save_batch(app, agg, [payload_data(k) for k in range(size)]),
                calls,
                items_per_op=size,
                writes=True,
            )
        )
    finally:
        app.close()
