"""The doctor: finds each kind of damage, and repairs what it can under review."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

import keepstone
from keepstone.engine import tables as T
from keepstone.engine.spi import BlobPut, Delete, Put, WriteBatch
from keepstone.schemas import ApprovalMarker
from tests.services.test_snapshots import populate

OK = ApprovalMarker(approved_by="ops", reason="doctor")


def engine(store: keepstone.Store) -> Any:
    return store.backend.engine  # type: ignore[attr-defined]


async def raw_rows(store: keepstone.Store, table: Any, **where: Any) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in await engine(store).find(table, where or None)]


def codes(report: Any) -> set[str]:
    return {d.code for d in report.diagnostics}


async def test_a_healthy_store_is_clean(store: keepstone.Store) -> None:
    await populate(store)
    report = await store.diagnose()
    assert report.ok, report.diagnostics
    assert [d for d in report.diagnostics if d.severity != "info"] == []
    assert report.checked["events"] > 0 and report.checked["blobs"] > 0


async def test_deleted_node_row_breaks_graph_and_edges_and_is_rebuilt(
    store: keepstone.Store,
) -> None:
    await populate(store)
    edge = (await raw_rows(store, T.EDGES))[0]
    await engine(store).apply(
        WriteBatch([Delete(T.NODES, f"{edge['profile_id']}:{edge['source_id']}")])
    )
    report = await store.diagnose()
    assert not report.ok
    assert {"graph_differs_from_replay", "missing_edge_endpoint"} <= codes(report)
    with pytest.raises(keepstone.StorageError) as info:
        await store.doctor.repair(report.diagnostics)
    assert info.value.code == "review_required"
    rebuild = [d for d in report.diagnostics if d.code == "graph_differs_from_replay"]
    await store.doctor.repair(rebuild, approval=OK)
    after = await store.diagnose()
    assert after.ok, after.diagnostics
    profile = edge["profile_id"]
    assert await store.memory.graph(profile, view="all") == await store.memory.replay(
        profile, view="all"
    )


async def test_missing_and_corrupt_blobs_are_found(store: keepstone.Store) -> None:
    await populate(store)
    revisions = [r for r in await raw_rows(store, T.REVISIONS) if r["number"] == 1]
    gone, bad = revisions[0], revisions[1]
    await engine(store).blob_delete(gone["digest"])
    await engine(store).blob_delete(bad["digest"])
    await engine(store).apply(WriteBatch([BlobPut(bad["digest"], b"not the original")]))
    report = await store.diagnose()
    found = {(d.code, d.location) for d in report.diagnostics}
    assert ("missing_blob", f"revisions:{gone['artifact_id']}:1") in found
    assert ("corrupt_blob", f"revisions:{bad['artifact_id']}:1") in found
    fixable = [d for d in report.diagnostics if d.code in ("missing_blob", "corrupt_blob")]
    await store.doctor.repair(fixable, approval=OK)
    assert (await store.artifacts.get_revision(gone["artifact_id"], 1)).purged
    assert not {"missing_blob", "corrupt_blob"} & codes(await store.diagnose())


async def test_dangling_relationship_is_found_and_unrelated(store: keepstone.Store) -> None:
    await populate(store)
    rel = (await raw_rows(store, T.RELATIONSHIPS))[0]
    await engine(store).apply(WriteBatch([Delete(T.ARTIFACTS, rel["target_id"])]))
    report = await store.diagnose()
    dangling = [d for d in report.diagnostics if d.location == f"relationships:{rel['id']}"]
    assert [d.code for d in dangling] == ["dangling_reference"]
    await store.doctor.repair(dangling, approval=OK)
    with pytest.raises(keepstone.StorageError):
        await store.artifacts.get_relationship(rel["id"])


async def test_edited_audit_record_and_newer_schema_are_found(store: keepstone.Store) -> None:
    await populate(store)
    record = (await raw_rows(store, T.AUDIT))[2]
    record["actor"] = "mallory"
    run = (await raw_rows(store, T.RUNS))[0]
    run["schema_version"] = 99
    await engine(store).apply(WriteBatch([Put(T.AUDIT, record), Put(T.RUNS, run)]))
    report = await store.diagnose()
    by_code = {d.code: d for d in report.diagnostics}
    assert by_code["broken_audit_chain"].location == f"audit:{record['seq']}"
    assert by_code["unknown_schema_version"].location == f"runs:{run['id']}"
    assert by_code["broken_audit_chain"].repair is None


async def test_stale_running_run_is_reported_and_failed_on_repair(store: keepstone.Store) -> None:
    run = await store.runs.create("etl")
    await store.runs.transition(run.id, "running")
    report = await store.diagnose(stale_after=timedelta(0))
    stale = [d for d in report.diagnostics if d.code == "stale_run"]
    assert [d.location for d in stale] == [f"runs:{run.id}"]
    assert (await store.diagnose(stale_after=timedelta(days=1))).diagnostics == []
    await store.doctor.repair(stale, approval=OK)
    final = await store.runs.get(run.id)
    assert final.status == "failed" and final.error is not None
    assert final.error.type == "StaleRun"


async def test_orphaned_events_are_reported(store: keepstone.Store) -> None:
    await populate(store)
    profile = (await raw_rows(store, T.PROFILES))[0]["id"]
    await engine(store).apply(WriteBatch([Delete(T.PROFILES, profile)]))
    assert "orphaned_event" in codes(await store.diagnose())


async def test_a_row_that_is_not_json_is_reported_not_raised() -> None:
    # Raw non-JSON bytes can only be planted through the memory engine's
    # internals; the filesystem backend's damage tests cover files on disk.
    async with keepstone.open("memory://") as store:
        await populate(store)
        engine(store)._t(T.RUNS).rows["run_broken"] = ({}, b"{not json")
        report = await store.diagnose()
        found = [(d.code, d.location) for d in report.diagnostics]
        assert ("malformed_record", "runs:?") in found
