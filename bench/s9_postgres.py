"""Scenario 9: keepstone on PostgreSQL beside the PostgreSQL peers.

keepstone's ``postgresql://`` backend, eventsourcing's ``eventsourcing.postgres``
and langgraph's ``AsyncPostgresSaver``, each in a schema of its own on the
same server, dropped at the end. Runs whatever ``--backend`` says (the other
scenarios use it); skips when the server or a peer is missing.

The keepstone loops run in this order on one store: 9a (single appends),
9b (64 callers), 9c (batches of 100, right after 9b: the order that once
showed 9c many times slower than on a fresh store), then replay and
snapshots. 9c is watched from the server side (:mod:`bench.pg_probe`) and
the writer's commit counters; 9g-9h report what was seen, and 9i runs the
same batch loop on a fresh store as a control.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bench.context import Context
from bench.keepstone_side import make_event, open_store, payload_data
from bench.pg_probe import Probe, WriterProbe
from bench.report import (
    NOT_INSTALLED,
    Row,
    fmt_bytes,
    fmt_cpu,
    fmt_seconds,
    info_ratio_row,
    info_row,
    latency_ratio_row,
    ratio_row,
    skip_row,
)
from bench.s5_snapshots import state_of
from bench.timing import Measurement, Stopwatch, run_async, run_sync, warmup_count
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
    "9g": "pg batch of 100 (9c): per-call latency, commits",
    "9h": "pg batch of 100 (9c): server side",
    "9i": "pg batch of 100, fresh store (control for 9c)",
}
GOALS = {"9a": 2.0, "9b": 5.0, "9c": 1.0, "9d": 1.0, "9e": 1.5, "9f": 1.0}
"""The goal rows; 9g-9i are diagnostics (info)."""
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
    async with (
        pgp.own_schema("ks") as schema,
        open_store(pgp.keepstone_url(schema, schema)) as store,
    ):
        ks, watched = await keepstone_side(ctx, pgp, store, schema)
    fresh = await fresh_batches(ctx, pgp)
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
        *diagnostic_rows(watched, fresh),
    ]


def _skipped(reason: str) -> list[Row]:
    return [
        skip_row(i, desc, f"≥ {GOALS[i]:g}×" if i in GOALS else "—", reason)
        for i, desc in ROWS.items()
    ]


def writer_counters(store: Any) -> tuple[int | None, int | None]:
    """The PostgreSQL writer's committed transactions and retried groups,
    where the engine exposes them (``None`` otherwise)."""
    engine = getattr(getattr(store, "backend", None), "engine", None)
    return getattr(engine, "transactions", None), getattr(engine, "retries", None)


def _delta(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


@dataclass
class Watched:
    """A batch loop and what was seen around it: the server probe, and the
    writer's counters over every call of the loop (warm-up included)."""

    measured: Measurement
    probe: Probe
    calls: int
    transactions: int | None
    retries: int | None

    @property
    def events(self) -> int:
        return self.calls * self.measured.items_per_op

    def server_cpu_per_event(self) -> str:
        cpu = self.probe.server_cpu_seconds
        return "n/a" if cpu is None or not self.events else fmt_cpu(cpu / self.events * 1e6)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "events": self.events,
            "transactions": self.transactions,
            "retries": self.retries,
            "server": self.probe.as_dict(),
        }


async def batch_loop(
    ctx: Context, pgp: Any, store: Any, profile_id: str, label: str, application_name: str
) -> Watched:
    """``batch_calls`` appends of ``batch_size`` events, watched from the server side."""
    size, calls = ctx.sizes.batch_size, ctx.sizes.batch_calls

    async def batch(call: int) -> None:
        await store.events.append(
            [make_event(profile_id, f"evt_b{call}_{k}", k) for k in range(size)]
        )

    tx_before, retries_before = writer_counters(store)
    async with WriterProbe(pgp.server_url(), application_name) as probe:
        measured = await run_async(label, batch, calls, items_per_op=size, writes=True)
    tx_after, retries_after = writer_counters(store)
    return Watched(
        ctx.record(measured),
        probe.result,
        measured.ops + warmup_count(calls),
        _delta(tx_after, tx_before),
        _delta(retries_after, retries_before),
    )


async def fresh_batches(ctx: Context, pgp: Any) -> Watched:
    """9c's loop again, on a store that nothing else has written to."""
    async with (
        pgp.own_schema("ksf") as schema,
        open_store(pgp.keepstone_url(schema, schema)) as store,
    ):
        profile = await store.memory.create_profile("bench")
        watched = await batch_loop(
            ctx,
            pgp,
            store,
            profile.id,
            f"keepstone pg events.append([{ctx.sizes.batch_size} events]), fresh store",
            schema,
        )
    ctx.extra["postgres_batch_fresh"] = watched.as_dict()
    return watched


