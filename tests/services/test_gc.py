"""Blob garbage collection: plans exactly the unreferenced blobs, deletes them
only under review, and never deletes bytes that are (or became) referenced."""

from __future__ import annotations

import pytest

import keepstone
from keepstone.schemas import ApprovalMarker, AuditQuery, RetentionPolicy

OK = ApprovalMarker(approved_by="ops", reason="gc")


async def referenced_everything(store: keepstone.Store) -> dict[str, str]:
    """A revision (of a deleted artifact too), snapshot parts and a sealed log."""
    async with store.runs.start("etl") as run, run.step("load"):
        await run.checkpoint({"big": "x" * 5000, "n": 1})
        await run.checkpoint({"big": "x" * 5000, "n": 2})
        await run.log("hello")
    docs = await store.artifacts.create_collection("docs")
    kept = await store.artifacts.create(docs.id, "kept", "kept bytes")
    gone = await store.artifacts.create(docs.id, "gone", "tombstoned bytes")
    await store.artifacts.delete(gone.id)
    return {"run": run.id, "kept": kept.digest, "gone": gone.digest}


async def test_plan_lists_only_blobs_nothing_refers_to(store: keepstone.Store) -> None:
    ids = await referenced_everything(store)
    orphan = await store.blobs.put(b"nobody links to me")

    plan = await store.gc.plan()

    assert [b.digest for b in plan.unreferenced] == [orphan.digest]
    assert plan.bytes == orphan.size
    assert plan.referenced > 3
    refs = await store.gc.references()
    assert {ids["kept"], ids["gone"]} <= refs
    log = await store.logs.reference(ids["run"])
    assert log is not None and log.digest in refs


async def test_apply_needs_approval_and_audits_the_refusal(store: keepstone.Store) -> None:
    orphan = await store.blobs.put(b"orphan")
    plan = await store.gc.plan()

    with pytest.raises(keepstone.StorageError) as info:
        await store.gc.apply(plan)
    assert info.value.code == "review_required"
    assert await store.blobs.exists(orphan.digest)
    denied = (await store.audit.list(AuditQuery(action="lifecycle.gc_blobs"))).items
    assert [r.outcome for r in denied] == ["denied"]


async def test_apply_deletes_unreferenced_blobs_and_the_store_stays_whole(
    store: keepstone.Store,
) -> None:
    ids = await referenced_everything(store)
    orphans = [await store.blobs.put(b"orphan %d" % i) for i in range(3)]

    report = await store.gc.apply(await store.gc.plan(), approval=OK)

    assert sorted(b.digest for b in report.deleted) == sorted(o.digest for o in orphans)
    assert report.skipped == []
    for orphan in orphans:
        assert not await store.blobs.exists(orphan.digest)
    assert (await store.gc.plan()).unreferenced == []
    records = (await store.audit.list(AuditQuery(action="lifecycle.gc_blobs"))).items
    assert [(r.outcome, r.approval) for r in records] == [("applied", OK)]
    assert records[0].details is not None and len(records[0].details["digests"]) == 3
    assert (await store.runs.latest_snapshot(ids["run"])) is not None
    report_after = await store.diagnose()
    assert report_after.ok, report_after.diagnostics
    assert (await store.audit.verify()).ok


async def test_a_blob_that_gained_a_reference_since_planning_is_kept(
    store: keepstone.Store,
) -> None:
    orphan = await store.blobs.put(b"soon referenced")
    plan = await store.gc.plan()
    docs = await store.artifacts.create_collection("docs")
    art = await store.artifacts.create(docs.id, "late", b"soon referenced")
    assert art.digest == orphan.digest

    report = await store.gc.apply(plan, approval=OK)

    assert report.deleted == [] and report.skipped == [orphan.digest]
    assert await store.artifacts.read(art.id) == b"soon referenced"


async def test_parts_of_pruned_snapshots_become_collectable(store: keepstone.Store) -> None:
    async with store.runs.start("etl") as run:
        await run.checkpoint({"a": "first " * 100})
        await run.checkpoint({"a": "second " * 100})
    policy = RetentionPolicy(applies_to="snapshots", keep_last=1)
    await store.retention.apply(await store.retention.plan(policy), approval=OK)

    plan = await store.gc.plan()
    assert len(plan.unreferenced) == 1
    await store.gc.apply(plan, approval=OK)
    latest = await store.runs.latest_snapshot(run.id)
    assert latest is not None and latest.state == {"a": "second " * 100}


async def test_delete_unreferenced_refuses_malformed_digests(store: keepstone.Store) -> None:
    with pytest.raises(keepstone.StorageError) as info:
        await store.blobs.delete_unreferenced(["sha256:nope"], approval=OK)
    assert info.value.code == "invalid"
    assert await store.blobs.delete_unreferenced([], approval=OK) == []
