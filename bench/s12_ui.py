"""Scenario 12: the web inspector's pages on a big store, server time.

A store of ``ui_runs`` runs, ``ui_events`` memory events (spread over
profiles of 5,000 events each, the size of a long-lived agent's memory) and
``ui_artifacts`` artifacts is built once through the public API (64
concurrent writers for runs and artifacts, batches of 1,000 events) and,
outside ``--quick``, kept beside the temporary stores (under the
``--store-dir`` parent) so the next run reuses it. Each page is then
rendered by the ASGI app in-process, called directly (no HTTP, no browser):
the figure is the median server time of a page; the goal is 200 ms.
Verifying the audit chain and running the doctor walk the whole store:
they are actions a person starts, reported with their time and no goal.

The LangGraph thread pages are timed on a thread of ``ui_checkpoints``
checkpoints (a real graph run through ``KeepstoneSaver``, then forked near
its end with time travel), added to the same store once.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keepstone
from bench.context import QUICK, Context
from bench.keepstone_side import open_store
from bench.report import Row, fmt_seconds, info_row, max_value_row, skip_row
from bench.timing import run_async
from keepstone.schemas import ArtifactQuery, MemoryEvent, Provenance
from keepstone.schemas.memory import CustomEvent, EdgePut, NodePut

NAME = "ui"
TITLE = "12. inspector pages on a big store (server time)"
GOAL_S = 0.2
EVENTS_PER_PROFILE = 5_000
NODES_PER_PROFILE = 300
FORMAT = 1
"""Bump when the shape of the built store changes (invalidates the cache)."""

PAGES: list[tuple[str, str, Callable[[dict[str, str]], str]]] = [
    ("12a", "overview", lambda ids: "/"),
    ("12b", "runs, newest first", lambda ids: "/runs"),
    ("12c", "runs, filtered by name and status", lambda ids: "/runs?name=etl-3&status=failed"),
    ("12d", "runs, filtered by label", lambda ids: "/runs?label=team%3Dteam-7"),
    ("12e", "runs, an older page", lambda ids: f"/runs?before={ids['runs_before']}"),
    ("12f", "a run (timeline, outputs, logs)", lambda ids: f"/runs/{ids['run']}"),
    ("12g", "a run's logs, level filter", lambda ids: f"/runs/{ids['run']}/logs?level=info"),
    ("12h", "artifacts", lambda ids: "/artifacts"),
    ("12i", "artifact search with snippets", lambda ids: f"/artifacts?q={ids['word']}"),
    ("12j", "an artifact (revisions, content)", lambda ids: f"/artifacts/{ids['artifact']}"),
    ("12k", "an artifact's revision diff", lambda ids: f"/artifacts/{ids['artifact']}/diff"),
    ("12l", "lineage graph data", lambda ids: f"/api/lineage?kind=run&id={ids['run']}&depth=2"),
    ("12m", "memory profiles", lambda ids: "/memory"),
    ("12n", "a profile (graph view)", lambda ids: f"/memory/{ids['profile']}"),
    ("12o", "memory graph data (stored)", lambda ids: f"/api/memory/{ids['profile']}/graph"),
    (
        "12p",
        "memory graph data as of a seq (replay)",
        lambda ids: f"/api/memory/{ids['profile']}/graph?as_of={ids['mid_seq']}",
    ),
    (
        "12q",
        "memory graph data on a path",
        lambda ids: f"/api/memory/{ids['profile']}/graph?path={ids['path']}",
    ),
    ("12r", "path tree", lambda ids: f"/memory/{ids['profile']}/paths"),
    ("12s", "event log, kind filter", lambda ids: f"/memory/{ids['profile']}/events?kind=edge.put"),
    (
        "12t",
        "a memory node and its history",
        lambda ids: f"/memory/{ids['profile']}/nodes/{ids['node']}",
    ),
    ("12u", "audit chain, newest first", lambda ids: "/audit"),
    ("12v", "audit chain, filtered by action", lambda ids: "/audit?action=artifact.create"),
]
ACTIONS = [
    ("12w", "verify the audit chain (an action)", "/audit/verify/_result"),
    ("12x", "doctor, quick (an action)", "/audit/doctor/_result"),
]
THREAD_TREE = ("12y", "LangGraph thread: checkpoint tree")
THREAD_OTHERS = ("12z", "LangGraph threads: list, a checkpoint's state, a diff, a whole value")
THREAD_PAGES: list[tuple[str, Callable[[dict[str, str]], str]]] = [
    ("list", lambda ids: "/langgraph"),
    ("state", lambda ids: f"/langgraph/threads/{ids['thread']}?checkpoint={ids['mid']}"),
    ("diff", lambda ids: f"/langgraph/diff/{ids['thread']}?a={ids['first']}&b={ids['last']}"),
    (
        "value",
        lambda ids: f"/langgraph/value/{ids['thread']}?checkpoint={ids['mid']}&channel=text",
    ),
]
ROWS = (
    {row_id: desc for row_id, desc, _ in PAGES}
    | {a: d for a, d, _ in ACTIONS}
    | dict([THREAD_TREE, THREAD_OTHERS])
)


async def call(app: Any, target: str) -> tuple[int, bytes]:
    """One GET through the ASGI app, in-process."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _counts(ctx: Context) -> tuple[int, int, int]:
    sizes = ctx.sizes
    return sizes.ui_runs, sizes.ui_events, sizes.ui_artifacts


