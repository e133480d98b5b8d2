"""A store with real LangGraph threads for the inspector's thread pages.

``support-42`` runs write -> review -> send, then goes back in time to the
checkpoint before the review, edits the draft (a fork) and runs on from
there: its history is a tree with one fork and two branch tips. A thread
whose id is markup holds markup in a channel value, and runs a subgraph
(a second checkpoint namespace). ``short-lived`` ran, then was deleted
(its run stays as a tombstone). Everything goes through ``KeepstoneSaver``
and LangGraph itself.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph

from keepstone.langgraph import KeepstoneSaver

HOSTILE_THREAD = "<script>alert(13)</script>/../x?y=1#z"
HOSTILE_VALUE = "<img src=x onerror=alert(14)><script>alert(15)</script>"
LONG_DRAFT = "Dear Ada, " + "the numbers are in and they look good. " * 60


class Mail(TypedDict):
    messages: Annotated[list[Any], operator.add]
    draft: str
    notes: str
    count: int


def write(state: Mail) -> dict[str, Any]:
    return {"messages": [AIMessage("drafted", id="m-write")], "draft": LONG_DRAFT, "count": 1}


def review(state: Mail) -> dict[str, Any]:
    verdict = "short enough" if len(state["draft"]) < 100 else "too long"
    return {"messages": [AIMessage(verdict, id="m-review")], "count": state["count"] + 1}


def send(state: Mail) -> dict[str, Any]:
    return {"notes": f"sent {len(state['draft'])} characters", "count": state["count"] + 1}


def mail_graph() -> StateGraph[Mail]:
    builder = StateGraph(Mail)
    for name, node in (("write", write), ("review", review), ("send", send)):
        builder.add_node(name, node)
    builder.add_edge(START, "write")
    builder.add_edge("write", "review")
    builder.add_edge("review", "send")
    builder.add_edge("send", END)
    return builder


class Inner(TypedDict):
    notes: str


def hostile_graph() -> StateGraph[Mail]:
    inner = StateGraph(Inner)
    inner.add_node("scribble", lambda s: {"notes": s["notes"] + " (seen)"})
    inner.add_edge(START, "scribble")
    inner.add_edge("scribble", END)
    builder = StateGraph(Mail)
    builder.add_node("echo", lambda s: {"notes": HOSTILE_VALUE, "count": s["count"] + 1})
    builder.add_node("sub", inner.compile())
    builder.add_edge(START, "echo")
    builder.add_edge("echo", "sub")
    builder.add_edge("sub", END)
    return builder


def first_input() -> Mail:
    return {
        "messages": [HumanMessage("write to Ada", id="m-ask")],
        "draft": "",
        "notes": "",
        "count": 0,
    }


@dataclass
class ThreadStore:
    """What the tests look for."""

    url: str
    fork_point: str = ""
    """The checkpoint before the review, where the history forks."""
    first_tip: str = ""
    """The end of the first run."""
    latest: str = ""
    """The end of the branch made by time travel (the thread's latest)."""
    checkpoints: int = 0


async def build(url: str) -> ThreadStore:
    found = ThreadStore(url)
    async with KeepstoneSaver.from_url(url) as saver:
        graph = mail_graph().compile(checkpointer=saver)
        config: Any = {"configurable": {"thread_id": "support-42"}}
        await graph.ainvoke(first_input(), config)
        history = [s async for s in graph.aget_state_history(config)]
        found.first_tip = history[0].config["configurable"]["checkpoint_id"]
        before_review = next(s for s in history if s.next == ("review",))
        found.fork_point = before_review.config["configurable"]["checkpoint_id"]
        forked = await graph.aupdate_state(before_review.config, {"draft": "Dear Ada, short."})
        await graph.ainvoke(None, forked)
        latest = await graph.aget_state(config)
        found.latest = latest.config["configurable"]["checkpoint_id"]
        found.checkpoints = len([s async for s in graph.aget_state_history(config)])
        gone: Any = {"configurable": {"thread_id": "short-lived"}}
        await graph.ainvoke(first_input(), gone)
        await saver.adelete_thread("short-lived")
        hostile = hostile_graph().compile(checkpointer=saver)
        await hostile.ainvoke(first_input(), {"configurable": {"thread_id": HOSTILE_THREAD}})
    return found
