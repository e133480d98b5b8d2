"""Scenario 10: the filesystem workspace (``file://``) beside its physical limit.

Whatever ``--backend`` says, this scenario runs keepstone's filesystem
backend, against the plain loop any hand-written JSONL log would be: append a
line, fsync. Both sides build the same event per call. The plain loop runs
before and after the keepstone loops and the two runs are averaged, so drift
in the machine's fsync cost does not favour either side.

* 10a: ``store.events.append([1 event])``, the public API: the shared
  domain layer (input validation, the graph fold, the audit draft) plus the
  engine's commit.
* 10b: the engine alone: one ``WriteBatch`` (the event and its audit draft)
  per call, i.e. what the backend itself costs on top of the fsync.
* 10c: 64 concurrent callers (group commit: one journal fsync per group).
* 10d: replay from JSONL: every event's canonical bytes, in seq order, pages of
  5,000 through the engine's cursor (what ``events.iterate`` reads).
* 10e: the same replay decoded into ``MemoryEvent`` (``events.iterate``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from bench.context import Context
from bench.keepstone_side import event_json, make_event, open_store
from bench.peer_raw import JsonlLog
from bench.report import Row, info_row, min_rate_row, ratio_row, with_cpu
from bench.timing import Measurement, Stopwatch, run_async, run_sync, timed
from keepstone.engine.spi import Append, WriteBatch
from keepstone.engine.tables import EVENTS
from keepstone.schemas._base import format_timestamp
from keepstone.schemas.memory import EventQuery

NAME = "fs"
TITLE = "10. filesystem workspace: durable single appends and replay from JSONL"
ROWS = {
    "10a": "fs append 1/call (events.append) vs JSONL+fsync",
    "10b": "fs engine apply 1 event/call vs JSONL+fsync",
    "10c": "fs append 1/call, 64 callers",
    "10d": "fs replay from JSONL (canonical rows)",
    "10e": "fs replay events.iterate → MemoryEvent",
}
CALLERS = 64
LOAD_BATCH = 1000
PAGE = 5000


def _url(directory: Path) -> str:
    return f"file://{directory.resolve()}"


def _draft(profile_id: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "at": format_timestamp(make_event(profile_id, "evt_x", 0).at),
        "actor": "bench",
        "action": "events.append",
        "target": profile_id,
        "outcome": "applied",
        "approval": None,
        "details": {"count": 1},
    }


def plain_loop(work: Path, tag: str, profile_id: str, n: int) -> Measurement:
    log = JsonlLog(work / f"plain-{tag}.jsonl")
    try:
        return run_sync(
            f"JSONL line + fsync ({tag})",
            lambda i: log.append(event_json(make_event(profile_id, f"evt_{tag}{i}", i))),
            n,
            writes=True,
        )
    finally:
        log.close()


async def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.append_one
    with ctx.workdir(NAME) as work:
        before = plain_loop(work, "before", "prf_bench", n)
        async with open_store(_url(work / "ws")) as store:
            profile = await store.memory.create_profile("bench")
            engine: Any = store.backend.engine  # type: ignore[attr-defined]

            async def append(i: int) -> None:
                await store.events.append([make_event(profile.id, f"evt_a{i}", i)])

            api = ctx.record(await run_async("fs events.append([1 event])", append, n, writes=True))

            async def apply(i: int) -> None:
                row = make_event(profile.id, f"evt_e{i}", i).model_dump(mode="json")
                batch = WriteBatch([Append(EVENTS, row, idempotent=True)], [_draft(profile.id)])
                await engine.apply(batch)

            eng = ctx.record(
                await run_async("fs engine.apply(1 event + audit)", apply, n, writes=True)
            )
            concurrent = await many_callers(ctx, store, profile.id, n)
        after = plain_loop(work, "after", "prf_bench", n)
        ctx.record(before)
        ctx.record(after)
        plain = timed(
            "JSONL line + fsync (mean of before and after)",
            before.ops + after.ops,
            before.seconds + after.seconds,
            cpu_seconds=(before.cpu_seconds or 0.0) + (after.cpu_seconds or 0.0),
            writes=True,
        )
        raw, typed = await replay(ctx, work / "replay")
    return [
        ratio_row("10a", ROWS["10a"], api, plain, "JSONL line + fsync", 0.8),
        ratio_row("10b", ROWS["10b"], eng, plain, "JSONL line + fsync", 0.8),
        with_cpu(
            info_row(
                "10c",
                ROWS["10c"],
                f"{concurrent.items_per_s:,.0f} ev/s",
                f"JSONL+fsync {plain.items_per_s:,.0f} ev/s",
                "one journal fsync per group of callers",
            ),
            concurrent,
            plain,
        ),
        min_rate_row("10d", ROWS["10d"], raw, 250_000),
        info_row(
            "10e",
            ROWS["10e"],
            f"{typed.items_per_s:,.0f} ev/s",
            f"raw rows {raw.items_per_s:,.0f} ev/s",
            "the rest is MemoryEvent validation (pydantic, shared by every backend)",
        ),
    ]


async def many_callers(ctx: Context, store: Any, profile_id: str, n: int) -> Measurement:
    total = max(CALLERS, n * 4)
    per = total // CALLERS

    async def caller(c: int) -> None:
        for i in range(per):
            await store.events.append([make_event(profile_id, f"evt_c{c}_{i}", i)])

    with Stopwatch() as sw:
        await asyncio.gather(*(caller(c) for c in range(CALLERS)))
    return ctx.record(
        sw.measurement(f"fs events.append, {CALLERS} callers", per * CALLERS, writes=True)
    )


async def replay(ctx: Context, directory: Path) -> tuple[Measurement, Measurement]:
    count = ctx.sizes.replay_events
    async with open_store(_url(directory)) as store:
        profile = await store.memory.create_profile("bench")
        for start in range(0, count, LOAD_BATCH):
            stop = min(count, start + LOAD_BATCH)
            await store.events.append(
                [make_event(profile.id, f"evt_{i}", i) for i in range(start, stop)]
            )
    # Reopen: the replay reads what is on disk, through the index loaded at open.
    async with open_store(_url(directory)) as store:
        engine: Any = store.backend.engine  # type: ignore[attr-defined]
        where = {"profile_id": profile.id}

        async def rows() -> int:
            seen, after = 0, None
            while True:
                page = await engine.find(EVENTS, where, order=("seq",), after=after, limit=PAGE)
                seen += len(page)
                if len(page) < PAGE:
                    return seen
                last = orjson.loads(page[-1])
                after = (last["seq"], last["id"])

        async def typed() -> int:
            return sum([1 async for _ in store.events.iterate(EventQuery(profile_id=profile.id))])

        await rows()
        with Stopwatch() as sw:
            seen = await rows()
        raw = ctx.record(sw.measurement("fs replay: canonical rows from JSONL", seen))
        await typed()
        with Stopwatch() as sw:
            seen = await typed()
        decoded = ctx.record(sw.measurement("fs replay: events.iterate → MemoryEvent", seen))
    return raw, decoded
