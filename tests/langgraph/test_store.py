"""What KeepstoneMemoryStore adds to LangGraph's stores: revisions and the
past, tombstones and approved purges, full-text ``query``, TTL, and use from
a real graph."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

import keepstone
from keepstone.errors import StorageError
from keepstone.langgraph import KeepstoneMemoryStore, KeepstoneSaver
from keepstone.schemas import ApprovalMarker, ArtifactQuery, AuditQuery

APPROVE = ApprovalMarker(approved_by="dpo", reason="user asked to be forgotten")


async def test_every_put_is_a_revision_and_the_past_stays_readable(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as store:
        memory = KeepstoneMemoryStore(store)
        ns = ("users", "ada")
        await memory.aput(ns, "city", {"name": "Lyon"})
        middle = datetime.now(UTC)
        await asyncio.sleep(0.01)
        await memory.aput(ns, "city", {"name": "Paris"})
        await memory.aput(ns, "lang", {"name": "fr"})
        await memory.adelete(ns, "city")
        await memory.aput(ns, "city", {"name": "Nice"})

        history = await memory.aitem_history(ns, "city")
        assert [(h.value, h.generation) for h in history] == [
            ({"name": "Lyon"}, 1),
            ({"name": "Paris"}, 1),
            (None, 1),
            ({"name": "Nice"}, 2),
        ]
        then = await memory.aitems_at(middle, ("users",))
        assert [(i.key, i.value) for i in then] == [("city", {"name": "Lyon"})]
        now = await memory.aitems_at(datetime.now(UTC) + timedelta(seconds=1))
        assert sorted((i.key, i.value["name"]) for i in now) == [("city", "Nice"), ("lang", "fr")]


async def test_delete_is_a_tombstone_and_purge_needs_an_approval(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as store:
        memory = KeepstoneMemoryStore(store)
        await memory.aput(("users", "ada"), "address", {"street": "1 rue des Lilas"})
        await memory.aput(("users", "ada"), "address", {"street": "2 rue des Roses"})
        await memory.adelete(("users", "ada"), "address")
        assert await memory.aget(("users", "ada"), "address") is None
        # the tombstone keeps who deleted it, and the bytes, until a purge
        found = await store.artifacts.query(ArtifactQuery(include_deleted=True, type="knowledge"))
        (art,) = found.items
        assert art.deleted_at is not None
        assert await store.artifacts.read(art.id, revision=1) == b'{"street":"1 rue des Lilas"}'
        changes = [c.action for c in (await store.artifacts.changes(artifact_id=art.id)).items]
        assert changes == ["create", "update", "delete"]

        with pytest.raises(StorageError) as info:
            await memory.apurge(("users", "ada"), "address")
        assert info.value.code == "review_required"
        assert (await store.audit.list(AuditQuery(outcome="denied"))).items
        assert await memory.apurge(("users", "ada"), "address", approval=APPROVE) == 2
        with pytest.raises(StorageError) as gone:
            await store.artifacts.read(art.id, revision=1)
        assert gone.value.code == "not_found"
        query = AuditQuery(action="lifecycle.purge_artifact", outcome="applied")
        purges = (await store.audit.list(query)).items
        assert len(purges) == 2 and purges[0].approval == APPROVE
        assert [h.value for h in await memory.aitem_history(("users", "ada"), "address")] == [
            None,
            None,
            None,
        ]


async def test_query_without_embeddings_is_full_text(lg_url: str) -> None:
    async with keepstone.open(lg_url) as store:
        memory = KeepstoneMemoryStore(store)
        await memory.aput(("m",), "1", {"text": "Ada prefers French cooking and jazz"})
        await memory.aput(("m",), "2", {"text": "Bob likes French wine"})
        await memory.aput(("m",), "3", {"text": "Cats sleep a lot"})
        await memory.aput(("other",), "4", {"text": "French lessons on Monday"})
        hits = await memory.asearch(("m",), query="what does Ada like about French cooking")
        assert [h.key for h in hits] == ["1", "2"]
        assert hits[0].score is not None and hits[1].score is not None
        assert hits[0].score > hits[1].score > 0
        assert [h.key for h in await memory.asearch((), query="french", limit=10)] == [
            "1",
            "2",
            "4",
        ]
        filtered = await memory.asearch(("m",), query="french", filter={"text": {"$ne": "x"}})
        assert len(filtered) == 2
        assert await memory.asearch(("m",), query="zebra") == []


async def test_ttl_refresh_omit_and_sweep(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as store:
        memory = KeepstoneMemoryStore(
            store, ttl={"default_ttl": 10, "refresh_on_read": True, "omit_expired": True}
        )
        await memory.aput(("t",), "short", {"v": 1}, ttl=0.001)  # 60 ms
        await memory.aput(("t",), "default", {"v": 2})
        await memory.aput(("t",), "forever", {"v": 3}, ttl=None)
        await asyncio.sleep(0.1)
        assert await memory.aget(("t",), "short") is None  # expired: omitted
        assert [i.key for i in await memory.asearch(("t",))] == ["default", "forever"]
        later = datetime.now(UTC) + timedelta(minutes=30)
        assert await memory.asweep_ttl(later) == 2  # short and default
        assert [i.key for i in await memory.asearch(("t",))] == ["forever"]
        arts = (await store.artifacts.query(ArtifactQuery(include_deleted=True))).items
        assert sum(a.deleted_at is not None for a in arts) == 2

        await memory.aput(("t",), "hot", {"v": 4}, ttl=60)
        for _ in range(5):  # reads refresh the expiry, but not one revision per read
            assert await memory.aget(("t",), "hot") is not None
        hot = next(a for a in (await store.artifacts.query()).items if '"hot"' in a.name)
        assert hot.revision == 1
        await memory.start_ttl_sweeper(sweep_interval_minutes=60)
        assert await memory.stop_ttl_sweeper() is True


def test_the_sync_api_and_a_graph_using_the_store(sqlite_url: str) -> None:
    class State(TypedDict):
        user: str
        reply: str

    def remember(state: State, *, store: BaseStore) -> dict[str, Any]:
        ns = ("users", state["user"])
        seen = store.get(ns, "visits")
        count = 1 if seen is None else seen.value["count"] + 1
        store.put(ns, "visits", {"count": count})
        return {"reply": f"visit {count}"}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    with (
        KeepstoneMemoryStore.from_url(sqlite_url) as memory,
        KeepstoneSaver.from_url(sqlite_url) as saver,
    ):
        graph = builder.compile(checkpointer=saver, store=memory)
        cfg: Any = {"configurable": {"thread_id": "s"}}
        assert graph.invoke({"user": "ada", "reply": ""}, cfg)["reply"] == "visit 1"
        assert graph.invoke({"user": "ada", "reply": ""}, cfg)["reply"] == "visit 2"
        assert memory.get(("users", "ada"), "visits").value == {"count": 2}  # type: ignore[union-attr]
        assert memory.list_namespaces() == [("users", "ada")]


async def test_a_sync_call_on_the_stores_own_loop_is_refused_clearly(sqlite_url: str) -> None:
    async with keepstone.open(sqlite_url) as store:
        memory = KeepstoneMemoryStore(store)
        with pytest.raises(StorageError) as info:
            memory.get(("users", "ada"), "visits")  # would block the loop it needs
        assert info.value.code == "config" and "use the async API" in info.value.message
        assert await memory.aget(("users", "ada"), "visits") is None