async def build(ctx: Context, store: keepstone.Store) -> None:
    runs, events, artifacts = _counts(ctx)
    started = time.perf_counter()
    ctx.say(f"    building: {runs:,} runs, {artifacts:,} artifacts, {events:,} events")
    run_ids: list[str] = [""] * runs
    todo = iter(range(runs))

    async def run_writer() -> None:
        for i in todo:
            run = await store.runs.create(
                f"etl-{i % 10}", params={"n": i}, labels={"team": f"team-{i % 50}"}
            )
            await store.runs.transition(run.id, "running")
            if i % 100 == 0:  # some runs with steps and logs
                await store.runs.set_step(run.id, "extract", "running")
                await store.logs.write(run.id, "extract.started", message=f"run {i}")
                await store.runs.set_step(run.id, "extract", "succeeded")
            await store.runs.transition(run.id, "failed" if i % 7 == 0 else "succeeded")
            run_ids[i] = run.id

    await asyncio.gather(*(run_writer() for _ in range(64)))
    ctx.say(f"    runs done ({time.perf_counter() - started:.0f} s)")
    collections = [await store.artifacts.create_collection(f"c{k}") for k in range(10)]
    todo = iter(range(artifacts))

    async def artifact_writer() -> None:
        for i in todo:
            run_id = run_ids[(i * 7) % runs]
            art = await store.artifacts.create(
                collections[i % 10].id,
                f"doc-{i:07d}",
                f"Report {i} mentions u{i}x and the nightly numbers.\n",
                provenance=Provenance(run_id=run_id, step="extract"),
            )
            if i % 50 == 0:
                await store.artifacts.update(art.id, f"Report {i}, revised: u{i}x.\n")

    await asyncio.gather(*(artifact_writer() for _ in range(64)))
    ctx.say(f"    artifacts done ({time.perf_counter() - started:.0f} s)")
    profiles = max(1, events // EVENTS_PER_PROFILE)
    per_profile = events // profiles
    now = datetime.now(UTC)
    for p in range(profiles):
        prof = await store.memory.create_profile(f"agent-{p}")
        main = await store.memory.create_path(prof.id, name="main")
        batch: list[MemoryEvent] = []
        for i in range(per_profile):
            node = f"n{p}_{i % NODES_PER_PROFILE}"
            payload: Any
            if i < NODES_PER_PROFILE or i % 5 == 0:
                payload = NodePut(node_id=node, node_kind=f"k{i % 4}", content=f"fact {i}")
            elif i % 5 == 1:
                payload = EdgePut(
                    edge_id=f"e{p}_{i % 500}",
                    source_id=node,
                    target_id=f"n{p}_{(i * 13) % NODES_PER_PROFILE}",
                    edge_kind="rel",
                )
            else:
                payload = CustomEvent(name="turn", data={"i": i})
            batch.append(
                MemoryEvent(
                    id=f"ev{p}_{i}",
                    profile_id=prof.id,
                    path_id=main.id if i % 2 else None,
                    at=now,
                    payload=payload,
                )
            )
            if len(batch) == 1000:
                await store.events.append(batch)
                batch = []
        if batch:
            await store.events.append(batch)
        await store.memory.create_path(prof.id, name="branch", parent_path_id=main.id)
    ctx.say(f"    events done ({time.perf_counter() - started:.0f} s)")


async def pick_ids(ctx: Context, store: keepstone.Store) -> dict[str, str]:
    from keepstone.schemas import EventQuery, RunQuery
    from keepstone.ui.paging import newest_runs

    first = await newest_runs(store, RunQuery(), before=None, n=50, now=datetime.now(UTC))
    logged = await store.runs.list(RunQuery(name="etl-0"), limit=1)
    art = (await store.artifacts.query(ArtifactQuery(name="doc-0000050"), limit=1)).items[0]
    profiles = (await store.memory.list_profiles(limit=1)).items
    prof = profiles[0]
    path = (await store.memory.list_paths(prof.id, limit=1)).items[0]
    events = (await store.events.list(EventQuery(profile_id=prof.id), limit=2500)).items
    return {
        "runs_before": first.before or "",
        "run": logged.items[0].id,
        "artifact": art.id,
        "profile": prof.id,
        "path": path.id,
        "mid_seq": str(events[-1].seq),
        "node": "n0_7",
        "word": f"u{min(12_345, ctx.sizes.ui_artifacts - 1)}x",
    }


def _cache_dir(ctx: Context) -> Path | None:
    if ctx.sizes.ui_runs <= QUICK.ui_runs or ctx.backend != "sqlite":
        return None  # small stores are cheap to build; only SQLite survives the process
    runs, events, artifacts = _counts(ctx)
    return ctx.root.parent / "keepstone-bench-ui-cache" / f"v{FORMAT}-{runs}-{events}-{artifacts}"


async def run(ctx: Context) -> list[Row]:
    try:
        from keepstone.ui import create_app
    except ImportError as exc:
        note = f"the ui extra is not installed ({exc})"
        return [skip_row(i, d, "≤ 200 ms", note) for i, d in ROWS.items()]
    cache = _cache_dir(ctx)
    with ctx.workdir(NAME) as work:
        if cache is not None:
            url = f"sqlite:///{(cache / 'store.db').resolve()}"
            if not (cache / "complete").exists():
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir(parents=True)
                async with open_store(url) as store:
                    await build(ctx, store)
                (cache / "complete").write_text(f"keepstone {keepstone.__version__}\n")
            else:
                ctx.say(f"    reusing the store built before in {cache}")
        else:
            url = ctx.keepstone_url(work)
        async with open_store(url) as store:
            if cache is None:
                await build(ctx, store)
            app = create_app(store=store)
            ids = await pick_ids(ctx, store)
            rows = await measure(ctx, app, ids)
            return rows + await measure_thread(ctx, store, app)


async def build_thread(ctx: Context, store: keepstone.Store) -> dict[str, str] | str:
    """The thread the LangGraph pages are timed on (made once per store):
    its id and three of its checkpoints, or why there is none."""
    try:
        from typing import TypedDict

        from langgraph.graph import END, START, StateGraph

        from keepstone.langgraph import KeepstoneSaver
        from keepstone.langgraph.inspect import ThreadInspector
    except ImportError as exc:
        return f"LangGraph is not installed ({exc})"
    size = ctx.sizes.ui_checkpoints
    thread_id = f"bench-thread-{size}"
    reader = ThreadInspector(store)
    try:
        await reader.thread(thread_id)
    except keepstone.StorageError as exc:
        if exc.code != "not_found":
            raise

        class Count(TypedDict):
            n: int
            text: str

        builder = StateGraph(Count)
        builder.add_node("step", lambda s: {"n": s["n"] + 1, "text": s["text"] + "x"})
        builder.add_edge(START, "step")
        builder.add_conditional_edges("step", lambda s: END if s["n"] >= size - 2 else "step")
        graph = builder.compile(checkpointer=KeepstoneSaver(store))
        config: Any = {"configurable": {"thread_id": thread_id}, "recursion_limit": size + 10}
        started = time.perf_counter()
        await graph.ainvoke({"n": 0, "text": ""}, config)
        history = [s async for s in graph.aget_state_history(config)]
        fork = await graph.aupdate_state(history[3].config, {"n": size - 4})  # time travel
        await graph.ainvoke(None, {**fork, "recursion_limit": 20})
        ctx.say(f"    thread of {size:,} checkpoints ({time.perf_counter() - started:.0f} s)")
    roots = await reader.history(thread_id)
    line = [roots[0]]
    while line[-1].children:
        line.append(line[-1].children[0])
    return {
        "thread": thread_id,
        "checkpoints": str(sum(1 for _ in _walk(roots))),
        "first": line[0].checkpoint_id,
        "mid": line[len(line) // 2].checkpoint_id,
        "last": line[-1].checkpoint_id,
    }


def _walk(nodes: list[Any]) -> Any:
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


async def measure_thread(ctx: Context, store: keepstone.Store, app: Any) -> list[Row]:
    found = await build_thread(ctx, store)
    if isinstance(found, str):
        return [skip_row(i, d, "≤ 200 ms", found) for i, d in (THREAD_TREE, THREAD_OTHERS)]

    async def median(path: str) -> float:
        async def op(i: int) -> Any:
            status, body = await call(app, path)
            if status != 200:
                raise AssertionError(f"{path}: {status} {body[:300]!r}")
            return body

        return ctx.record(
            await run_async(f"ui page {path}", op, 20, warmup=2, max_seconds=10.0)
        ).p50

    size = f"{int(found['checkpoints']):,} checkpoints"
    tree = f"/langgraph/threads/{found['thread']}"
    rows = [
        max_value_row(
            THREAD_TREE[0],
            f"page: {THREAD_TREE[1]} ({size})",
            await median(tree),
            GOAL_S,
            fmt_seconds,
            note=tree,
        )
    ]
    times = {name: await median(path_of(found)) for name, path_of in THREAD_PAGES}
    slowest = max(times, key=lambda k: times[k])
    note = ", ".join(f"{k} {fmt_seconds(v)}" for k, v in times.items()) + f"; slowest: {slowest}"
    rows.append(
        max_value_row(
            THREAD_OTHERS[0],
            f"page: {THREAD_OTHERS[1]}",
            times[slowest],
            GOAL_S,
            fmt_seconds,
            note=note,
        )
    )
    return rows


async def measure(ctx: Context, app: Any, ids: dict[str, str]) -> list[Row]:
    rows: list[Row] = []
    for row_id, desc, path_of in PAGES:
        target = path_of(ids)

        async def op(i: int, target: str = target) -> Any:
            status, body = await call(app, target)
            if status != 200:
                raise AssertionError(f"{target}: {status} {body[:300]!r}")
            return body

        m = ctx.record(await run_async(f"ui page {desc}", op, 20, warmup=2, max_seconds=10.0))
        rows.append(max_value_row(row_id, f"page: {desc}", m.p50, GOAL_S, fmt_seconds, note=target))
    for row_id, desc, target in ACTIONS:
        started = time.perf_counter()
        status, _ = await call(app, target)
        took = time.perf_counter() - started
        rows.append(info_row(row_id, desc, fmt_seconds(took), note=f"HTTP {status}, one call"))
    return rows