def diagnostic_rows(batch: Watched, fresh: Watched) -> list[Row]:
    """9g-9i: what 9c's time went to, and the same loop on a fresh store."""
    m, probe = batch.measured, batch.probe
    latency = ", ".join(
        f"{name} {fmt_seconds(value)}"
        for name, value in (
            ("p50", m.p50),
            ("p90", m.percentile(90)),
            ("p99", m.percentile(99)),
            ("max", max(m.latencies, default=float("nan"))),
        )
    )
    commits = (
        f"{batch.calls} calls with warm-up → "
        f"{'n/a' if batch.transactions is None else batch.transactions} transactions, "
        f"{'n/a' if batch.retries is None else batch.retries} retries (writer counters)"
    )
    wal = "n/a" if probe.wal_bytes is None else fmt_bytes(probe.wal_bytes / batch.calls)
    checkpoints = "n/a" if probe.checkpoints is None else str(probe.checkpoints)
    server = (
        f"writer session: {probe.shares()}; server-wide: WAL {wal}/call, "
        f"{checkpoints} checkpoint(s) started"
    )
    fresh_note = (
        f"fresh ÷ 9c; fresh: server CPU {fresh.server_cpu_per_event()} µs/ev, "
        f"writer session: {fresh.probe.shares(3)}"
    )
    return [
        info_row(
            "9g",
            ROWS["9g"],
            latency,
            note=commits,
            data={
                "p50_s": m.p50,
                "p90_s": m.percentile(90),
                "p99_s": m.percentile(99),
                "max_s": max(m.latencies, default=None),
                "calls": batch.calls,
                "transactions": batch.transactions,
                "retries": batch.retries,
            },
        ),
        info_row(
            "9h",
            ROWS["9h"],
            f"server CPU {batch.server_cpu_per_event()} µs/ev",
            note=server,
            data=batch.as_dict(),
        ),
        info_ratio_row("9i", ROWS["9i"], fresh.measured, m, "9c", fresh_note),
    ]


async def keepstone_side(
    ctx: Context, pgp: Any, store: Any, application_name: str
) -> tuple[dict[str, Measurement], Watched]:
    """keepstone's loops on one store, in the order of the module docstring;
    also what the server probe saw during 9c."""
    sizes = ctx.sizes
    out: dict[str, Measurement] = {}
    profile = await store.memory.create_profile("bench")

    async def append(i: int) -> None:
        await store.events.append([make_event(profile.id, f"evt_a{i}", i)])

    out["append"] = ctx.record(
        await run_async(
            "keepstone pg events.append([1 event])", append, sizes.append_one, writes=True
        )
    )

    callers = sizes.concurrent_callers
    per_caller = max(1, sizes.concurrent_events // callers)

    async def caller(prefix: str, c: int, count: int) -> None:
        for k in range(count):
            await store.events.append([make_event(profile.id, f"evt_{prefix}{c}_{k}", k)])

    await asyncio.gather(*(caller("w", c, 2) for c in range(callers)))
    tx_before, retries_before = writer_counters(store)
    with Stopwatch() as sw:
        await asyncio.gather(*(caller("c", c, per_caller) for c in range(callers)))
    out["concurrent"] = ctx.record(
        sw.measurement(f"keepstone pg append, {callers} callers", callers * per_caller, writes=True)
    )
    tx_after, retries_after = writer_counters(store)
    ctx.extra["postgres_group_commit"] = {
        "batches": callers * per_caller,
        "transactions": _delta(tx_after, tx_before),
        "retries": _delta(retries_after, retries_before),
    }

    # 9c: right after 9b, on the same store (see the module docstring).
    watched = await batch_loop(
        ctx,
        pgp,
        store,
        profile.id,
        f"keepstone pg events.append([{sizes.batch_size} events])",
        application_name,
    )
    out["batch"] = watched.measured
    ctx.extra["postgres_batch"] = watched.as_dict()

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
    out["replay"] = ctx.record(sw.measurement("keepstone pg events.iterate", count))

    run_ = await store.runs.create("bench")

    async def put(i: int) -> None:
        await store.runs.save_snapshot(run_.id, state_of(SNAPSHOT_SIZE, i))

    async def get(_: int) -> None:
        await store.runs.latest_snapshot(run_.id)

    out["put"] = ctx.record(
        await run_async("keepstone pg save_snapshot 2 KiB", put, sizes.snapshot_puts, writes=True)
    )
    out["get"] = ctx.record(
        await run_async("keepstone pg latest_snapshot 2 KiB", get, sizes.snapshot_gets)
    )
    return out, watched


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
                    writes=True,
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
                sw.measurement(
                    f"eventsourcing pg save(1), {callers} callers",
                    callers * per_caller,
                    writes=True,
                )
            )
            size = sizes.batch_size
            out["batch"] = ctx.record(
                run_sync(
                    f"eventsourcing pg save({size} pending events)",
                    lambda _: es.save_batch(app, agg, [payload_data(k) for k in range(size)]),
                    sizes.batch_calls,
                    items_per_op=size,
                    writes=True,
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
            out["replay"] = ctx.record(sw.measurement("eventsourcing pg replay", count))
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
                await run_async(
                    "AsyncPostgresSaver.aput 2 KiB", aput, sizes.snapshot_puts, writes=True
                )
            )
            out["get"] = ctx.record(
                await run_async("AsyncPostgresSaver.aget_tuple 2 KiB", aget, sizes.snapshot_gets)
            )
    except ImportError as exc:
        ctx.say(f"    langgraph postgres: {NOT_INSTALLED} ({exc})")
    return out
