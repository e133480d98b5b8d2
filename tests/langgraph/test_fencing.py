"""Two workers on one thread: the loser gets a clear conflict, nothing of the
winner is lost and the thread's history does not interleave."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6

import keepstone
from keepstone.errors import StorageError
from keepstone.langgraph import KeepstoneSaver
from tests.langgraph.conftest import slow_pipeline, start


def config(thread: str, checkpoint_id: str | None = None) -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def checkpoint(step: int) -> Any:
    cp = empty_checkpoint()
    cp["id"] = str(uuid6(clock_seq=step))
    return cp


async def put(saver: KeepstoneSaver, parent: str | None, step: int) -> str:
    cfg = await saver.aput(
        config("t", parent), checkpoint(step), {"source": "loop", "step": step}, {}
    )
    return str(cfg["configurable"]["checkpoint_id"])


def linear(tuples: list[Any]) -> bool:
    for newer, older in itertools.pairwise(tuples):
        parent = newer.parent_config and newer.parent_config["configurable"]["checkpoint_id"]
        if parent != older.config["configurable"]["checkpoint_id"]:
            return False
    return True


async def test_a_worker_that_loaded_a_stale_head_cannot_fork_the_thread(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as one, keepstone.open(sqlite_url) as two:
        a, b = KeepstoneSaver(one), KeepstoneSaver(two)
        first = await put(a, None, 0)
        assert (await b.aget_tuple(config("t"))).config["configurable"]["checkpoint_id"] == first
        assert (await a.aget_tuple(config("t"))) is not None
        second = await put(a, first, 1)  # a moves on
        with pytest.raises(StorageError) as info:
            await put(b, first, 1)  # b still believes `first` is the latest
        assert info.value.code == "conflict"
        assert "moved on since this worker loaded it" in info.value.message
        assert info.value.details["latest"] == second
        history = [t async for t in a.alist(config("t"))]
        assert [t.metadata["step"] for t in history] == [1, 0] and linear(history)


async def test_a_newer_claim_fences_the_older_writer(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as one, keepstone.open(sqlite_url) as two:
        a, b = KeepstoneSaver(one), KeepstoneSaver(two)
        await a.aget_tuple(config("t"))
        c0 = await put(a, None, 0)
        # b takes over (a crashed, as far as b knows): it loads and writes
        await b.aget_tuple(config("t"))
        c1 = await put(b, c0, 1)
        with pytest.raises(StorageError) as info:
            await put(a, c0, 1)  # a's next write, on its old line
        assert info.value.code == "conflict"
        assert "claimed by another worker" in info.value.message
        assert info.value.details["epoch"] < info.value.details["current_epoch"]
        with pytest.raises(StorageError):  # pending writes are fenced too
            await a.aput_writes(config("t", c0), [("x", 1)], "task-a")
        history = [t async for t in b.alist(config("t"))]
        assert [t.config["configurable"]["checkpoint_id"] for t in history] == [c1, c0]
        assert (await b.aget_tuple(config("t", c0))).pending_writes == []
        # a new graph run on `a` loads the thread again and may write again
        await a.aget_tuple(config("t"))
        await put(a, c1, 2)
        run = await one.runs.get(history[0].config["configurable"]["thread_id"] and "lgt.t")
        assert run.step("langgraph.writer").attempts == 3  # three claims, in the audit too


async def test_two_graphs_racing_on_one_thread(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as one, keepstone.open(sqlite_url) as two:
        for round_ in range(3):
            thread = config(f"race-{round_}")
            graphs = [
                slow_pipeline("a", "b", "c").compile(checkpointer=KeepstoneSaver(store))
                for store in (one, two)
            ]
            results = await asyncio.gather(
                *(g.ainvoke(start(), thread) for g in graphs), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            wins = [r for r in results if not isinstance(r, BaseException)]
            # one worker loses (in a rare interleaving, both back off); never both win
            assert failures, results
            assert all(isinstance(f, StorageError) and f.code == "conflict" for f in failures)
            history = [t async for t in KeepstoneSaver(one).alist(thread)]
            assert linear(history), [t.metadata["step"] for t in history]
            steps = [t.metadata["step"] for t in history]
            assert steps == list(range(steps[0], -2, -1))  # one run's checkpoints, in order
            if wins:
                assert wins[0]["steps"] == ["a", "b", "c"] and steps[0] == 3
