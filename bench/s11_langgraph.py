"""Scenario 11: a LangGraph graph checkpointed by KeepstoneSaver beside
LangGraph's own savers.

The same graph runs on every saver: one node looping ``storage_steps``
times over a state with a 1 MiB constant document, a 2 KiB scratch text
that changes every step, a counter and a list of notes that grows by one
each step. Each step is one checkpoint ``put`` and one ``put_writes``, as
LangGraph makes them. Measured per saver: graph steps per second, the
latency of ``aget_tuple`` of the latest checkpoint, one ``alist`` of the
whole thread, and the bytes on disk after closing (a 2-step warm-up
thread, run first on each saver so that no saver pays LangGraph's own
first-run costs, is included). KeepstoneSaver runs on
the harness's keepstone backend (SQLite by default) beside ``SqliteSaver``
and ``AsyncSqliteSaver``, and on PostgreSQL beside ``AsyncPostgresSaver``
when the server is reachable.
"""

from __future__ import annotations

import contextlib
import operator
import statistics
from typing import Annotated, Any, TypedDict

from bench.context import Context
from bench.keepstone_side import on_disk
from bench.peer_raw import disk_bytes
from bench.report import (
    INFO,
    NOT_INSTALLED,
    Row,
    fmt_bytes,
    info_ratio_row,
    latency_ratio_row,
    max_value_row,
    ratio_row,
    skip_row,
)
from bench.s6_storage import text_of
from bench.timing import Measurement, Stopwatch, run_async, run_sync, timed

NAME = "langgraph"
TITLE = (
    "11. a LangGraph graph: KeepstoneSaver beside SqliteSaver, AsyncSqliteSaver, AsyncPostgresSaver"
)
ROWS = {
    "11a": "graph steps/s vs AsyncSqliteSaver",
    "11b": "graph steps/s vs SqliteSaver",
    "11c": "aget_tuple (latest) vs AsyncSqliteSaver",
    "11d": "list of the whole thread vs AsyncSqliteSaver",
    "11e": "bytes on disk vs SqliteSaver",
    "11f": "pg graph steps/s vs AsyncPostgresSaver",
    "11g": "pg list of the whole thread vs AsyncPostgresSaver",
}
GOALS = {"11a": 1.5, "11d": 3.0, "11e": 0.1, "11f": 1.5, "11g": 3.0}
CONSTANT = 1 << 20
CHANGING = 2048


class State(TypedDict):
    doc: str
    scratch: str
    counter: int
    notes: Annotated[list[str], operator.add]


def build_graph(steps: int) -> Any:
    from langgraph.graph import END, START, StateGraph

    def step(state: State) -> dict[str, Any]:
        n = state["counter"]
        return {
            "counter": n + 1,
            "scratch": text_of(CHANGING, 1000 + n),
            "notes": [f"step {n}: looked at the document again"],
        }

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: END if s["counter"] >= steps else "step")
    return builder


def inputs() -> dict[str, Any]:
    return {"doc": text_of(CONSTANT, 1), "scratch": "", "counter": 0, "notes": []}


def config(thread: str, steps: int) -> Any:
    return {"configurable": {"thread_id": thread}, "recursion_limit": steps * 2 + 10}


class Figures(dict[str, Measurement]):
    """What one saver measured (``bytes`` aside)."""

    bytes: int | None = None


ROUNDS = 3
"""The savers take turns: each runs the graph once per round, and its
steps/s is its median round, so a load spike on the machine hits every
saver rather than whichever ran at that moment."""


async def run(ctx: Context) -> list[Row]:
    try:
        from bench import peer_langgraph as lg
        from keepstone.langgraph import KeepstoneSaver
    except Exception as exc:  # the langgraph packages are optional
        ctx.say(f"    langgraph: {NOT_INSTALLED} ({exc})")
        return [skip_row(i, d, _goal(i), NOT_INSTALLED) for i, d in ROWS.items()]
    steps = ctx.sizes.storage_steps
    with ctx.workdir(NAME) as work:
        async with contextlib.AsyncExitStack() as stack:
            savers = {
                "keepstone": await stack.enter_async_context(
                    KeepstoneSaver.from_url(ctx.keepstone_url(work))
                ),
                "AsyncSqliteSaver": await stack.enter_async_context(
                    lg.async_saver(work / "lg-async.db")
                ),
                "SqliteSaver": stack.enter_context(lg.sync_saver(work / "lg-sync.db")),
            }
            ctx.settings["langgraph SqliteSaver (graph)"] = lg.durability(savers["SqliteSaver"])
            figures = await _compare(ctx, savers, steps, sync={"SqliteSaver"})
        ks, aio, sync = figures["keepstone"], figures["AsyncSqliteSaver"], figures["SqliteSaver"]
        ks.bytes = disk_bytes(work / "keepstone") if on_disk(ctx.backend) else None
        sync.bytes = sum(disk_bytes(p) for p in work.iterdir() if p.name.startswith("lg-sync"))
    pg, pg_note = await _postgres(ctx, KeepstoneSaver, steps)
    ctx.extra["langgraph"] = {
        "steps": steps,
        "rounds": ROUNDS,
        "keepstone_bytes": ks.bytes,
        "sqlite_saver_bytes": sync.bytes,
    }
    ctx.say(f"    bytes on disk: keepstone {ks.bytes}, SqliteSaver {sync.bytes}")
    per = {"per": "ops", "unit": " steps/s"}
    rows = [
        ratio_row("11a", ROWS["11a"], ks["steps"], aio["steps"], "AsyncSqliteSaver", 1.5, **per),
        info_ratio_row(
            "11b", ROWS["11b"], ks["steps"], sync["steps"], "SqliteSaver", "reference", **per
        ),
        _latency_info("11c", ks["get"], aio["get"], "AsyncSqliteSaver.aget_tuple"),
        ratio_row(
            "11d",
            ROWS["11d"],
            ks["list"],
            aio["list"],
            "AsyncSqliteSaver",
            3.0,
            per="ops",
            unit=" lists/s",
        ),
        max_value_row(
            "11e",
            f"{ROWS['11e']} ({ROUNDS} × {steps} steps, {fmt_bytes(CONSTANT)} constant)",
            ks.bytes,
            0.1 * (sync.bytes or 0),
            fmt_bytes,
            versus=f"SqliteSaver {fmt_bytes(sync.bytes or 0)}",
            note="" if ks.bytes is not None else "memory backend: nothing on disk",
        ),
    ]
    rows[4].goal = "≤ 0.1× SqliteSaver"
    if pg is None:
        rows += [skip_row(i, ROWS[i], _goal(i), pg_note) for i in ("11f", "11g")]
    else:
        pg_ks, pg_lg = pg["keepstone pg"], pg["AsyncPostgresSaver"]
        rows += [
            ratio_row(
                "11f",
                ROWS["11f"],
                pg_ks["steps"],
                pg_lg["steps"],
                "AsyncPostgresSaver",
                1.5,
                **per,
            ),
            ratio_row(
                "11g",
                ROWS["11g"],
                pg_ks["list"],
                pg_lg["list"],
                "AsyncPostgresSaver",
                3.0,
                per="ops",
                unit=" lists/s",
            ),
        ]
    return rows


