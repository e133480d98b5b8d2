"""What the LangGraph tests share: a store URL per backend, small graphs."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from tests.conftest import BACKENDS, store_url


@pytest.fixture(params=BACKENDS)
def lg_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL on each backend (PostgreSQL skips only where the suite does)."""
    return store_url(str(request.param), tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return store_url("sqlite", tmp_path)


class Chat(TypedDict):
    messages: Annotated[list[Any], operator.add]
    steps: Annotated[list[str], operator.add]
    count: int


def _node(name: str, hook: Callable[[str, Chat], None] | None = None) -> Any:
    def run(state: Chat) -> dict[str, Any]:
        if hook is not None:
            hook(name, state)
        return {
            "messages": [AIMessage(f"{name} says {state['count']}", id=f"{name}-{state['count']}")],
            "steps": [name],
            "count": state["count"] + 1,
        }

    return run


def pipeline(*names: str, hook: Callable[[str, Chat], None] | None = None) -> StateGraph[Chat]:
    """START -> names[0] -> ... -> names[-1] -> END; ``hook(name, state)``
    runs at the start of every node."""
    builder = StateGraph(Chat)
    previous = START
    for name in names:
        builder.add_node(name, _node(name, hook))
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder


def slow_pipeline(*names: str, delay: float = 0.01) -> StateGraph[Chat]:
    """:func:`pipeline` with async nodes that yield to the event loop."""
    builder = StateGraph(Chat)
    previous = START
    for name in names:
        sync = _node(name)

        async def run(state: Chat, _sync: Any = sync) -> dict[str, Any]:
            await asyncio.sleep(delay)
            return dict(_sync(state))

        builder.add_node(name, run)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder


def ask_human(state: Chat) -> dict[str, Any]:
    answer = interrupt({"question": "approve?", "count": state["count"]})
    return {"messages": [HumanMessage(str(answer))], "steps": ["ask"], "count": state["count"] + 1}


def review_graph() -> StateGraph[Chat]:
    """draft -> ask (interrupts for a human) -> publish."""
    builder = StateGraph(Chat)
    builder.add_node("draft", _node("draft"))
    builder.add_node("ask", ask_human)
    builder.add_node("publish", _node("publish"))
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "ask")
    builder.add_edge("ask", "publish")
    builder.add_edge("publish", END)
    return builder


def start(count: int = 0) -> Chat:
    return {"messages": [HumanMessage("hello", id="h0")], "steps": [], "count": count}
