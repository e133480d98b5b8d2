"""Scenario 5: run snapshot put (~2 KB and ~20 KB of state) and get-latest,
keepstone against langgraph's SqliteSaver (put, get_tuple) and
AsyncSqliteSaver (aput, aget_tuple).

Every put changes every part of the state, so keepstone's part-level
deduplication saves nothing here (scenario 6 measures that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.context import Context
from bench.keepstone_side import open_store
from bench.report import NOT_INSTALLED, Row, fmt_bytes, latency_ratio_row, ratio_row
from bench.timing import Measurement, run_async, run_sync

NAME = "snapshots"
TITLE = "5. run snapshot put and get-latest"
ROWS = {
    "5a": "snapshot put ~2 KiB vs SqliteSaver.put",
    "5b": "snapshot put ~2 KiB vs AsyncSqliteSaver.aput",
    "5c": "snapshot put ~20 KiB vs SqliteSaver.put",
    "5d": "snapshot put ~20 KiB vs AsyncSqliteSaver.aput",
    "5e": "latest snapshot ~2 KiB vs aget_tuple",
    "5f": "latest snapshot ~20 KiB vs aget_tuple",
    "5g": "latest snapshot ~2 KiB vs get_tuple",
    "5h": "latest snapshot ~20 KiB vs get_tuple",
}
FILLER = "the agent summarised the page and queued two follow-up questions; " * 20
PUT_GOALS = (("put", "SqliteSaver.put", 1.5), ("aput", "AsyncSqliteSaver.aput", 3.0))
"""keepstone's puts per second over each peer's: at least this much."""
GET_GOALS = (("aget", "aget_tuple", 0.25), ("get", "get_tuple", 1.0))
"""keepstone's median get-latest latency over each peer's: at most this much
(rows 5e-5f for aget_tuple, then 5g-5h for get_tuple, so that the ids of
the older rows keep their meaning)."""


def state_of(size: int, i: int) -> dict[str, Any]:
    """A state of about ``size`` bytes of JSON whose every part changes with ``i``."""
    per_message = 200
    messages = [
        f"{i:08d}:{m:03d} " + FILLER[: per_message - 13] for m in range(size // per_message)
    ]
    return {"step": i, "messages": messages, "scratch": {"cursor": i, "done": i % 7 == 0}}


Results = dict[str, Measurement | None]
"""Per size: ``ks_put``, ``ks_get`` and the peer's ``put``, ``get``, ``aput``, ``aget``."""


async def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    letters = iter("abcdefghijklmnop")
    results = [(size, await one_size(ctx, size)) for size in ctx.sizes.snapshot_sizes]
    for size, found in results:
        tag = f"~{fmt_bytes(size)}"
        for key, name, goal in PUT_GOALS:
            rows.append(
                ratio_row(
                    f"5{next(letters)}",
                    f"snapshot put {tag} vs {name}",
                    found["ks_put"],
                    found[key],
                    name,
                    goal,
                    per="ops",
                    unit=" puts/s",
                )
            )
    for key, name, goal in GET_GOALS:
        for size, found in results:
            rows.append(
                latency_ratio_row(
                    f"5{next(letters)}",
                    f"latest snapshot ~{fmt_bytes(size)} vs {name}",
                    found["ks_get"],
                    found[key],
                    name,
                    goal,
                )
            )
    return rows


async def one_size(ctx: Context, size: int) -> Results:
    """keepstone's put and get, SqliteSaver's and AsyncSqliteSaver's."""
    puts, gets = ctx.sizes.snapshot_puts, ctx.sizes.snapshot_gets
    tag = fmt_bytes(size)
    found: Results = {}
    with ctx.workdir(f"{NAME}-{size}") as work:
        async with open_store(ctx.keepstone_url(work)) as store:
            run_ = await store.runs.create("bench")

            async def put(i: int) -> None:
                await store.runs.save_snapshot(run_.id, state_of(size, i))

            found["ks_put"] = ctx.record(
                await run_async(f"keepstone save_snapshot {tag}", put, puts, writes=True)
            )

            async def get(_: int) -> None:
                await store.runs.latest_snapshot(run_.id)

            found["ks_get"] = ctx.record(
                await run_async(f"keepstone latest_snapshot {tag}", get, gets)
            )

        lg = ctx.peer("langgraph")
        if lg is None:
            ctx.say(f"    langgraph: {NOT_INSTALLED}")
            return found | {"put": None, "get": None, "aput": None, "aget": None}
        found["put"], found["get"] = langgraph_sync(ctx, lg, work / "lg-sync.db", size, puts, gets)
        found["aput"], found["aget"] = await langgraph_async(
            ctx, lg, work / "lg-async.db", size, puts, gets
        )
    return found


def langgraph_sync(
    ctx: Context, lg: Any, path: Path, size: int, puts: int, gets: int
) -> tuple[Measurement, Measurement]:
    tag = fmt_bytes(size)
    with lg.sync_saver(path) as saver:
        ctx.settings["langgraph SqliteSaver"] = lg.durability(saver)
        thread = lg.Thread(saver, "bench")
        put = ctx.record(
            run_sync(
                f"SqliteSaver.put {tag}",
                lambda i: thread.put(state_of(size, i)),
                puts,
                writes=True,
            )
        )
        get = ctx.record(
            run_sync(f"SqliteSaver.get_tuple {tag}", lambda _: thread.get_latest(), gets)
        )
    return put, get


async def langgraph_async(
    ctx: Context, lg: Any, path: Path, size: int, puts: int, gets: int
) -> tuple[Measurement, Measurement]:
    tag = fmt_bytes(size)
    async with lg.async_saver(path) as saver:
        thread = lg.Thread(saver, "bench")

        async def aput(i: int) -> None:
            await thread.aput(state_of(size, i))

        async def aget(_: int) -> None:
            await thread.aget_latest()

        put = ctx.record(await run_async(f"AsyncSqliteSaver.aput {tag}", aput, puts, writes=True))
        get = ctx.record(await run_async(f"AsyncSqliteSaver.aget_tuple {tag}", aget, gets))
    return put, get
