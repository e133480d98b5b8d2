"""Pruning, deleting and expiring threads: dry-run plans, the review gate, the
audit records, the ancestors delta channels need, and generations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

import keepstone
from keepstone.errors import StorageError
from keepstone.langgraph import KeepstoneSaver
from keepstone.schemas import ApprovalMarker, AuditQuery
from tests.langgraph.conftest import pipeline, start

BIG = "0123456789abcdef" * 8192  # 128 KiB


def config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


async def snapshots(store: keepstone.Store, run_id: str) -> list[int]:
    page = await store.runs.list_snapshots(run_id, limit=10_000)
    return [s.number for s in page.items]


async def test_prune_plans_first_then_keeps_the_latest_and_audits(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as store:
        saver = KeepstoneSaver(store)
        graph = pipeline("a", "b", "c").compile(checkpointer=saver)
        await graph.ainvoke({**start(), "messages": [BIG]}, config("p"))
        before = await snapshots(store, "lgt.p")
        latest = await saver.aget_tuple(config("p"))
        assert latest is not None

        plan = await saver.aplan_prune(["p", "nobody"])
        assert [t.thread_id for t in plan.threads] == ["p"]
        assert len(plan.threads[0].remove) == 4 and len(plan.threads[0].keep) == 1
        assert "remove 4" in plan.describe()
        assert await snapshots(store, "lgt.p") == before  # a plan changes nothing

        removed = await saver.aapply(plan)
        assert removed == len(plan.threads[0].snapshots)
        history = [t async for t in saver.alist(config("p"))]
        assert [t.checkpoint["id"] for t in history] == [latest.checkpoint["id"]]
        kept = await saver.aget_tuple(config("p"))
        assert (
            kept is not None
            and kept.checkpoint["channel_values"] == (latest.checkpoint["channel_values"])
        )
        assert kept.checkpoint["channel_values"]["messages"][0] == BIG
        # the large value first stored by a removed snapshot is still referenced:
        # collecting the garbage (the removed headers) leaves the thread whole
        gc = await store.gc.plan()
        assert gc.unreferenced and all(b.size < len(BIG) for b in gc.unreferenced)
        await store.gc.apply(gc, ApprovalMarker(approved_by="ops", reason="gc"))
        assert (await store.diagnose()).ok
        fresh = await KeepstoneSaver(store).aget_tuple(config("p"))
        assert fresh is not None and fresh.checkpoint["channel_values"]["messages"][0] == BIG
        prune = (await store.audit.list(AuditQuery(action="langgraph.prune"))).items
        assert len(prune) == 1 and prune[0].details["checkpoints"] == 4
        assert prune[0].approval is not None
        assert prune[0].approval.reason == "LangGraph keep_latest plan applied"
        assert (await store.audit.list(AuditQuery(action="lifecycle.apply_retention"))).items
        assert (await store.audit.verify()).ok
        # the graph goes on from the kept checkpoint
        out = await graph.ainvoke({"messages": [], "steps": [], "count": 0}, config("p"))
        assert out["count"] == 3 and out["messages"][0] == BIG


async def test_without_an_approval_pruning_is_refused_and_the_refusal_audited(
    sqlite_url: str,
) -> None:
    async with keepstone.open(sqlite_url) as store:
        saver = KeepstoneSaver(store, approval=None)
        await pipeline("a", "b").compile(checkpointer=saver).ainvoke(start(), config("r"))
        before = await snapshots(store, "lgt.r")
        with pytest.raises(StorageError) as info:
            await saver.aprune(["r"])
        assert info.value.code == "review_required"
        with pytest.raises(StorageError):
            await saver.adelete_thread("r")
        assert await snapshots(store, "lgt.r") == before
        denied = (await store.audit.list(AuditQuery(outcome="denied"))).items
        assert len(denied) == 2
        # with an explicit approval the same plan applies
        plan = await saver.aplan_prune(["r"], strategy="delete")
        await saver.aapply(plan, approval=ApprovalMarker(approved_by="ops", reason="cleanup"))
        assert await saver.aget_tuple(config("r")) is None


def extend(state: list[str], writes: list[list[str]]) -> list[str]:
    return [*state, *(item for batch in writes for item in batch)]


class Log(TypedDict):
    log: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=3)]
    n: int


def delta_graph() -> StateGraph[Log]:
    def step(state: Log) -> dict[str, Any]:
        return {"log": [f"e{state['n']}"], "n": state["n"] + 1}

    builder = StateGraph(Log)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: END if s["n"] >= 7 else "step")
    return builder


async def test_keep_latest_keeps_the_ancestors_a_delta_channel_needs(sqlite_url: str) -> None:
    async with KeepstoneSaver.from_url(sqlite_url) as saver:
        graph = delta_graph().compile(checkpointer=saver)
        await graph.ainvoke({"log": [], "n": 0}, config("d"))
        before = (await graph.aget_state(config("d"))).values
        assert before["log"] == [f"e{i}" for i in range(7)]
        # the saver's one-walk history equals LangGraph's generic walk
        mine = await saver.aget_delta_channel_history(config=config("d"), channels=["log", "n"])
        generic = await BaseCheckpointSaver.aget_delta_channel_history(
            saver, config=config("d"), channels=["log", "n"]
        )
        assert mine == generic and mine["log"]["writes"]
        plan = await saver.aplan_prune(["d"])
        (item,) = plan.threads
        assert len(item.keep) == 3  # the latest and its parents back to the last snapshot
        await saver.aapply(plan)
        assert (await graph.aget_state(config("d"))).values == before
        more = await graph.ainvoke({"log": ["x"], "n": 6}, config("d"))
        assert more["log"] == [*before["log"], "x", "e6"]


async def test_delete_thread_leaves_a_tombstone_and_a_new_generation(lg_url: str) -> None:
    async with keepstone.open(lg_url) as store:
        saver = KeepstoneSaver(store)
        graph = pipeline("a").compile(checkpointer=saver)
        await graph.ainvoke(start(), config("gone"))
        await saver.adelete_thread("gone")
        assert await saver.aget_tuple(config("gone")) is None
        assert [t async for t in saver.alist(config("gone"))] == []
        run = await store.runs.get("lgt.gone")
        assert run.status == "cancelled" and run.error is not None
        assert run.error.type == "langgraph.thread_deleted"
        assert await snapshots(store, "lgt.gone") == []
        record = (await store.audit.list(AuditQuery(action="langgraph.delete_thread"))).items
        assert record[0].details["thread_id"] == "gone"
        # the thread id is used again: a new generation, a fresh history
        out = await graph.ainvoke(start(5), config("gone"))
        assert out["count"] == 6
        assert (await store.runs.get("lgt.gone.2")).status == "running"
        assert len([t async for t in saver.alist(config("gone"))]) == 3
        # another worker deleted and reused it: this saver finds the new generation
        other = KeepstoneSaver(store)
        await other.adelete_thread("gone")
        await pipeline("a").compile(checkpointer=other).ainvoke(start(9), config("gone"))
        latest = await saver.aget_tuple(config("gone"))
        assert latest is not None and latest.checkpoint["channel_values"]["count"] == 10


async def test_the_ttl_sweep_removes_idle_threads(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as store:
        saver = KeepstoneSaver(store, ttl=timedelta(hours=1))
        graph = pipeline("a").compile(checkpointer=saver)
        await graph.ainvoke(start(), config("old"))
        await graph.ainvoke(start(), config("fresh"))
        now = datetime.now(UTC)
        assert (await saver.aplan_sweep(now)).threads == []
        later = now + timedelta(hours=2)
        plan = await saver.aplan_sweep(later)
        assert sorted(t.thread_id for t in plan.threads) == ["fresh", "old"]
        assert all(t.delete_thread for t in plan.threads)
        assert await saver.aget_tuple(config("old")) is not None  # still a dry run
        await saver.asweep(later)
        assert await saver.aget_tuple(config("old")) is None
        assert await saver.aget_tuple(config("fresh")) is None
    with pytest.raises(StorageError) as info:
        await KeepstoneSaver(store).aplan_sweep()
    assert info.value.code == "config"


async def test_delete_for_runs_removes_those_checkpoints_and_their_writes(
    sqlite_url: str,
) -> None:
    async with KeepstoneSaver.from_url(sqlite_url) as saver:
        graph = pipeline("a", "b").compile(checkpointer=saver)
        await graph.ainvoke(start(), {**config("m"), "metadata": {"run_id": "run-1"}})
        await graph.ainvoke(start(), {**config("m"), "metadata": {"run_id": "run-2"}})
        runs = [t.metadata.get("run_id") async for t in saver.alist(config("m"))]
        assert runs.count("run-1") == 4 and runs.count("run-2") == 4
        await saver.adelete_for_runs(["run-1"])
        left = [t async for t in saver.alist(config("m"))]
        assert {t.metadata.get("run_id") for t in left} == {"run-2"}
        state = await graph.aget_state(config("m"))
        assert state.values["steps"] == ["a", "b", "a", "b"]