def _goal(row: str) -> str:
    goal = GOALS.get(row)
    if goal is None:
        return "—"
    return "≤ 0.1× SqliteSaver" if row == "11e" else f"≥ {goal:g}×"


def _latency_info(row: str, ks: Measurement, peer: Measurement, name: str) -> Row:
    """A median latency beside the peer's; the issue sets no goal for it."""
    made = latency_ratio_row(row, ROWS[row], ks, peer, name, 1.0)
    made.goal, made.result = "—", INFO
    return made


async def _invoke(saver: Any, is_sync: bool, steps: int, thread: str) -> float:
    graph = build_graph(steps).compile(checkpointer=saver)
    with Stopwatch() as sw:
        if is_sync:
            state = graph.invoke(inputs(), config(thread, steps))
        else:
            state = await graph.ainvoke(inputs(), config(thread, steps))
    assert state["counter"] == steps and len(state["notes"]) == steps
    return sw.seconds


async def _compare(
    ctx: Context, savers: dict[str, Any], steps: int, *, sync: set[str] = frozenset()
) -> dict[str, Figures]:
    """Each saver runs the graph once per round, in turn; then its reads."""
    for name, saver in savers.items():  # warm up LangGraph and each saver
        await _invoke(saver, name in sync, 2, "warm-up")
    rounds: dict[str, list[float]] = {name: [] for name in savers}
    for r in range(ROUNDS):
        for name, saver in savers.items():
            rounds[name].append(await _invoke(saver, name in sync, steps, f"bench-{r}"))
    out: dict[str, Figures] = {}
    latest = config("bench-0", steps)
    for name, saver in savers.items():
        figures = out[name] = Figures()
        seconds = statistics.median(rounds[name])
        figures["steps"] = ctx.record(timed(f"{name} graph steps (median round)", steps, seconds))
        if name in sync:
            figures["get"] = ctx.record(
                run_sync(f"{name} get_tuple latest", lambda _, s=saver: s.get_tuple(latest), 20)
            )
            continue

        async def get(_: int, saver: Any = saver) -> None:
            await saver.aget_tuple(latest)

        gets = max(10, min(200, ctx.sizes.snapshot_gets // 2))
        figures["get"] = ctx.record(await run_async(f"{name} aget_tuple latest", get, gets))

        async def listing(_: int, saver: Any = saver) -> None:
            found = [t async for t in saver.alist(latest)]
            assert len(found) == steps + 2

        figures["list"] = ctx.record(
            await run_async(f"{name} alist of {steps + 2} checkpoints", listing, 5, warmup=1)
        )
    return out


async def _postgres(
    ctx: Context, saver_cls: Any, steps: int
) -> tuple[dict[str, Figures] | None, str]:
    try:
        from bench import peer_postgres as pgp
    except ImportError as exc:
        return None, f"asyncpg not installed ({exc})"
    reason = await pgp.unreachable()
    if reason is not None:
        return None, reason
    try:
        import langgraph.checkpoint.postgres.aio  # noqa: F401
    except ImportError as exc:
        return None, f"{NOT_INSTALLED} ({exc})"
    async with contextlib.AsyncExitStack() as stack:
        ks_schema = await stack.enter_async_context(pgp.own_schema("lgks"))
        lg_schema = await stack.enter_async_context(pgp.own_schema("lgpg"))
        savers = {
            "keepstone pg": await stack.enter_async_context(
                saver_cls.from_url(pgp.keepstone_url(ks_schema))
            ),
            "AsyncPostgresSaver": await stack.enter_async_context(
                pgp.async_postgres_saver(lg_schema)
            ),
        }
        return await _compare(ctx, savers, steps), ""
