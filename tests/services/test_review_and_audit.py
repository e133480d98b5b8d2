"""The review gate and the audit chain."""

from __future__ import annotations

import itertools

import pytest

import keepstone
from keepstone.schemas import ApprovalMarker, AuditQuery, LifecycleAction, ProfilePolicy

OK = ApprovalMarker(approved_by="alice", reason="cleanup")


async def test_unapproved_action_is_refused_and_audited_as_denied(store: keepstone.Store) -> None:
    p = (await store.memory.create_profile("agent")).id
    n = (await store.memory.put_node(p, "fact", content="secret")).id
    action = LifecycleAction(kind="forget_node", target=n, profile_id=p)
    assert await store.review.requires_review(action)
    with pytest.raises(keepstone.StorageError) as info:
        await store.review.apply(action)
    assert info.value.code == "review_required"
    assert (await store.memory.get_node(p, n)).content == "secret"
    denied = (await store.audit.list(AuditQuery(outcome="denied"))).items
    assert [(r.action, r.target) for r in denied] == [("lifecycle.forget_node", n)]


async def test_approved_action_applies_and_audit_carries_the_approval(
    store: keepstone.Store,
) -> None:
    p = (await store.memory.create_profile("agent")).id
    n = (await store.memory.put_node(p, "fact")).id
    await store.review.apply(LifecycleAction(kind="forget_node", target=n, profile_id=p), OK)
    with pytest.raises(keepstone.StorageError):
        await store.memory.get_node(p, n)
    applied = (await store.audit.list(AuditQuery(action="lifecycle.forget_node"))).items
    assert applied[-1].outcome == "applied"
    assert applied[-1].approval is not None
    assert applied[-1].approval.approved_by == "alice"


async def test_profile_policy_can_waive_review(store: keepstone.Store) -> None:
    policy = ProfilePolicy(review_required=["compact_path"])
    p = (await store.memory.create_profile("agent", policy=policy)).id
    n = (await store.memory.put_node(p, "fact")).id
    forget = LifecycleAction(kind="forget_node", target=n, profile_id=p)
    assert not await store.review.requires_review(forget)
    await store.review.apply(forget)  # no approval needed
    compact = LifecycleAction(kind="compact_path", target="x", profile_id=p)
    assert await store.review.requires_review(compact)


async def test_purge_revision_bytes_through_the_gate(store: keepstone.Store) -> None:
    coll = (await store.artifacts.create_collection("docs")).id
    art = await store.artifacts.create(coll, "doc", "v1 with pii")
    await store.artifacts.update(art.id, "v2 clean")
    action = LifecycleAction(kind="purge_artifact", target=art.id, params={"revision": 1})
    with pytest.raises(keepstone.StorageError) as info:
        await store.review.apply(action)
    assert info.value.code == "review_required"
    assert await store.artifacts.read(art.id, revision=1) == b"v1 with pii"
    await store.review.apply(action, OK)
    with pytest.raises(keepstone.StorageError) as info:
        await store.artifacts.read(art.id, revision=1)
    assert info.value.code == "not_found"
    assert (await store.artifacts.get_revision(art.id, 1)).purged
    assert await store.artifacts.read(art.id) == b"v2 clean"
    assert [c.action for c in (await store.artifacts.changes(artifact_id=art.id)).items] == [
        "create",
        "update",
        "purge",
    ]
    # the head of a live artifact cannot be purged
    head = LifecycleAction(kind="purge_artifact", target=art.id, params={"revision": 2})
    with pytest.raises(keepstone.StorageError) as info:
        await store.review.apply(head, OK)
    assert info.value.code == "conflict"


async def test_audit_chain_links_every_record(store: keepstone.Store) -> None:
    await store.runs.create("a")
    await store.memory.create_profile("agent")
    records = (await store.audit.list()).items
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    verdict = await store.audit.verify()
    assert verdict.ok and verdict.checked == len(records)
