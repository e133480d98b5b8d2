"""Conversational paths: branch, diverge, merge, abandon, compact; deterministic replay.

What a path sees is read with ``store.memory.graph/replay/list_events(...,
path_id=...)``; ``store.paths`` keeps the tree (and, for this release, the old
``graph_at``/``events_at`` names).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import keepstone
from keepstone.schemas import ApprovalMarker, canonical_json

OK = ApprovalMarker(approved_by="alice", reason="test")


def node_ids(graph: Any) -> list[str]:
    return [n.id for n in graph.nodes]


async def test_branch_diverge_merge(store: keepstone.Store) -> None:
    p = (await store.memory.create_profile("agent", id="agent")).id
    main = (await store.memory.create_path(p, name="main", id="main")).id
    await store.memory.put_node(p, "fact", content="before fork", id="n_before", path_id=main)
    branch = (await store.memory.create_path(p, parent_path_id=main, id="branch")).id
    await store.memory.put_node(p, "fact", content="only on main", id="n_main", path_id=main)
    await store.memory.put_node(p, "idea", content="only on branch", id="n_branch", path_id=branch)
    await store.memory.put_edge(p, "n_branch", "n_before", "refines", id="e1", path_id=branch)

    assert node_ids(await store.memory.graph(p, path_id=main)) == ["n_before", "n_main"]
    at_branch = await store.memory.graph(p, path_id=branch)
    assert node_ids(at_branch) == ["n_before", "n_branch"]
    assert [e.id for e in at_branch.edges] == ["e1"]

    merged = await store.memory.merge_path(p, branch, main)
    assert merged.status == "merged" and merged.merged_into == main
    after = await store.memory.graph(p)  # main is the one active root path
    assert node_ids(after) == ["n_before", "n_branch", "n_main"]
    assert [e.id for e in after.edges] == ["e1"]
    # a merged path cannot merge again
    with pytest.raises(keepstone.StorageError) as info:
        await store.memory.merge_path(p, branch, main)
    assert info.value.code == "conflict"


async def test_branch_does_not_see_parent_events_after_the_fork(store: keepstone.Store) -> None:
    p = (await store.memory.create_profile("agent")).id
    main = (await store.memory.create_path(p)).id
    await store.memory.put_node(p, "fact", content="v1", id="n", path_id=main)
    branch = (await store.memory.create_path(p, parent_path_id=main)).id
    await store.memory.put_node(p, "fact", content="v2 on main", id="n", path_id=main)
    at_branch = await store.memory.graph(p, path_id=branch)
    assert [n.content for n in at_branch.nodes] == ["v1"]
    at_main = await store.memory.graph(p, path_id=main)
    assert [n.content for n in at_main.nodes] == ["v2 on main"]


async def test_abandon_needs_review_and_records_reason(store: keepstone.Store) -> None:
    p = (await store.memory.create_profile("agent")).id
    branch = (await store.memory.create_path(p)).id
    with pytest.raises(keepstone.StorageError) as info:
        await store.memory.abandon_path(p, branch, "dead end")
    assert info.value.code == "review_required"
    assert (await store.memory.get_path(p, branch)).status == "active"
    path = await store.memory.abandon_path(p, branch, "dead end", approval=OK)
    assert (path.status, path.abandoned_reason) == ("abandoned", "dead end")


async def test_compaction_replaces_a_range_for_reading_only(store: keepstone.Store) -> None:
    p = (await store.memory.create_profile("agent")).id
    path = (await store.memory.create_path(p)).id
    for i in range(4):
        await store.memory.put_node(p, "turn", content=f"turn {i}", id=f"t{i}", path_id=path)
    full = (await store.memory.list_events(p, path_id=path)).items
    through = full[-2].seq
    assert through is not None
    await store.memory.compact_path(
        p, path, through_seq=through, summary="turns 0-2 in short", approval=OK
    )
    view = (await store.memory.list_events(p, path_id=path, compacted=True)).items
    kinds = [e.kind for e in view]
    assert "path.compacted" in kinds
    assert [e.payload.node_id for e in view if e.kind == "node.put"] == ["t3"]  # type: ignore[union-attr]
    # originals stay addressable, and the graph is unchanged by compaction
    for event in full:
        assert (await store.events.get(event.id)).seq == event.seq
    assert node_ids(await store.memory.graph(p, path_id=path)) == ["t0", "t1", "t2", "t3"]


async def test_path_tree_shows_branches(store: keepstone.Store) -> None:
    p = (await store.memory.create_profile("agent")).id
    root = (await store.memory.create_path(p, id="root")).id
    await store.memory.create_path(p, parent_path_id=root, id="b1")
    await store.memory.create_path(p, parent_path_id=root, id="b2")
    tree = await store.paths.tree(p)
    assert [n.path.id for n in tree] == ["root"]
    assert [c.path.id for c in tree[0].children] == ["b1", "b2"]


async def scripted(store: keepstone.Store) -> bytes:
    p = (await store.memory.create_profile("agent", id="agent")).id
    main = (await store.memory.create_path(p, id="main")).id
    await store.memory.put_node(p, "fact", content="a", id="a", path_id=main)
    branch = (await store.memory.create_path(p, parent_path_id=main, id="br")).id
    await store.memory.put_node(p, "fact", content="b", id="b", path_id=branch)
    await store.memory.put_edge(p, "b", "a", "rel", id="e", path_id=branch)
    await store.memory.merge_path(p, branch, main)
    graph = await store.memory.graph(p, path_id=main)
    return canonical_json(graph.model_dump(mode="json"))


async def test_same_events_give_byte_identical_graphs(
    store: keepstone.Store, open_store: Callable[..., Any]
) -> None:
    first = await scripted(store)
    async with keepstone.open(
        "memory://", clock=keepstone.FixedClock(), ids=keepstone.SequentialIds()
    ) as other:
        second = await scripted(other)
        assert first == second
        # replaying the stored events into a fresh store reproduces the graph
        events = [e.model_copy(update={"seq": None}) async for e in store.events.iterate()]
        async with keepstone.open("memory://") as fresh:
            await fresh.events.append(events)
            replayed = await fresh.memory.replay("agent", path_id="main")
            assert canonical_json(replayed.model_dump(mode="json")) == first


async def test_abandoned_branches_leave_the_main_line(store: keepstone.Store) -> None:
    p = (await store.memory.create_profile("agent")).id
    main = (await store.memory.create_path(p, name="main")).id
    await store.memory.put_node(p, "fact", content="kept", id="kept", path_id=main)
    dead = (await store.memory.create_path(p, parent_path_id=main)).id
    await store.memory.put_node(p, "idea", content="dropped", id="dropped", path_id=dead)
    await store.memory.abandon_path(p, dead, "dead end", approval=OK)
    assert node_ids(await store.memory.graph(p)) == ["kept"]
    assert node_ids(await store.memory.replay(p)) == ["kept"]
    assert node_ids(await store.memory.graph(p, view="all")) == ["dropped", "kept"]
    assert node_ids(await store.memory.graph(p, path_id=dead)) == ["dropped", "kept"]


async def test_the_old_names_still_work_and_say_what_replaces_them(
    store: keepstone.Store,
) -> None:
    p = (await store.memory.create_profile("agent")).id
    main = (await store.memory.create_path(p)).id
    await store.memory.put_node(p, "fact", id="n", path_id=main)
    with pytest.warns(DeprecationWarning, match=r"store\.memory\.replay"):
        graph = await store.paths.graph_at(p, main)
    assert graph == await store.memory.graph(p, path_id=main)
    with pytest.warns(DeprecationWarning, match=r"store\.memory\.list_events"):
        events = await store.paths.events_at(p, main)
    assert events == (await store.memory.list_events(p, path_id=main)).items
