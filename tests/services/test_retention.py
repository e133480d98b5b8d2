"""Retention: plan lists exactly what goes; apply goes through the review gate."""

from __future__ import annotations

from datetime import timedelta

import pytest

import keepstone
from keepstone.schemas import ApprovalMarker, AuditQuery, RetentionPolicy

OK = ApprovalMarker(approved_by="ops", reason="retention")


async def finished_run(store: keepstone.Store, name: str, lines: int) -> str:
    async with store.runs.start(name) as run:
        for i in range(lines):
            await run.log("tick", f"line {i}")
    return run.id


async def test_log_retention_keeps_the_last_n_finished_runs(store: keepstone.Store) -> None:
    old = await finished_run(store, "a", 3)
    mid = await finished_run(store, "b", 2)
    new = await finished_run(store, "c", 1)
    unfinished = (await store.runs.create("d")).id
    await store.runs.transition(unfinished, "running")
    await store.logs.write(unfinished, "still going")

    plan = await store.retention.plan(RetentionPolicy(applies_to="logs", keep_last=1))
    assert [(i.kind, i.run_id) for i in plan.items] == [("logs", mid), ("logs", old)]

    with pytest.raises(keepstone.StorageError) as info:
        await store.retention.apply(plan)
    assert info.value.code == "review_required"
    assert len((await store.logs.read(old)).items) == 3  # nothing removed

    report = await store.retention.apply(plan, OK)
    assert (report.log_streams, report.log_lines) == (2, 5)
    assert (await store.logs.read(old)).items == []
    assert await store.logs.reference(old) is None
    assert len((await store.logs.read(new)).items) == 1
    assert len((await store.logs.read(unfinished)).items) == 1
    audited = (await store.audit.list(AuditQuery(action="lifecycle.apply_retention"))).items
    assert {r.target for r in audited if r.outcome == "applied"} >= {old, mid}
    assert all(r.approval is not None for r in audited if r.outcome == "applied")


async def test_log_retention_by_age(store: keepstone.Store) -> None:
    run_id = await finished_run(store, "a", 1)
    none_yet = await store.retention.plan(
        RetentionPolicy(applies_to="logs", max_age=timedelta(days=1))
    )
    assert none_yet.items == []
    everything = await store.retention.plan(
        RetentionPolicy(applies_to="logs", max_age=timedelta(microseconds=1))
    )
    assert [i.run_id for i in everything.items] == [run_id]


async def test_snapshot_retention_never_prunes_an_unfinished_runs_resume_point(
    store: keepstone.Store,
) -> None:
    live = (await store.runs.create("live")).id
    await store.runs.transition(live, "running")
    done = (await store.runs.create("done")).id
    await store.runs.transition(done, "running")
    for i in range(3):
        await store.runs.save_snapshot(live, {"i": i})
        await store.runs.save_snapshot(done, {"i": i})
    await store.runs.transition(done, "succeeded")

    plan = await store.retention.plan(RetentionPolicy(applies_to="snapshots", keep_last=0))
    by_run = {i.run_id: i.snapshot_numbers for i in plan.items}
    assert by_run == {live: [1, 2], done: [1, 2, 3]}
    report = await store.retention.apply(plan, OK)
    assert report.snapshots == 5
    latest = await store.runs.latest_snapshot(live)
    assert latest is not None and latest.state == {"i": 2}
    assert await store.runs.latest_snapshot(done) is None
    # pruning the resume point directly is refused
    with pytest.raises(keepstone.StorageError) as info:
        await store.runs.prune_snapshots(live, [3], approval=OK)
    assert info.value.code == "conflict"
