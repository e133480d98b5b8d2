"""Scenario 1: durable event append, one event per call, one caller."""

from __future__ import annotations

from pathlib import Path

from bench.context import Context
from bench.keepstone_side import make_event, open_store, payload_data
from bench.peer_raw import JsonlLog, RawEventTable, durability, event_row
from bench.report import Row, info_ratio_row, ratio_row
from bench.timing import Measurement, run_async, run_sync

NAME = "append"
TITLE = "1. durable event append, one event per call, one caller"
ROWS = {
    "1a": "append 1/call vs raw sqlite3",
    "1b": "append 1/call vs eventsourcing",
    "1c": "append 1/call, JSONL fsync/line",
}


def event_id(prefix: str, i: int) -> str:
    """Ids for timed calls (``i >= 0``) and warm-up calls (``i < 0``)."""
    return f"evt_{prefix}{i}" if i >= 0 else f"evt_{prefix}w{-i}"


async def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.append_one
    with ctx.workdir(NAME) as work:
        async with open_store(ctx.keepstone_url(work)) as store:
            profile = await store.memory.create_profile("bench")

            async def append(i: int) -> None:
                await store.events.append([make_event(profile.id, event_id("a", i), i)])

            ks = ctx.record(
                await run_async("keepstone events.append([1 event])", append, n, writes=True)
            )

        raw = raw_one_row(ctx, work, profile.id, n)

        jsonl_log = JsonlLog(work / "events.jsonl")

        def jsonl_append(i: int) -> None:
            jsonl_log.append(event_row(profile.id, event_id("j", i), i)[3])

        jsonl = ctx.record(run_sync("JSONL line + fsync", jsonl_append, n, writes=True))
        jsonl_log.close()

        es = eventsourcing_append(ctx, work, n)

    return [
        ratio_row("1a", ROWS["1a"], ks, raw, "sqlite3 1-row tx", 0.8),
        ratio_row("1b", ROWS["1b"], ks, es, "eventsourcing save(1)", 2.0),
        info_ratio_row(
            "1c", ROWS["1c"], ks, jsonl, "JSONL+fsync", "physical limit: one fsync per event"
        ),
    ]


def raw_one_row(ctx: Context, work: Path, profile_id: str, n: int) -> Measurement:
    """The physical limit of a single writer: one-row sqlite3 transactions."""
    table = RawEventTable(work / "raw.db")
    try:
        ctx.settings["sqlite3 (raw)"] = durability(table.conn)
        return ctx.record(
            run_sync(
                "sqlite3 one-row transaction",
                lambda i: table.append_one(event_row(profile_id, event_id("r", i), i)),
                n,
                writes=True,
            )
        )
    finally:
        table.close()


def eventsourcing_append(ctx: Context, work: Path, n: int) -> Measurement | None:
    es = ctx.peer("eventsourcing")
    if es is None:
        return None
    app = es.open_app(work / "eventsourcing.db")
    try:
        ctx.settings["eventsourcing.sqlite"] = es.durability(app)
        agg = es.new_aggregate(app)
        return ctx.record(
            run_sync(
                "eventsourcing save(1 event)",
                lambda i: es.save_one(app, agg, payload_data(i)),
                n,
                writes=True,
            )
        )
    finally:
        app.close()
