"""What a thread stores: tagged JSON values (no pickle, ever), msgpack only
through an allow-list, content addressing, and keepstone's own tools
(snapshots, the doctor, the audit chain) covering the threads."""

from __future__ import annotations

import base64
import datetime as dt
import operator
import pickle
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import orjson
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel, SecretStr

import keepstone
from keepstone.errors import StorageError
from keepstone.langgraph import KeepstoneSaver, KeepstoneSerializer
from keepstone.langgraph.codec import ValueCodec
from tests.conftest import store_url
from tests.langgraph.conftest import pipeline, start


def config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


class Rich(TypedDict):
    messages: Annotated[list[Any], operator.add]
    when: dt.datetime
    ids: set[uuid.UUID]
    results: Annotated[list[str], operator.add]


def rich_graph() -> StateGraph[Rich]:
    def plan(state: Rich) -> dict[str, Any]:
        call = {"name": "lookup", "args": {"q": "cats"}, "id": "call-1"}
        return {"messages": [AIMessage("", tool_calls=[call])]}

    def fan_out(state: Rich) -> list[Send]:
        return [Send("work", {"item": i}) for i in ("x", "y")]

    def work(arg: dict[str, str]) -> dict[str, Any]:
        return {"results": [arg["item"].upper()]}

    def answer(state: Rich) -> dict[str, Any]:
        done = ToolMessage(",".join(sorted(state["results"])), tool_call_id="call-1")
        return {"messages": [done], "when": state["when"] + dt.timedelta(days=1)}

    builder = StateGraph(Rich)
    builder.add_node("plan", plan)
    builder.add_node("work", work)
    builder.add_node("answer", answer)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", fan_out, ["work"])
    builder.add_edge("work", "answer")
    builder.add_edge("answer", END)
    return builder


async def test_langgraph_values_round_trip_as_json(sqlite_url: str) -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    ids = {uuid.UUID(int=1), uuid.UUID(int=2)}
    async with keepstone.open(sqlite_url) as store:
        graph = rich_graph().compile(checkpointer=KeepstoneSaver(store))
        inputs = {"messages": [HumanMessage("find cats", id="h1")], "when": when, "ids": ids}
        out = await graph.ainvoke(inputs, config("rich"))
        assert out["results"] == ["X", "Y"] and out["ids"] == ids
        assert out["when"] == when + dt.timedelta(days=1)
        state = await graph.aget_state(config("rich"))
        messages = state.values["messages"]
        assert [type(m) for m in messages] == [HumanMessage, AIMessage, ToolMessage]
        assert messages[1].tool_calls[0]["args"] == {"q": "cats"}

        # what is stored is JSON a person can read, not pickle or msgpack
        kinds = set()
        snaps = (await store.runs.list_snapshots("lgt.rich", limit=1000)).items
        for snap in snaps:
            for digest in snap.parts.values():
                doc = orjson.loads(await store.blobs.get(digest))
                kinds.update(e["s"] for e in _entries(doc))
        assert kinds <= {"json", "null"}
        last = [s for s in snaps if (s.step or "").startswith("checkpoint")][-1]
        header = orjson.loads(await store.blobs.get(last.parts["checkpoint"]))
        message = header["values"]["messages"]["v"][1]
        assert message["cls"] == ["langchain_core.messages.ai", "AIMessage"]
        assert message["v"]["tool_calls"][0]["name"] == "lookup"


