"""Real LangGraph graphs on KeepstoneSaver: runs to completion, human in the
loop, time travel and forks, a SIGKILLed process resumed by another, and
several processes on one SQLite file."""

from __future__ import annotations

import asyncio
import itertools
import json
import operator
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

import keepstone
from keepstone.langgraph import KeepstoneSaver
from tests.langgraph.conftest import pipeline, review_graph, start

ROOT = Path(__file__).resolve().parents[2]


def config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


def linear(history: list[Any]) -> bool:
    """Each checkpoint's parent is the one before it (newest first)."""
    for newer, older in itertools.pairwise(history):
        if newer.parent_config is None:
            return False
        if (
            newer.parent_config["configurable"]["checkpoint_id"]
            != older.config["configurable"]["checkpoint_id"]
        ):
            return False
    return history[-1].parent_config is None


async def test_a_multi_node_graph_runs_to_completion(lg_url: str) -> None:
    async with KeepstoneSaver.from_url(lg_url) as saver:
        graph = pipeline("plan", "search", "write", "check").compile(checkpointer=saver)
        out = await graph.ainvoke(start(), config("t1"))
        assert out["steps"] == ["plan", "search", "write", "check"]
        assert out["count"] == 4
        assert [m.content for m in out["messages"][1:]] == [
            "plan says 0",
            "search says 1",
            "write says 2",
            "check says 3",
        ]
        history = [s async for s in graph.aget_state_history(config("t1"))]
        assert [s.metadata["step"] for s in history] == [4, 3, 2, 1, 0, -1]
        assert linear(history)
        # a second invocation continues the same thread
        again = await graph.ainvoke({"messages": [], "steps": [], "count": 10}, config("t1"))
        assert again["steps"][-4:] == ["plan", "search", "write", "check"]
        assert again["count"] == 14


def test_the_sync_api_runs_a_graph_on_a_loop_of_its_own(sqlite_url: str) -> None:
    with KeepstoneSaver.from_url(sqlite_url) as saver:
        graph = pipeline("a", "b").compile(checkpointer=saver)
        assert graph.invoke(start(), config("sync"))["steps"] == ["a", "b"]
        assert graph.get_state(config("sync")).values["count"] == 2
        assert len(list(graph.get_state_history(config("sync")))) == 4


async def test_interrupt_then_resume_with_a_command(lg_url: str) -> None:
    async with keepstone.open(lg_url) as store:
        graph = review_graph().compile(checkpointer=KeepstoneSaver(store))
        first = await graph.ainvoke(start(), config("hitl"))
        (pending,) = first["__interrupt__"]
        assert pending.value == {"question": "approve?", "count": 1}
        state = await graph.aget_state(config("hitl"))
        assert state.next == ("ask",)
        assert state.tasks[0].interrupts[0].value["question"] == "approve?"

        # another saver (another worker, as far as keepstone knows) resumes it
        graph = review_graph().compile(checkpointer=KeepstoneSaver(store))
        out = await graph.ainvoke(Command(resume="yes, ship it"), config("hitl"))
        assert out["steps"] == ["draft", "ask", "publish"]
        assert out["messages"][2].content == "yes, ship it"
        assert isinstance(out["messages"][1], AIMessage)
        assert (await graph.aget_state(config("hitl"))).next == ()


async def test_time_travel_and_fork(sqlite_url: str) -> None:
    async with KeepstoneSaver.from_url(sqlite_url) as saver:
        graph = pipeline("a", "b", "c").compile(checkpointer=saver)
        await graph.ainvoke(start(), config("tt"))
        history = [s async for s in graph.aget_state_history(config("tt"))]
        after_a = next(s for s in history if s.next == ("b",))
        assert after_a.values["steps"] == ["a"]

        # replay from the checkpoint after "a": b and c run again, on a fork
        replayed = await graph.ainvoke(None, after_a.config)
        assert replayed["steps"] == ["a", "b", "c"]
        # edit the past: a fork whose count differs
        forked_config = await graph.aupdate_state(after_a.config, {"count": 100})
        forked = await graph.ainvoke(None, forked_config)
        assert forked["count"] == 102 and forked["steps"] == ["a", "b", "c"]

        latest = await graph.aget_state(config("tt"))
        assert latest.values["count"] == 102
        history = [s async for s in graph.aget_state_history(config("tt"))]
        children: dict[str, int] = {}
        for s in history:
            if s.parent_config is not None:
                parent = s.parent_config["configurable"]["checkpoint_id"]
                children[parent] = children.get(parent, 0) + 1
        fork_point = after_a.config["configurable"]["checkpoint_id"]
        assert children[fork_point] == 3  # the original run, the replay, the edit
        # the original checkpoint is still readable as it was
        original = await graph.aget_state(after_a.config)
        assert original.values["count"] == 1


