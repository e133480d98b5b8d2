"""Scenario 9: keepstone on PostgreSQL beside the PostgreSQL peers.

keepstone's ``postgresql://`` backend, eventsourcing's ``eventsourcing.postgres``
and langgraph's ``AsyncPostgresSaver``, each in a schema of its own on the
same server, dropped at the end. Runs whatever ``--backend`` says (the other
scenarios use it); skips when the server or a peer is missing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.context import Context
from bench.keepstone_side import make_event, open_store, payload_data
from bench.report import NOT_INSTALLED, Row, latency_ratio_row, ratio_row, skip_row
from bench.s5_snapshots import state_of
from bench.timing import Measurement, Stopwatch, run_async, run_sync, timed
from keepstone.schemas.memory import EventQuery

NAME = "postgres"
TITLE = "9. PostgreSQL: keepstone beside eventsourcing.postgres and AsyncPostgresSaver"
ROWS = {
    "9a": "pg append 1/call vs eventsourcing",
    "9b": "pg append 1/call, 64 callers vs eventsourcing",
    "9c": "pg append batch of 100 vs eventsourcing",
    "9d": "pg replay vs eventsourcing",
    "9e": "pg snapshot put ~2 KiB vs AsyncPostgresSaver.aput",
    "9f": "pg latest snapshot ~2 KiB vs aget_tuple",
}
GOALS = {"9a": 2.0, "9b": 5.0, "9c": 1.0, "9d": 1.0, "9e": 1.5, "9f": 1.0}
SNAPSHOT_SIZE = 2_048
LOAD_BATCH = 1000


async def run(ctx: Context) -> list[Row]:
    try:
        from bench import peer_postgres as pgp
    except ImportError as exc:
        return _skipped(f"asyncpg not installed ({exc})")
    reason = await pgp.unreachable()
    if reason is not None:
        ctx.say(f"    {reason}")
        return _skipped(reason)
    ks: dict[str, Measurement] = {}
    async with pgp.own_schema("ks") as schema, open_store(pgp.keepstone_url(schema)) as store:
        ks.update(await keepstone_side(ctx, store))
    es = await eventsourcing_side(ctx, pgp)
    lg = await langgraph_side(ctx, pgp)
    return [
        ratio_row("9a", ROWS["9a"], ks["append"], es.get("append"), "eventsourcing", GOALS["9a"]),
        ratio_row(
            "9b", ROWS["9b"], ks["concurrent"], es.get("concurrent"), "eventsourcing", GOALS["9b"]
        ),
        ratio_row("9c", ROWS["9c"], ks["batch"], es.get("batch"), "eventsourcing", GOALS["9c"]),
        ratio_row("9d", ROWS["9d"], ks["replay"], es.get("replay"), "eventsourcing", GOALS["9d"]),
        ratio_row(
            "9e",
            ROWS["9e"],
            ks["put"],
            lg.get("put"),
            "AsyncPostgresSaver.aput",
            GOALS["9e"],
            per="ops",
            unit=" puts/s",
        ),
        latency_ratio_row("9f", ROWS["9f"], ks["get"], lg.get("get"), "aget_tuple", GOALS["9f"]),
    ]


def _skipped(reason: str) -> list[Row]:
    return [skip_row(i, desc, f"≥ {GOALS[i]:g}×", reason) for i, desc in ROWS.items()]


async def keepstone_side(ctx: Context, store: Any) -> dict[str, Measurement]:
    sizes = ctx.sizes
    out: dict[str, Measurement] = {}
    profile = await store.memory.create_profile("bench")

    async def append(i: int) -> None:
        await store.events.append([make_event(profile.id, f"evt_a{i}", i)])

    out["append"] = ctx.record(
        await run_async("keepstone pg events.append([1 event])", append, sizes.append_one)
    )

    callers = sizes.concurrent_callers
    per_caller = max(1, sizes.concurrent_events // callers)

    async def caller(prefix: str, c: int, count: int) -> None:
        for k in range(count):
            await store.events.append([make_event(profile.id, f"evt_{prefix}{c}_{k}", k)])

    await asyncio.gather(*(caller("w", c, 2) for c in range(callers)))
    before = store.backend.engine.transactions
    with Stopwatch() as sw:
        await asyncio.gather(*(caller("c", c, per_caller) for c in range(callers)))
    out["concurrent"] = ctx.record(
        timed(f"keepstone pg append, {callers} callers", callers * per_caller, sw.seconds)
    )
    ctx.extra["postgres_group_commit"] = {
        "batches": callers * per_caller,
        "transactions": store.backend.engine.transactions - before,
    }

    size = sizes.batch_size

    async def batch(call: int) -> None:
        await store.events.append(
            [make_event(profile.id, f"evt_b{call}_{k}", k) for k in range(size)]
        )

    out["batch"] = ctx.record(
        await run_async(
            f"keepstone pg events.append([{size} events])",
            batch,
            sizes.batch_calls,
            items_per_op=size,
        )
    )

    replay_profile = await store.memory.create_profile("replay")
    n = sizes.replay_events
    for start in range(0, n, LOAD_BATCH):
        stop = min(n, start + LOAD_BATCH)
        await store.events.append(
            [make_event(replay_profile.id, f"evt_r{i}", i) for i in range(start, stop)]
        )
    query = EventQuery(profile_id=replay_profile.id)

    async def replay() -> int:
        return sum([1 async for _ in store.events.iterate(query)])

    await replay()
    with Stopwatch() as sw:
        count = await replay()
    out["replay"] = ctx.record(timed("keepstone pg events.iterate", count, sw.seconds))

    run_ = await store.runs.create("bench")

    async def put(i: int) -> None:
        await store.runs.save_snapshot(run_.id, state_of(SNAPSHOT_SIZE, i))

    async def get(_: int) -> None:
        await store.runs.latest_snapshot(run_.id)

    out["put"] = ctx.record(
        await run_async("keepstone pg save_snapshot 2 KiB", put, sizes.snapshot_puts)
    )
    out["get"] = ctx.record(
        await run_async("keepstone pg latest_snapshot 2 KiB", get, sizes.snapshot_gets)
    )
    return out


async def eventsourcing_side(ctx: Context, pgp: Any) -> dict[str, Measurement]:
    es = ctx.peer("eventsourcing")
    if es is None:
        return {}
    sizes = ctx.sizes
    out: dict[str, Measurement] = {}
    async with pgp.own_schema("es") as schema:
        app = pgp.eventsourcing_app(schema)
        try:
            agg = es.new_aggregate(app)
            out["append"] = ctx.record(
                run_sync(
                    "eventsourcing pg save(1 event)",
                    lambda i: es.save_one(app, agg, payload_data(i)),
                    sizes.append_one,
                )
            )
            callers = sizes.concurrent_callers
            per_caller = max(1, sizes.concurrent_peer_events // callers)
            aggregates = [es.new_aggregate(app) for _ in range(callers)]

            async def caller(c: int, count: int) -> None:
                for k in range(count):
                    await asyncio.to_thread(es.save_one, app, aggregates[c], payload_data(k))

            await asyncio.gather(*(caller(c, 1) for c in range(callers)))
            with Stopwatch() as sw:
                await asyncio.gather(*(caller(c, per_caller) for c in range(callers)))
            out["concurrent"] = ctx.record(
                timed(
                    f"eventsourcing pg save(1), {callers} callers", callers * per_caller, sw.seconds
                )
            )
            size = sizes.batch_size
            out["batch"] = ctx.record(
                run_sync(
                    f"eventsourcing pg save({size} pending events)",
                    lambda _: es.save_batch(app, agg, [payload_data(k) for k in range(size)]),
                    sizes.batch_calls,
                    items_per_op=size,
                )
            )
        finally:
            app.close()
    async with pgp.own_schema("esr") as schema:
        app = pgp.eventsourcing_app(schema)
        try:
            agg = es.new_aggregate(app)
            n = sizes.replay_events
            for start in range(0, n, LOAD_BATCH):
                es.save_batch(
                    app, agg, [payload_data(i) for i in range(start, min(n, start + LOAD_BATCH))]
                )
            es.replay(app)
            with Stopwatch() as sw:
                count = es.replay(app)
            out["replay"] = ctx.record(timed("eventsourcing pg replay", count, sw.seconds))
        finally:
            app.close()
    return out


async def langgraph_side(ctx: Context, pgp: Any) -> dict[str, Measurement]:
    try:
        from bench.peer_langgraph import Thread
    except ImportError as exc:
        ctx.say(f"    langgraph: {NOT_INSTALLED} ({exc})")
        return {}
    sizes = ctx.sizes
    out: dict[str, Measurement] = {}
    try:
        async with pgp.own_schema("lg") as schema, pgp.async_postgres_saver(schema) as saver:
            thread = Thread(saver, "bench")

            async def aput(i: int) -> None:
                await thread.aput(state_of(SNAPSHOT_SIZE, i))

            async def aget(_: int) -> None:
                await thread.aget_latest()

            out["put"] = ctx.record(
                await run_async("AsyncPostgresSaver.aput 2 KiB", aput, sizes.snapshot_puts)
            )
            out["get"] = ctx.record(
                await run_async("AsyncPostgresSaver.aget_tuple 2 KiB", aget, sizes.snapshot_gets)
            )
    except ImportError as exc:
        ctx.say(f"    langgraph postgres: {NOT_INSTALLED} ({exc})")
    return out