def _entries(doc: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(doc, dict) and isinstance(doc.get("values"), dict):
        found += list(doc["values"].values())
    if isinstance(doc, dict) and isinstance(doc.get("writes"), list):
        found += [w[2] for w in doc["writes"]]
    return found


class Profile(BaseModel):
    name: str
    langs: list[str]


class WithModel(TypedDict):
    profile: Profile
    n: int


async def test_classes_outside_the_allow_list_come_back_as_data(sqlite_url: str) -> None:
    def bump(state: WithModel) -> dict[str, Any]:
        return {"n": state["n"] + 1}

    builder = StateGraph(WithModel)
    builder.add_node("bump", bump)
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    async with keepstone.open(sqlite_url) as store:
        profile = Profile(name="ada", langs=["fr"])
        strict = builder.compile(checkpointer=KeepstoneSaver(store))
        await strict.ainvoke({"profile": profile, "n": 0}, config("m"))
        assert (await strict.aget_state(config("m"))).values["profile"] == {
            "name": "ada",
            "langs": ["fr"],
        }
        allowed = KeepstoneSaver(store).with_allowlist([(Profile.__module__, "Profile")])
        graph = builder.compile(checkpointer=allowed)
        assert (await graph.aget_state(config("m"))).values["profile"] == profile


class Opaque:
    __slots__ = ("x",)

    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.x == self.x

    def __hash__(self) -> int:
        return self.x


def test_pickle_is_never_written_nor_read(tmp_path: Path) -> None:
    codec = ValueCodec(JsonPlusSerializer(pickle_fallback=True))
    with pytest.raises(StorageError) as info:
        codec.entry(Opaque(1), {})  # msgpack cannot, so JsonPlus would pickle it
    assert info.value.code == "invalid" and "pickle" in info.value.message

    planted = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> Any:
            return (Path.write_text, (planted, "ran"))

    payload = base64.b64encode(pickle.dumps(Exploit())).decode()
    for reader in (ValueCodec(KeepstoneSerializer()), codec):
        with pytest.raises(StorageError) as info:
            reader.load({"s": "pickle", "b": payload}, {})
        assert info.value.code == "invalid"
    assert not planted.exists()


def test_msgpack_only_through_the_allow_list() -> None:
    secret = SecretStr("s3cret")  # neither JSON nor a model: LangGraph msgpacks it
    with pytest.raises(StorageError) as info:
        ValueCodec(KeepstoneSerializer()).entry({"key": secret}, {})
    assert info.value.code == "invalid"
    assert "msgpack_allowlist" in info.value.message and "SecretStr" in info.value.message

    serde = KeepstoneSerializer(msgpack_allowlist=[SecretStr])
    entry = ValueCodec(serde).entry({"key": secret}, {})
    assert entry["s"] == "msgpack"  # the serializer is recorded with the value
    back = ValueCodec(serde).load(entry, {})
    assert back == {"key": secret} and isinstance(back["key"], SecretStr)
    # a reader without the allow-list does not rebuild the object
    assert ValueCodec(KeepstoneSerializer()).load(entry, {}) == {"key": "s3cret"}


async def test_another_serializer_is_recorded_per_value(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as store:
        plain = KeepstoneSaver(store, serde=JsonPlusSerializer())
        graph = pipeline("a", "b").compile(checkpointer=plain)
        await graph.ainvoke(start(), config("j"))
        assert (await graph.aget_state(config("j"))).values["count"] == 2
        # a saver with the default serializer still reads the JSON values
        # (msgpack ones need the serializer that wrote them)
        tup = await plain.aget_tuple(config("j"))
        assert tup is not None
        assert isinstance(tup.checkpoint["channel_values"]["messages"][1], AIMessage)


async def test_a_constant_megabyte_is_stored_once(sqlite_url: str) -> None:
    constant = "".join(chr(97 + (i * 7919) % 26) for i in range(1 << 20))

    class Doc(TypedDict):
        doc: str
        counter: int
        notes: Annotated[list[str], operator.add]

    def step(state: Doc) -> dict[str, Any]:
        return {"counter": state["counter"] + 1, "notes": [f"step {state['counter']:03d}"]}

    builder = StateGraph(Doc)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: END if s["counter"] >= 100 else "step")
    async with keepstone.open(sqlite_url) as store:
        graph = builder.compile(checkpointer=KeepstoneSaver(store))
        cfg = {**config("big"), "recursion_limit": 500}
        out = await graph.ainvoke({"doc": constant, "counter": 0, "notes": []}, cfg)
        assert out["counter"] == 100 and out["doc"] == constant
        stored = sum(b.size for b in (await store.blobs.list(limit=10_000)).items)
        unique = len(constant) + sum(len(n) for n in out["notes"])
        # every checkpoint holds the megabyte; it is stored once (a full copy
        # per checkpoint, as LangGraph's SQLite saver keeps, would be 100x)
        assert stored <= 1.2 * unique, (stored, unique)
        history = [t async for t in KeepstoneSaver(store).alist(config("big"))]
        assert len(history) == 102
        assert all(t.checkpoint["channel_values"]["doc"] == constant for t in history[:-1])


async def test_a_growing_chat_stores_each_message_about_once(sqlite_url: str) -> None:
    class ChatState(TypedDict):
        messages: Annotated[list[Any], operator.add]

    text = "a long enough reply about the weather in Lyon and Paris. " * 5

    def reply(state: ChatState) -> dict[str, Any]:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"{n}: {text}", id=f"m{n}")]}

    builder = StateGraph(ChatState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_conditional_edges("reply", lambda s: END if len(s["messages"]) >= 96 else "reply")
    async with keepstone.open(sqlite_url) as store:
        graph = builder.compile(checkpointer=KeepstoneSaver(store))
        cfg = {**config("chat"), "recursion_limit": 500}
        out = await graph.ainvoke({"messages": [HumanMessage("hi", id="h")]}, cfg)
        assert len(out["messages"]) == 96
        stored = sum(b.size for b in (await store.blobs.list(limit=10_000)).items)
        one = len(orjson.dumps(KeepstoneSerializer().to_json(out["messages"][1])[1]))
        full_copies = sum(one * n for n in range(1, 97))  # every step the whole list
        assert stored < full_copies / 5, (stored, full_copies)


async def test_snapshots_doctor_and_audit_cover_threads(tmp_path: Path) -> None:
    source = store_url("sqlite", tmp_path / "a")
    (tmp_path / "a").mkdir()
    async with keepstone.open(source) as store:
        saver = KeepstoneSaver(store)
        graph = pipeline("a", "b").compile(checkpointer=saver)
        await graph.ainvoke(start(), config("x"))
        before = [t async for t in saver.alist(config("x"))]
        assert (await store.diagnose()).ok and (await store.audit.verify()).ok
        await store.snapshots.export_to(tmp_path / "export")
    (tmp_path / "b").mkdir()
    async with keepstone.open(store_url("file", tmp_path / "b")) as other:
        await other.snapshots.import_from(tmp_path / "export")
        after = [t async for t in KeepstoneSaver(other).alist(config("x"))]
        assert [t.checkpoint for t in after] == [t.checkpoint for t in before]
        assert [t.pending_writes for t in after] == [t.pending_writes for t in before]
        assert (await other.diagnose()).ok and (await other.audit.verify()).ok
        graph = pipeline("a", "b").compile(checkpointer=KeepstoneSaver(other))
        assert (await graph.ainvoke(start(), config("x")))["count"] == 2


def test_a_value_just_under_the_inline_limit_stays_an_entry() -> None:
    codec = ValueCodec(KeepstoneSerializer())
    for size in range(1990, 2100, 7):
        parts: dict[str, Any] = {}
        entry = codec.entry("x" * size, parts)
        assert entry["s"] == "json"
        assert codec.load(entry, parts) == "x" * size