def _child(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.langgraph.graph_child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_a_sigkilled_graph_resumes_in_a_new_process(sqlite_url: str, tmp_path: Path) -> None:
    url = sqlite_url
    marker = tmp_path / "at-s3"
    victim = _child(url, "crash-thread", "crash", str(marker))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the child never reached s3"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    survivor = _child(url, "crash-thread", "resume", str(marker))
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    state = json.loads(out.strip().splitlines()[-1])
    # every step's effect is in the state exactly once
    assert state == {"steps": ["s1", "s2", "s3", "s4", "s5"], "count": 5}
    # s1 and s2 were checkpointed before the kill and did not run again;
    # s3 was cut short, so it ran a second time; s4 and s5 ran once
    ran = marker.with_name(marker.name + ".log").read_text().split()
    assert ran == ["s1", "s2", "s3", "s3", "s4", "s5"]

    async def history() -> list[Any]:
        async with KeepstoneSaver.from_url(url) as saver:
            return [t async for t in saver.alist(config("crash-thread"))]

    checkpoints = asyncio.run(history())
    assert [t.metadata["step"] for t in checkpoints] == [5, 4, 3, 2, 1, 0, -1]
    assert linear(checkpoints)


def test_two_processes_run_two_threads_on_one_sqlite_file(sqlite_url: str) -> None:
    asyncio.run(_init(sqlite_url))  # create the store before the children race to
    workers = [_child(sqlite_url, f"worker-{i}", "run") for i in range(2)]
    results = [w.communicate(timeout=120) for w in workers]
    for worker, (out, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err
        assert "locked" not in err
        assert json.loads(out.strip().splitlines()[-1])["count"] == 10

    async def check() -> None:
        async with KeepstoneSaver.from_url(sqlite_url) as saver:
            for i in range(2):
                history = [t async for t in saver.alist(config(f"worker-{i}"))]
                assert len(history) == 12 and linear(history)
            async with keepstone.open(sqlite_url) as store:
                assert (await store.audit.verify()).ok

    asyncio.run(check())


async def _init(url: str) -> None:
    async with keepstone.open(url):
        pass


class Log(TypedDict):
    log: Annotated[list[str], operator.add]


def subgraph_parent() -> Any:
    """pre -> child (a subgraph that interrupts) -> post."""

    def ask(state: Log) -> dict[str, Any]:
        return {"log": [f"inner:{interrupt('inner ok?')}"]}

    inner = StateGraph(Log)
    inner.add_node("first", lambda s: {"log": ["first"]})
    inner.add_node("ask", ask)
    inner.add_edge(START, "first")
    inner.add_edge("first", "ask")
    inner.add_edge("ask", END)
    outer = StateGraph(Log)
    outer.add_node("pre", lambda s: {"log": ["pre"]})
    outer.add_node("child", inner.compile())
    outer.add_node("post", lambda s: {"log": ["post"]})
    outer.add_edge(START, "pre")
    outer.add_edge("pre", "child")
    outer.add_edge("child", "post")
    outer.add_edge("post", END)
    return outer


async def test_a_subgraph_interrupts_in_its_namespace_like_in_memory(sqlite_url: str) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    async def drive(saver: Any) -> tuple[Any, ...]:
        graph = subgraph_parent().compile(checkpointer=saver)
        first = await graph.ainvoke({"log": []}, config("sub"))
        state = await graph.aget_state(config("sub"), subgraphs=True)
        inner_next = state.tasks[0].state.next if state.tasks and state.tasks[0].state else None
        done = await graph.ainvoke(Command(resume="yes"), config("sub"))
        spaces = sorted(
            {
                t.config["configurable"]["checkpoint_ns"].split(":")[0]
                async for t in saver.alist(config("sub"))
            }
        )
        return first["__interrupt__"][0].value, state.next, inner_next, done["log"], spaces

    async with KeepstoneSaver.from_url(sqlite_url) as saver:
        mine = await drive(saver)
    assert mine == await drive(InMemorySaver())
    assert mine[3][-1] == "post" and mine[4] == ["", "child"]
