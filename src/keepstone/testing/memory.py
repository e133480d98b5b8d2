"""Conformance of :class:`keepstone.ports.MemoryStore`: profiles, nodes, edges, paths,
the review gate on lifecycle actions, the views (what a path sees, everything),
graph = replay for each of them, activation plans."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keepstone.schemas import (
    ActivationItem,
    EventQuery,
    NodePut,
    PathCreated,
    PathMerged,
    ProfilePolicy,
)
from keepstone.schemas.replay import fold
from keepstone.testing.base import (
    ALL,
    APPROVAL,
    BAD_IDS,
    PROPERTY,
    ConformanceBase,
    assert_audited,
    assert_listing_refuses_bad_paging,
    assert_paginates,
    audit_seq,
    audit_since,
    collect,
    drain,
    dump,
    expect_error,
    refused,
)

if TYPE_CHECKING:
    from keepstone import Store
    from keepstone.schemas import MemoryEvent

OPEN = ProfilePolicy(review_required=[])
"""A policy under which no lifecycle action needs review."""


async def _profile(store: Store, policy: ProfilePolicy | None = OPEN, pid: str = "prof-1") -> str:
    return (await store.memory.create_profile("agent", policy=policy, id=pid)).id


async def _last_event(store: Store) -> MemoryEvent:
    last = await store.events.last_seq()
    events = (await store.events.list(EventQuery(after_seq=last - 1))).items
    assert len(events) == 1
    return events[0]


def _seen_by(events: list[MemoryEvent], path_id: str | None) -> list[str]:
    """The ids of the events ``path_id`` sees, by the rule of the port's
    docstring written out naively (the reference the stores are held to)."""
    created = {e.payload.path_id: e.payload for e in events if isinstance(e.payload, PathCreated)}
    own: dict[str | None, list[MemoryEvent]] = {}
    for e in events:
        own.setdefault(e.path_id, []).append(e)
    seen = {e.id for e in own.get(None, [])}
    line: set[str] = set()

    def visit(pid: str, upto: float) -> None:
        line.add(pid)
        seen.update(e.id for e in own.get(pid, []) if (e.seq or 0) <= upto)
        path = created.get(pid)
        if path is not None and path.parent_path_id is not None:
            fork = upto if path.fork_seq is None else path.fork_seq
            visit(path.parent_path_id, min(upto, fork))
        for e in own.get(pid, []):
            p = e.payload
            if isinstance(p, PathMerged) and p.into_path_id == pid and (e.seq or 0) <= upto:
                visit(p.path_id, min(upto, p.at_seq if p.at_seq is not None else e.seq or 0))

    if path_id is not None:
        visit(path_id, float("inf"))
    return [
        e.id
        for e in events
        if (e.payload.path_id in line if isinstance(e.payload, PathCreated) else e.id in seen)
    ]


async def _assert_graph_is_replay(store: Store, pid: str) -> None:
    """For every view of the profile: its events are those the reference says,
    and graph == replay == the fold of those events."""
    mem = store.memory
    everything = await drain(mem.iterate_events(pid, view="all"))
    query = EventQuery(profile_id=pid)
    assert dump(everything) == dump(await collect(lambda c: store.events.list(query, cursor=c)))
    paths = (await mem.list_paths(pid, limit=ALL)).items
    roots = [p.id for p in paths if p.parent_path_id is None and p.status == "active"]
    views: list[tuple[dict[str, Any], str | None]] = [({"path_id": p.id}, p.id) for p in paths]
    if len(roots) > 1:
        error = await expect_error("conflict", mem.graph(pid))
        assert sorted(error.details["paths"]) == sorted(roots)
        await expect_error("conflict", mem.replay(pid))
    else:
        views.append(({}, roots[0] if roots else None))
    for kw, path_id in views:
        events = await drain(mem.iterate_events(pid, **kw))
        assert [e.id for e in events] == _seen_by(everything, path_id), kw
        graph = await mem.graph(pid, **kw)
        assert dump(graph) == dump(await mem.replay(pid, **kw)), kw
        assert dump(graph) == dump(fold(pid, events)), kw
    graph = await mem.graph(pid, view="all")
    assert dump(graph) == dump(await mem.replay(pid, view="all"))
    assert dump(graph) == dump(fold(pid, everything))


class MemoryStoreConformance(ConformanceBase):
    """Tests of ``store.memory``."""

    # ------------------------------------------------------------------ profiles

    async def test_create_profile_round_trips(self, store: Store) -> None:
        plain = await store.memory.create_profile("a")
        empty = await store.memory.create_profile("b", attributes={}, policy=OPEN)
        strict = ProfilePolicy(review_required=["forget_node"])
        full = await store.memory.create_profile("c", attributes={"x": None}, policy=strict)
        assert (plain.attributes, plain.policy) == (None, None)
        assert (empty.attributes, empty.policy) == ({}, OPEN)
        for profile in (plain, empty, full):
            assert await store.memory.get_profile(profile.id) == profile
        assert (await store.memory.get_profile(full.id)).policy == strict
        last = await _last_event(store)
        assert (last.kind, last.profile_id) == ("profile.created", full.id)

    async def test_create_profile_refusals(self, store: Store) -> None:
        await store.memory.create_profile("a", id="prof-1")
        create = store.memory.create_profile
        await refused(store, "conflict", create("b", id="prof-1"))
        await refused(store, "invalid", create(""))
        await refused(store, "invalid", create("a", attributes={"x": float("nan")}))

    @pytest.mark.parametrize("bad_id", BAD_IDS)
    async def test_create_profile_malformed_id_invalid(self, store: Store, bad_id: str) -> None:
        await refused(store, "invalid", store.memory.create_profile("a", id=bad_id))

    async def test_update_profile_changes_only_given_fields(self, store: Store) -> None:
        made = await store.memory.create_profile("a", attributes={"k": 1})
        renamed = await store.memory.update_profile(made.id, name="b")
        assert (renamed.name, renamed.attributes, renamed.policy) == ("b", {"k": 1}, None)
        assert renamed.created_at == made.created_at and renamed.updated_at > made.updated_at
        changed = await store.memory.update_profile(made.id, attributes={}, policy=OPEN)
        assert (changed.name, changed.attributes, changed.policy) == ("b", {}, OPEN)
        assert await store.memory.get_profile(made.id) == changed
        assert (await _last_event(store)).kind == "profile.updated"

    async def test_update_profile_refusals(self, store: Store) -> None:
        await refused(store, "not_found", store.memory.update_profile("prof-missing", name="x"))
        pid = await _profile(store)
        await refused(store, "invalid", store.memory.update_profile(pid, name=""))
        nan = {"x": float("nan")}
        await refused(store, "invalid", store.memory.update_profile(pid, attributes=nan))

    async def test_list_profiles_by_id(self, store: Store) -> None:
        made = [
            await store.memory.create_profile(f"p{i}", id=f"prof-{c}")
            for i, c in enumerate("dbfagce")
        ]
        await assert_paginates(
            lambda c, n: store.memory.list_profiles(cursor=c, limit=n),
            key=lambda p: p.id,
            expected=sorted(made, key=lambda p: p.id),
        )
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.memory.list_profiles(cursor=c, limit=n)
        )
        await expect_error("not_found", store.memory.get_profile("prof-missing"))

    # ------------------------------------------------------------------ nodes

    async def test_put_node_creates_and_replaces(self, store: Store) -> None:
        pid = await _profile(store)
        path = await store.memory.create_path(pid)
        bare = await store.memory.put_node(pid, "fact", id="n-bare")
        empty = await store.memory.put_node(pid, "fact", content="", attributes={}, path_id=path.id)
        assert (bare.content, bare.attributes) == (None, None)
        assert (empty.content, empty.attributes) == ("", {})
        assert await store.memory.get_node(pid, empty.id) == empty
        last = await _last_event(store)
        assert (last.kind, last.path_id) == ("node.put", path.id)
        again = await store.memory.put_node(pid, "belief", content="new", id="n-bare")
        assert (again.kind, again.content, again.created_at) == ("belief", "new", bare.created_at)
        assert again.updated_at > bare.updated_at
        assert await store.memory.get_node(pid, "n-bare") == again

    async def test_put_node_refusals(self, store: Store) -> None:
        put = store.memory.put_node
        await refused(store, "not_found", put("prof-missing", "fact"))
        pid = await _profile(store)
        await refused(store, "integrity", put(pid, "fact", path_id="path-missing"))
        await refused(store, "invalid", put(pid, ""))
        await refused(store, "invalid", put(pid, "fact", attributes={"x": float("nan")}))
        for bad_id in BAD_IDS:
            await refused(store, "invalid", put(pid, "fact", id=bad_id))

    async def test_get_node_is_scoped_to_profile(self, store: Store) -> None:
        one, two = await _profile(store), await _profile(store, pid="prof-2")
        made = await store.memory.put_node(one, "fact", id="n1")
        await expect_error("not_found", store.memory.get_node(two, made.id))
        await expect_error("not_found", store.memory.get_node(one, "n-missing"))
        await expect_error("not_found", store.memory.get_node("prof-missing", made.id))

    async def test_list_nodes_by_id_and_kind(self, store: Store) -> None:
        pid = await _profile(store)
        made = [
            await store.memory.put_node(pid, "fact" if i % 2 else "goal", id=f"n{c}")
            for i, c in enumerate("dbfagce")
        ]
        await assert_paginates(
            lambda c, n: store.memory.list_nodes(pid, cursor=c, limit=n),
            key=lambda x: x.id,
            expected=sorted(made, key=lambda x: x.id),
        )
        await assert_paginates(
            lambda c, n: store.memory.list_nodes(pid, kind="goal", cursor=c, limit=n),
            key=lambda x: x.id,
            expected=sorted((x for x in made if x.kind == "goal"), key=lambda x: x.id),
        )
        await expect_error("not_found", store.memory.list_nodes("prof-missing"))
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.memory.list_nodes(pid, cursor=c, limit=n)
        )

    async def test_search_nodes_matches_every_word(self, store: Store) -> None:
        pid = await _profile(store)
        texts = ["the cat sat on the mat", "a cat and a dog", "dogs bark", None, "cat mat"]
        for i, text in enumerate(texts):
            await store.memory.put_node(pid, "fact", content=text, id=f"n{i}")

        async def found(text: str) -> list[str]:
            page = await store.memory.search_nodes(pid, text, limit=ALL)
            return [x.id for x in page.items]

        assert await found("cat") == ["n0", "n1", "n4"]
        assert await found("cat mat") == ["n0", "n4"]
        assert await found("dog") == ["n1"]
        assert await found("cat bird") == []
        await assert_paginates(
            lambda c, n: store.memory.search_nodes(pid, "cat", cursor=c, limit=n),
            key=lambda x: x.id,
        )
        await expect_error("invalid", store.memory.search_nodes(pid, ""))
        await expect_error("not_found", store.memory.search_nodes("prof-missing", "cat"))

    async def test_search_nodes_folds_case_and_diacritics_alike(self, store: Store) -> None:
        pid = await _profile(store)
        texts = [unicodedata.normalize("NFD", "Café İstanbul"), "οδος", "Straße", "東京都"]
        for i, text in enumerate(texts):
            await store.memory.put_node(pid, "fact", content=text, id=f"n{i}")

        async def found(text: str) -> list[str]:
            page = await store.memory.search_nodes(pid, text, limit=ALL)
            return [x.id for x in page.items]

        assert await found("cafe istanbul") == ["n0"]
        assert await found("CAFÉ") == ["n0"]
        assert await found("ΟΔΟΣ") == ["n1"]
        assert await found("strasse") == ["n2"]
        assert await found("東京") == []
        assert await found("東京都") == ["n3"]

    # ------------------------------------------------------------------ edges

    async def test_put_edge_and_list_edges(self, store: Store) -> None:
        pid = await _profile(store)
        for n in "abc":
            await store.memory.put_node(pid, "fact", id=n)
        ab = await store.memory.put_edge(pid, "a", "b", "knows", id="e-ab")
        ac = await store.memory.put_edge(pid, "a", "c", "likes", attributes={})
        cb = await store.memory.put_edge(pid, "c", "b", "knows", attributes={"w": 1})
        assert (ab.source_id, ab.target_id, ab.kind, ab.attributes) == ("a", "b", "knows", None)
        assert ac.attributes == {} and await store.memory.get_edge(pid, cb.id) == cb
        assert (await _last_event(store)).kind == "edge.put"

        async def ids(**kw: Any) -> set[str]:
            return {e.id for e in (await store.memory.list_edges(pid, limit=ALL, **kw)).items}

        assert await ids() == {ab.id, ac.id, cb.id}
        assert await ids(source_id="a") == {ab.id, ac.id}
        assert await ids(target_id="b") == {ab.id, cb.id}
        assert await ids(kind="knows", source_id="c") == {cb.id}
        await assert_paginates(
            lambda c, n: store.memory.list_edges(pid, cursor=c, limit=n), key=lambda e: e.id
        )
        replaced = await store.memory.put_edge(pid, "b", "a", "knows", id="e-ab")
        assert await store.memory.get_edge(pid, "e-ab") == replaced

    async def test_put_edge_refusals(self, store: Store) -> None:
        await refused(store, "not_found", store.memory.put_edge("prof-missing", "a", "b", "k"))
        pid, other = await _profile(store), await _profile(store, pid="prof-2")
        await store.memory.put_node(pid, "fact", id="a")
        await store.memory.put_node(other, "fact", id="b")
        put = store.memory.put_edge
        await refused(store, "integrity", put(pid, "a", "missing", "k"))
        await refused(store, "integrity", put(pid, "missing", "a", "k"))
        await refused(store, "integrity", put(pid, "a", "b", "k"))
        await refused(store, "invalid", put(pid, "a", "a", ""))

    async def test_remove_edge(self, store: Store) -> None:
        pid = await _profile(store)
        for n in "ab":
            await store.memory.put_node(pid, "fact", id=n)
        edge = await store.memory.put_edge(pid, "a", "b", "k")
        await store.memory.remove_edge(pid, edge.id, reason="wrong")
        assert (await _last_event(store)).kind == "edge.removed"
        await expect_error("not_found", store.memory.get_edge(pid, edge.id))
        assert (await store.memory.list_edges(pid)).items == []
        await refused(store, "not_found", store.memory.remove_edge(pid, edge.id))
        await expect_error("not_found", store.memory.list_edges("prof-missing"))
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.memory.list_edges(pid, cursor=c, limit=n)
        )

    # ------------------------------------------------------------------ forget (review gate)

    async def test_forget_node_without_approval_review_required(self, store: Store) -> None:
        pid = await _profile(store, policy=None)
        made = await store.memory.put_node(pid, "fact", id="n1")
        await refused(store, "review_required", store.memory.forget_node(pid, "n1"), audited=True)
        assert await store.memory.get_node(pid, "n1") == made
        strict = await _profile(store, ProfilePolicy(review_required=["forget_node"]), "prof-2")
        await store.memory.put_node(strict, "fact", id="n2")
        forget = store.memory.forget_node(strict, "n2", reason="x")
        await refused(store, "review_required", forget, audited=True)

    async def test_forget_node_with_approval_removes_node_and_edges(self, store: Store) -> None:
        pid = await _profile(store, policy=None)
        for n in "abc":
            await store.memory.put_node(pid, "fact", id=n)
        await store.memory.put_edge(pid, "a", "b", "k", id="ab")
        await store.memory.put_edge(pid, "c", "a", "k", id="ca")
        keep = await store.memory.put_edge(pid, "b", "c", "k", id="bc")
        seq = await audit_seq(store)
        await store.memory.forget_node(pid, "a", reason="asked to", approval=APPROVAL)
        records = await assert_audited(store, seq)
        approvals = [r.approval for r in records if r.approval is not None]
        assert [(a.approved_by, a.reason) for a in approvals] == [
            (APPROVAL.approved_by, APPROVAL.reason)
        ]
        assert (await _last_event(store)).kind == "node.forgotten"
        await expect_error("not_found", store.memory.get_node(pid, "a"))
        assert (await store.memory.list_edges(pid)).items == [keep]
        await _assert_graph_is_replay(store, pid)

    async def test_forget_node_policy_without_review(self, store: Store) -> None:
        pid = await _profile(store, ProfilePolicy(review_required=["abandon_path"]))
        await store.memory.put_node(pid, "fact", id="n1")
        await store.memory.forget_node(pid, "n1")
        await expect_error("not_found", store.memory.get_node(pid, "n1"))
        await refused(store, "not_found", store.memory.forget_node(pid, "n1", approval=APPROVAL))
        forget = store.memory.forget_node("prof-missing", "n1", approval=APPROVAL)
        await refused(store, "not_found", forget)

    # ------------------------------------------------------------------ paths

    async def test_create_path_root_and_branch(self, store: Store) -> None:
        pid = await _profile(store)
        root = await store.memory.create_path(pid, name="main", id="path-main")
        assert (root.id, root.name, root.parent_path_id, root.fork_seq) == (
            "path-main", "main", None, None
        )  # fmt: skip
        assert (root.status, root.merged_into, root.compacted_through_seq) == ("active", None, None)
        assert (await _last_event(store)).kind == "path.created"
        await store.memory.put_node(pid, "fact", path_id=root.id)
        last = await store.events.last_seq()
        branch = await store.memory.create_path(pid, parent_path_id=root.id)
        assert (branch.parent_path_id, branch.fork_seq, branch.name) == (root.id, last, None)
        pinned = await store.memory.create_path(pid, name="", parent_path_id=root.id, fork_seq=1)
        assert pinned.fork_seq == 1 and pinned.name == ""
        for path in (root, branch, pinned):
            assert await store.memory.get_path(pid, path.id) == path
        await assert_paginates(
            lambda c, n: store.memory.list_paths(pid, cursor=c, limit=n),
            key=lambda p: p.id,
            expected=sorted([root, branch, pinned], key=lambda p: p.id),
        )

    async def test_create_path_refusals(self, store: Store) -> None:
        create = store.memory.create_path
        await refused(store, "not_found", create("prof-missing"))
        pid = await _profile(store)
        made = await create(pid, id="path-1")
        await refused(store, "integrity", create(pid, parent_path_id="path-missing"))
        assert await create(pid, id="path-1") == made  # same id, same content: a no-op
        await refused(store, "conflict", create(pid, name="other", id="path-1"))
        await create(pid, id="path-2")
        await store.memory.merge_path(pid, "path-2", "path-1")
        await refused(store, "conflict", create(pid, parent_path_id="path-2"))
        for bad_id in BAD_IDS:
            await refused(store, "invalid", create(pid, id=bad_id))

    async def test_path_reads_refusals(self, store: Store) -> None:
        await expect_error("not_found", store.memory.list_paths("prof-missing"))
        pid = await _profile(store)
        await expect_error("not_found", store.memory.get_path(pid, "path-missing"))
        await store.memory.create_path(pid)
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.memory.list_paths(pid, cursor=c, limit=n)
        )

    async def test_merge_path(self, store: Store) -> None:
        pid = await _profile(store)
        main = await store.memory.create_path(pid, id="path-main")
        side = await store.memory.create_path(pid, parent_path_id=main.id, id="path-side")
        merged = await store.memory.merge_path(pid, side.id, main.id)
        assert (merged.status, merged.merged_into) == ("merged", main.id)
        assert await store.memory.get_path(pid, side.id) == merged
        assert (await _last_event(store)).kind == "path.merged"
        other = await store.memory.create_path(pid, id="path-other")
        merge = store.memory.merge_path
        await refused(store, "conflict", merge(pid, side.id, main.id))
        await refused(store, "conflict", merge(pid, other.id, side.id))
        await refused(store, "conflict", merge(pid, other.id, other.id))
        await refused(store, "not_found", merge(pid, "path-missing", main.id))
        await refused(store, "not_found", merge(pid, other.id, "path-missing"))
        await refused(store, "not_found", merge("prof-missing", other.id, main.id))

    async def test_abandon_path_review_gate(self, store: Store) -> None:
        pid = await _profile(store, policy=None)
        path = await store.memory.create_path(pid)
        abandon = store.memory.abandon_path
        await refused(store, "review_required", abandon(pid, path.id, "dead end"), audited=True)
        seq = await audit_seq(store)
        done = await abandon(pid, path.id, "dead end", approval=APPROVAL)
        assert (done.status, done.abandoned_reason) == ("abandoned", "dead end")
        assert await store.memory.get_path(pid, path.id) == done
        assert any(r.approval is not None for r in await assert_audited(store, seq))
        assert (await _last_event(store)).kind == "path.abandoned"
        await refused(store, "conflict", abandon(pid, path.id, "again", approval=APPROVAL))
        await refused(store, "not_found", abandon(pid, "path-missing", "x", approval=APPROVAL))

    async def test_compact_path_review_gate(self, store: Store) -> None:
        pid = await _profile(store, policy=None)
        path = await store.memory.create_path(pid)
        for i in range(3):
            await store.memory.put_node(pid, "fact", content=f"c{i}", path_id=path.id)
        through = await store.events.last_seq()
        on_path = EventQuery(path_id=path.id, through_seq=through)
        before = await collect(lambda c: store.events.list(on_path, cursor=c))
        compact = store.memory.compact_path
        gate = compact(pid, path.id, through_seq=through, summary="three facts")
        await refused(store, "review_required", gate, audited=True)
        seq = await audit_seq(store)
        done = await compact(pid, path.id, through_seq=through, summary="s", approval=APPROVAL)
        assert done.compacted_through_seq == through and done.status == "active"
        assert any(r.approval is not None for r in await assert_audited(store, seq))
        assert await collect(lambda c: store.events.list(on_path, cursor=c)) == before
        compacted = EventQuery(kinds=["path.compacted"], path_id=path.id)
        assert len(await collect(lambda c: store.events.list(compacted, cursor=c))) == 1
        for bad in (through, through - 1):
            again = compact(pid, path.id, through_seq=bad, summary="s", approval=APPROVAL)
            await refused(store, "invalid", again)
        gone = compact(pid, "path-missing", through_seq=through, summary="s", approval=APPROVAL)
        await refused(store, "not_found", gone)
        await store.memory.put_node(pid, "fact", path_id=path.id)
        later = await store.events.last_seq()
        moved = await compact(pid, path.id, through_seq=later, summary="s", approval=APPROVAL)
        assert moved.compacted_through_seq == later

    # ------------------------------------------------------------------ graph and replay

    async def test_graph_equals_replay_after_mixed_history(self, store: Store) -> None:
        pid, other = await _profile(store, policy=None), await _profile(store, pid="prof-2")
        mem = store.memory
        main = await mem.create_path(pid, id="path-main")
        for n in "abcd":
            await mem.put_node(pid, "fact", content=f"node {n}", id=n, path_id=main.id)
        await mem.put_node(other, "fact", id="a")
        await mem.put_edge(pid, "a", "b", "k", id="ab")
        await mem.put_edge(pid, "b", "c", "k", id="bc", attributes={})
        await mem.put_edge(pid, "c", "d", "k", id="cd")
        middle = await mem.graph(pid, view="all")
        middle_seq = await store.events.last_seq()
        await mem.update_profile(pid, attributes={"mood": "ok"})
        side = await mem.create_path(pid, parent_path_id=main.id, id="path-side")
        await mem.put_node(pid, "fact", content="changed", id="a", path_id=side.id)
        await mem.remove_edge(pid, "cd")
        await mem.forget_node(pid, "b", approval=APPROVAL)
        await mem.merge_path(pid, side.id, main.id)
        dead = await mem.create_path(pid, id="path-dead")
        await mem.abandon_path(pid, dead.id, "no", approval=APPROVAL)
        last = await store.events.last_seq()
        await mem.compact_path(pid, main.id, through_seq=last, summary="s", approval=APPROVAL)
        graph = await mem.graph(pid, view="all")
        assert dump(graph) == dump(await mem.replay(pid, view="all"))
        assert [n.id for n in graph.nodes if n.id in "abcd"] == ["a", "c", "d"]
        assert [e.id for e in graph.edges] == []
        assert {p.id: p.status for p in graph.paths} == {
            "path-dead": "abandoned", "path-main": "active", "path-side": "merged"
        }  # fmt: skip
        assert dump(await mem.replay(pid, view="all", through_seq=middle_seq)) == dump(middle)
        main_line = await mem.graph(pid)  # path-main, the one active root: no path-dead
        assert [p.id for p in main_line.paths] == ["path-main", "path-side"]
        assert dump(main_line) == dump(await mem.graph(pid, path_id="path-main"))
        await _assert_graph_is_replay(store, pid)
        assert [n.id for n in (await mem.graph(other)).nodes] == ["a"]
        await expect_error("not_found", mem.graph("prof-missing"))
        await expect_error("not_found", mem.replay("prof-missing"))

    @PROPERTY
    @given(
        ops=st.lists(
            st.tuples(st.integers(0, 6), st.integers(0, 4), st.integers(0, 4)), max_size=15
        )
    )
    async def test_graph_equals_replay_for_any_history(
        self, store: Store, ops: list[tuple[int, int, int]]
    ) -> None:
        async with self.scratch_store() as fresh:
            pid = await _profile(fresh)
            mem = fresh.memory
            paths: dict[str, bool] = {}  # path id: still active
            for op, x, y in ops:
                nodes = {n.id for n in (await mem.list_nodes(pid, limit=ALL)).items}
                live = [p for p, active in paths.items() if active]
                # writes go to any path (even merged or abandoned ones), or to none
                on = None if not paths or y == 0 else list(paths)[y % len(paths)]
                if op == 0 or (op < 4 and f"n{x}" not in nodes):
                    await mem.put_node(pid, "fact", content=f"v{y}", id=f"n{x}", path_id=on)
                elif op == 1 and f"n{y}" in nodes:
                    await mem.put_edge(pid, f"n{x}", f"n{y}", "k", id=f"e{x}{y}", path_id=on)
                elif op == 2:
                    await mem.forget_node(pid, f"n{x}", path_id=on)
                elif op == 3:
                    edges = (await mem.list_edges(pid, source_id=f"n{x}", limit=ALL)).items
                    for edge in edges[:1]:
                        await mem.remove_edge(pid, edge.id)
                elif op == 4:  # a root path (x == 0) or a branch of a live path
                    parent = live[y % len(live)] if live and x else None
                    made = await mem.create_path(pid, parent_path_id=parent, id=f"p{len(paths)}")
                    paths[made.id] = True
                elif op == 5 and len(live) > 1 and x % len(live) != y % len(live):
                    await mem.merge_path(pid, live[x % len(live)], live[y % len(live)])
                    paths[live[x % len(live)]] = False
                elif op == 6 and live:
                    await mem.abandon_path(pid, live[x % len(live)], "dead end")
                    paths[live[x % len(live)]] = False
            await _assert_graph_is_replay(fresh, pid)

    async def test_views_of_a_branched_conversation(self, store: Store) -> None:
        pid = await _profile(store)
        mem = store.memory
        await mem.put_node(pid, "fact", content="profile-wide", id="w")
        main = (await mem.create_path(pid, name="main", id="path-main")).id
        await mem.put_node(pid, "fact", content="v1", id="a", path_id=main)
        side = (await mem.create_path(pid, parent_path_id=main, id="path-side")).id
        await mem.put_node(pid, "idea", content="merged in", id="b", path_id=side)
        await mem.put_edge(pid, "b", "a", "refines", id="ba", path_id=side)
        await mem.put_node(pid, "fact", content="v2", id="a", path_id=main)
        dead = (await mem.create_path(pid, parent_path_id=main, id="path-dead")).id
        await mem.put_node(pid, "idea", content="dead end", id="d", path_id=dead)
        await mem.abandon_path(pid, dead, "went nowhere")
        open_ = (await mem.create_path(pid, parent_path_id=main, id="path-open")).id
        await mem.put_node(pid, "idea", content="not merged yet", id="o", path_id=open_)
        before_merge = await store.events.last_seq()
        await mem.merge_path(pid, side, main)

        def contents(graph: Any) -> dict[str, str | None]:
            return {n.id: n.content for n in graph.nodes}

        main_line = await mem.graph(pid)  # the one active root path
        assert contents(main_line) == {"w": "profile-wide", "a": "v2", "b": "merged in"}
        assert [e.id for e in main_line.edges] == ["ba"]
        assert {p.id: p.status for p in main_line.paths} == {main: "active", side: "merged"}
        assert dump(main_line) == dump(await mem.graph(pid, path_id=main))
        everything = await mem.graph(pid, view="all")
        assert set(contents(everything)) == {"w", "a", "b", "d", "o"}
        assert [n.id for n in (await mem.list_nodes(pid, limit=ALL)).items] == sorted(
            contents(everything)
        )
        assert {p.id: p.status for p in everything.paths} == {
            main: "active", side: "merged", dead: "abandoned", open_: "active"
        }  # fmt: skip
        at_dead = await mem.graph(pid, path_id=dead)  # forked after v2
        assert contents(at_dead) == {"w": "profile-wide", "a": "v2", "d": "dead end"}
        assert {p.id: p.status for p in at_dead.paths} == {main: "active", dead: "abandoned"}
        at_side = await mem.graph(pid, path_id=side)  # forked before v2
        assert contents(at_side) == {"w": "profile-wide", "a": "v1", "b": "merged in"}
        earlier = await mem.replay(pid, through_seq=before_merge)
        assert contents(earlier) == {"w": "profile-wide", "a": "v2"}
        earlier_all = await mem.replay(pid, view="all", through_seq=before_merge)
        assert set(contents(earlier_all)) == {"w", "a", "b", "d", "o"}
        await _assert_graph_is_replay(store, pid)

        # compaction changes what is read, never a graph
        last = await store.events.last_seq()
        await mem.compact_path(pid, main, through_seq=last, summary="so far")
        views: list[dict[str, Any]] = [{}, {"view": "all"}, {"path_id": dead}]
        for kw in views:
            after = await mem.graph(pid, **kw)
            assert contents(after) == contents(await mem.replay(pid, **kw, through_seq=last))
        # the reading view: main's own events give way to the summary; the
        # events of what merged into main are the merged path's, so they stay
        reading = await drain(mem.iterate_events(pid, compacted=True))
        assert [(e.path_id, e.kind) for e in reading if e.path_id is not None] == [
            (side, "node.put"), (side, "edge.put"), (main, "path.compacted")
        ]  # fmt: skip
        kept = await drain(mem.iterate_events(pid))
        assert [e.path_id for e in kept if e.kind == "node.put"] == [None, main, side, main]

    async def test_main_line_without_a_single_active_root(self, store: Store) -> None:
        pid = await _profile(store)
        mem = store.memory
        await mem.put_node(pid, "fact", content="everyone sees this", id="w")
        assert dump(await mem.graph(pid)) == dump(await mem.graph(pid, view="all"))
        one = (await mem.create_path(pid, id="path-1")).id
        await mem.put_node(pid, "fact", id="one", path_id=one)
        assert [n.id for n in (await mem.graph(pid)).nodes] == ["one", "w"]
        two = (await mem.create_path(pid, id="path-2")).id
        error = await expect_error("conflict", mem.graph(pid))
        assert error.details["paths"] == [one, two] and "path_id=" in error.message
        await expect_error("conflict", mem.replay(pid))
        await expect_error("conflict", mem.list_events(pid))
        await mem.abandon_path(pid, one, "no")
        assert [n.id for n in (await mem.graph(pid)).nodes] == ["w"]  # path-2 is main
        await mem.abandon_path(pid, two, "no")
        alone = await mem.graph(pid)  # no active root: the profile-wide events alone
        assert ([n.id for n in alone.nodes], alone.paths) == (["w"], [])
        assert [n.id for n in (await mem.graph(pid, path_id=one)).nodes] == ["one", "w"]
        await _assert_graph_is_replay(store, pid)

    async def test_view_refusals(self, store: Store) -> None:
        mem = store.memory
        for call in (mem.graph, mem.replay, mem.list_events):
            await expect_error("not_found", call("prof-missing"))
        pid = await _profile(store)
        path = (await mem.create_path(pid)).id
        for call in (mem.graph, mem.replay, mem.list_events):
            await expect_error("not_found", call(pid, path_id="path-missing"))
            await expect_error("invalid", call(pid, path_id="../x"))
            await expect_error("invalid", call(pid, view="everything"))  # type: ignore[arg-type]
            await expect_error("invalid", call(pid, path_id=path, view="all"))
        for seq in (-1, "3", True):
            await expect_error("invalid", mem.replay(pid, through_seq=seq))  # type: ignore[arg-type]
        await expect_error("invalid", drain(mem.iterate_events(pid, view="x")))  # type: ignore[arg-type]
        await expect_error("not_found", drain(mem.iterate_events(pid, path_id="path-missing")))

    async def test_list_events_pages_a_view(self, store: Store) -> None:
        pid = await _profile(store)
        mem = store.memory
        main = (await mem.create_path(pid, id="path-main")).id
        side = (await mem.create_path(pid, parent_path_id=main, id="path-side")).id
        for i in range(4):
            await mem.put_node(pid, "fact", id=f"m{i}", path_id=main)
            await mem.put_node(pid, "fact", id=f"s{i}", path_id=side)
        views: list[dict[str, Any]] = [{}, {"path_id": side}, {"view": "all"}, {"compacted": True}]
        for kw in views:

            def page(c: str | None, n: int, kw: dict[str, Any] = kw) -> Any:
                return mem.list_events(pid, cursor=c, limit=n, **kw)

            listed = await assert_paginates(
                page,
                key=lambda e: e.id,
                expected=await drain(mem.iterate_events(pid, batch_size=2, **kw)),
            )
            seqs = [e.seq or 0 for e in listed]
            assert seqs == sorted(seqs)
        main_line = await drain(mem.iterate_events(pid))
        nodes = [e.payload.node_id for e in main_line if isinstance(e.payload, NodePut)]
        assert nodes == [f"m{i}" for i in range(4)]
        await assert_listing_refuses_bad_paging(
            lambda c, n: mem.list_events(pid, cursor=c, limit=n)
        )

    # ------------------------------------------------------------------ activations

    async def test_record_activation_round_trips(self, store: Store) -> None:
        pid = await _profile(store)
        path = await store.memory.create_path(pid)
        for n in "ab":
            await store.memory.put_node(pid, "fact", id=n)
        items = [
            ActivationItem(node_id="a", reason="asked", score=0.5),
            ActivationItem(node_id="b"),
        ]
        plan = await store.memory.record_activation(
            pid, items, path_id=path.id, context_id="ctx", planner="p1", id="plan-1"
        )
        assert (plan.id, plan.items, plan.path_id, plan.context_id, plan.planner) == (
            "plan-1", items, path.id, "ctx", "p1"
        )  # fmt: skip
        plain = [await store.memory.record_activation(pid, []) for _ in range(4)]
        assert plain[0].items == [] and plain[0].path_id is None
        listed = await assert_paginates(
            lambda c, n: store.memory.list_activations(pid, cursor=c, limit=n),
            key=lambda p: p.id,
            expected=sorted([plan, *plain], key=lambda p: p.id),
        )
        assert plan in listed
        on_path = await store.memory.list_activations(pid, path_id=path.id)
        assert on_path.items == [plan]

    async def test_record_activation_refusals(self, store: Store) -> None:
        record = store.memory.record_activation
        await refused(store, "not_found", record("prof-missing", []))
        await expect_error("not_found", store.memory.list_activations("prof-missing"))
        pid = await _profile(store)
        await refused(store, "integrity", record(pid, [ActivationItem(node_id="missing")]))
        await refused(store, "integrity", record(pid, [], path_id="path-missing"))
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.memory.list_activations(pid, cursor=c, limit=n)
        )

    # ------------------------------------------------------------------ audit and durability

    async def test_mutations_are_audited(self, store: Store) -> None:
        seq = await audit_seq(store)
        pid = await _profile(store)
        await assert_audited(store, seq, pid)
        mem = store.memory
        steps: list[Any] = [
            lambda: mem.update_profile(pid, name="renamed"),
            lambda: mem.put_node(pid, "fact", id="a"),
            lambda: mem.put_node(pid, "fact", id="b"),
            lambda: mem.put_edge(pid, "a", "b", "k", id="ab"),
            lambda: mem.remove_edge(pid, "ab"),
            lambda: mem.create_path(pid, id="path-1"),
            lambda: mem.create_path(pid, id="path-2"),
            lambda: mem.merge_path(pid, "path-2", "path-1"),
            lambda: mem.record_activation(pid, [ActivationItem(node_id="a")]),
            lambda: mem.forget_node(pid, "b"),
        ]
        for step in steps:
            seq = await audit_seq(store)
            await step()
            await assert_audited(store, seq)
        assert len(await audit_since(store, 0)) >= len(steps) + 1

    async def test_memory_survives_reopen(self, store: Store) -> None:
        pid = await _profile(store)
        for n in "ab":
            await store.memory.put_node(pid, "fact", content=n, id=n)
        await store.memory.put_edge(pid, "a", "b", "k", id="ab")
        await store.memory.create_path(pid, id="path-1")
        graph = await store.memory.graph(pid)
        reopened = await self.reopen(store)
        assert dump(await reopened.memory.graph(pid)) == dump(graph)
        await _assert_graph_is_replay(reopened, pid)
