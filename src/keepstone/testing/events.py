"""Conformance of :class:`keepstone.ports.EventLog`: the append-only memory event log."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from keepstone.schemas import (
    CustomEvent,
    EdgePut,
    EdgeRemoved,
    EventQuery,
    MemoryEvent,
    NodeForgotten,
    NodePut,
    PathMerged,
    ProfileCreated,
    ProfilePolicy,
)
from keepstone.testing.base import (
    ALL,
    T0,
    ConformanceBase,
    assert_audited,
    assert_listing_refuses_bad_paging,
    assert_paginates,
    audit_seq,
    collect,
    drain,
    dump,
    expect_error,
    fingerprint,
    refused,
)

if TYPE_CHECKING:
    from keepstone import Store
    from keepstone.schemas import EventPayload


def event(
    event_id: str, profile_id: str, payload: EventPayload, *, n: int = 0, path: str | None = None
) -> MemoryEvent:
    """A new (seq-less) event at ``T0 + n`` seconds."""
    return MemoryEvent(
        id=event_id,
        profile_id=profile_id,
        path_id=path,
        at=T0 + timedelta(seconds=n),
        payload=payload,
    )


def node(node_id: str, content: str | None = None) -> NodePut:
    """A ``node.put`` payload."""
    return NodePut(node_id=node_id, node_kind="fact", content=content)


async def _profile(store: Store, profile_id: str = "prof-1") -> str:
    policy = ProfilePolicy(review_required=[])
    return (await store.memory.create_profile("p", policy=policy, id=profile_id)).id


async def _all(store: Store, query: EventQuery | None = None) -> list[MemoryEvent]:
    return await collect(lambda c: store.events.list(query, cursor=c, limit=ALL))


class EventLogConformance(ConformanceBase):
    """Tests of ``store.events``."""

    async def test_append_assigns_strictly_increasing_seq(self, store: Store) -> None:
        pid = await _profile(store)
        start = await store.events.last_seq()
        batch = [event(f"e{i}", pid, node(f"n{i}", f"c{i}"), n=i) for i in range(3)]
        stored = await store.events.append(batch)
        assert all(e.seq is not None for e in stored)
        seqs = [e.seq or 0 for e in stored]
        assert seqs == sorted(set(seqs)) and len(seqs) == 3 and seqs[0] > start
        assert [e.model_copy(update={"seq": None}) for e in stored] == batch
        assert await store.events.last_seq() == seqs[-1]
        for stored_event in stored:
            assert await store.events.get(stored_event.id) == stored_event
        later = await store.events.append([event("e9", pid, node("n9"))])
        assert (later[0].seq or 0) > (seqs[-1] or 0)

    async def test_last_seq_of_empty_log_is_zero(self, store: Store) -> None:
        assert await store.events.last_seq() == 0
        assert (await store.events.list()).items == []

    async def test_append_same_id_same_content_is_noop(self, store: Store) -> None:
        pid = await _profile(store)
        original = event("e1", pid, node("n1", "x"))
        first = (await store.events.append([original]))[0]
        before = await fingerprint(store)
        again = await store.events.append([original])
        assert again == [first]
        assert await fingerprint(store) == before
        mixed = await store.events.append([original, event("e2", pid, node("n2"))])
        assert mixed[0] == first and (mixed[1].seq or 0) > (first.seq or 0)
        assert [e.id for e in await _all(store, EventQuery(kinds=["node.put"]))] == ["e1", "e2"]

    async def test_append_same_id_other_content_conflicts(self, store: Store) -> None:
        pid = await _profile(store)
        await store.events.append([event("e1", pid, node("n1", "x"))])
        changed = event("e1", pid, node("n1", "y"))
        await refused(store, "conflict", store.events.append([changed]))
        later = event("e1", pid, node("n1", "x"), n=5)
        await refused(store, "conflict", store.events.append([event("e2", pid, node("n2")), later]))

    async def test_append_duplicate_in_batch(self, store: Store) -> None:
        pid = await _profile(store)
        one, other = event("e1", pid, node("n1", "x")), event("e1", pid, node("n1", "y"))
        await refused(store, "conflict", store.events.append([one, other]))
        twice = await store.events.append([one, one])
        assert twice[0] == twice[1] and twice[0].seq == await store.events.last_seq()
        assert len(await _all(store, EventQuery(kinds=["node.put"]))) == 1

    async def test_append_profile_created_makes_profile(self, store: Store) -> None:
        created = event("e1", "prof-new", ProfileCreated(name="new", attributes={}))
        await store.events.append([created])
        profile = await store.memory.get_profile("prof-new")
        assert profile.name == "new" and profile.attributes == {}

    async def test_append_dangling_reference_integrity(self, store: Store) -> None:
        pid = await _profile(store)
        await store.events.append([event("e0", pid, node("a"))])
        for bad in (
            event("x1", "prof-missing", node("n")),
            event("x2", pid, node("n"), path="path-missing"),
            event("x3", pid, EdgePut(edge_id="g", source_id="a", target_id="nope", edge_kind="k")),
            event("x4", pid, EdgePut(edge_id="g", source_id="nope", target_id="a", edge_kind="k")),
            event("x5", pid, NodeForgotten(node_id="nope")),
            event("x6", pid, EdgeRemoved(edge_id="nope")),
            event("x7", pid, PathMerged(path_id="path-missing", into_path_id="path-other")),
        ):
            await refused(store, "integrity", store.events.append([bad]))

    async def test_append_invalid_is_all_or_nothing(self, store: Store) -> None:
        pid = await _profile(store)
        good = event("ok", pid, node("n1"))
        with_seq = event("s", pid, node("n2")).model_copy(update={"seq": 99})
        bad_node = event("b1", pid, NodePut.model_construct(node_id="../x", node_kind="fact"))
        nan = CustomEvent.model_construct(name="c", data={"v": float("nan")})
        for bad in (with_seq, bad_node, event("b2", pid, nan)):
            await refused(store, "invalid", store.events.append([good, bad]))
        dangling = event("d", pid, EdgeRemoved(edge_id="nope"))
        await refused(store, "integrity", store.events.append([good, dangling]))
        await expect_error("not_found", store.events.get("ok"))

    async def test_append_applies_events_to_graph(self, store: Store) -> None:
        pid = await _profile(store)
        payloads: list[Any] = [
            node("a", "alpha"),
            node("b", "beta"),
            EdgePut(edge_id="ab", source_id="a", target_id="b", edge_kind="knows", attributes={}),
            node("a", "alpha two"),
            CustomEvent(name="note", data={"x": None}),
        ]
        await store.events.append([event(f"e{i}", pid, p, n=i) for i, p in enumerate(payloads)])
        assert (await store.memory.get_node(pid, "a")).content == "alpha two"
        assert (await store.memory.get_edge(pid, "ab")).attributes == {}
        await store.events.append([event("e9", pid, NodeForgotten(node_id="b"), n=9)])
        await expect_error("not_found", store.memory.get_edge(pid, "ab"))
        assert dump(await store.memory.graph(pid)) == dump(await store.memory.replay(pid))

    async def test_get_unknown_not_found(self, store: Store) -> None:
        await expect_error("not_found", store.events.get("evt-missing"))

    async def test_list_filters(self, store: Store) -> None:
        p1, p2 = await _profile(store, "prof-1"), await _profile(store, "prof-2")
        path = (await store.memory.create_path(p1, id="path-1")).id
        start = await store.events.last_seq()
        stored = await store.events.append(
            [
                event("a", p1, node("n1")),
                event("b", p2, node("n1")),
                event("c", p1, node("n2"), path=path),
                event("d", p1, CustomEvent(name="x")),
                event("e", p2, CustomEvent(name="y"), path=None),
            ]
        )
        seq = {e.id: e.seq or 0 for e in stored}

        async def ids(**kw: Any) -> list[str]:
            return [e.id for e in await _all(store, EventQuery(after_seq=start, **kw))]

        assert await ids() == ["a", "b", "c", "d", "e"]
        assert await ids(profile_id=p1) == ["a", "c", "d"]
        assert await ids(path_id=path) == ["c"]
        assert await ids(kinds=["custom"]) == ["d", "e"]
        assert await ids(kinds=["custom", "node.put"], profile_id=p2) == ["b", "e"]
        assert await ids(through_seq=seq["b"]) == ["a", "b"]
        limits = EventQuery(after_seq=seq["a"], through_seq=seq["d"])
        assert [e.id for e in await _all(store, limits)] == ["b", "c", "d"]
        profiles = await _all(store, EventQuery(kinds=["profile.created"]))
        assert [e.profile_id for e in profiles] == [p1, p2]

    async def test_list_paginates_in_seq_order(self, store: Store) -> None:
        pid = await _profile(store)
        await store.events.append([event(f"e{i}", pid, node(f"n{i}")) for i in range(7)])
        listed = await assert_paginates(
            lambda c, n: store.events.list(cursor=c, limit=n), key=lambda e: e.id
        )
        seqs = [e.seq or 0 for e in listed]
        assert seqs == sorted(set(seqs)) and seqs[-1] == await store.events.last_seq()
        query = EventQuery(profile_id=pid, kinds=["node.put"])
        await assert_paginates(
            lambda c, n: store.events.list(query, cursor=c, limit=n), key=lambda e: e.id
        )
        await assert_listing_refuses_bad_paging(lambda c, n: store.events.list(cursor=c, limit=n))

    async def test_iterate_matches_list(self, store: Store) -> None:
        pid = await _profile(store)
        await store.events.append([event(f"e{i}", pid, node(f"n{i % 3}")) for i in range(9)])
        assert await drain(store.events.iterate(batch_size=2)) == await _all(store)
        query = EventQuery(profile_id=pid, kinds=["node.put"], after_seq=3)
        assert await drain(store.events.iterate(query, batch_size=4)) == await _all(store, query)
        assert await drain(store.events.iterate(EventQuery(profile_id="prof-none"))) == []

    async def test_append_is_audited(self, store: Store) -> None:
        pid = await _profile(store)
        seq = await audit_seq(store)
        await store.events.append([event("e1", pid, node("n1"))])
        await assert_audited(store, seq)

    async def test_events_survive_reopen(self, store: Store) -> None:
        pid = await _profile(store)
        stored = await store.events.append([event(f"e{i}", pid, node(f"n{i}")) for i in range(3)])
        last = await store.events.last_seq()
        reopened = await self.reopen(store)
        assert await reopened.events.last_seq() == last
        assert await reopened.events.append([stored[0].model_copy(update={"seq": None})]) == [
            stored[0]
        ]
        after = await reopened.events.append([event("late", pid, node("late"))])
        assert (after[0].seq or 0) > last
