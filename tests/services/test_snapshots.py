"""Snapshots: deterministic export, verified all-or-nothing import, graph envelopes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import keepstone
from keepstone.schemas import (
    ApprovalMarker,
    ArtifactRef,
    ContextReference,
    CustomEvent,
    MemoryEvent,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
OK = ApprovalMarker(approved_by="ops", reason="test")


def fixed() -> dict[str, Any]:
    return {"clock": keepstone.FixedClock(T0), "ids": keepstone.SequentialIds()}


async def populate(store: keepstone.Store) -> None:
    """A bit of everything, so every table has rows."""
    async with (
        store.runs.start("etl", params={"n": 1}, labels={"env": "test"}) as run,
        run.step("load"),
    ):
        out = await run.save_output("rows", records=[{"i": i} for i in range(3)])
        await run.checkpoint({"big": "x" * 5000, "i": 1})
        await run.log("hello", data={"k": None})
    coll = (await store.artifacts.create_collection("docs", metadata={})).id
    a = await store.artifacts.create(coll, "a", "alpha text", metadata={"tier": 1})
    b = await store.artifacts.create(coll, "b", b"\x00\x01binary")
    await store.artifacts.update(a.id, "alpha text v2")
    await store.artifacts.relate(a.id, b.id, "cites")
    c = await store.artifacts.create(coll, "c", "to delete")
    await store.artifacts.relate(c.id, a.id, "cites")
    await store.artifacts.delete(c.id)
    p = (await store.memory.create_profile("agent")).id
    main = (await store.memory.create_path(p, name="main")).id
    n1 = await store.memory.put_node(p, "fact", content="sky blue", path_id=main)
    branch = (await store.memory.create_path(p, parent_path_id=main)).id
    n2 = await store.memory.put_node(p, "fact", content="grass green", path_id=branch)
    await store.memory.put_edge(p, n1.id, n2.id, "near", path_id=branch)
    await store.memory.merge_path(p, branch, main)
    await store.memory.record_activation(p, [{"node_id": n1.id, "score": 0.5}])  # type: ignore[list-item]
    ext = await store.context.put_external("mem0", "m-1", provenance={"by": "test"})
    await store.context.create_package(
        "ctx",
        [
            ContextReference(kind="artifact", id=a.id),
            ContextReference(kind="external", id=ext.id),
            ContextReference(kind="run", id=run.id),
        ],
    )
    await store.runs.put_manifest(run.id, outputs=[ArtifactRef(artifact_id=out.id)])


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_same_state_and_clock_export_byte_identical(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    async with open_store(**fixed()) as store:
        await populate(store)
        manifest = await store.snapshots.export_to(tmp_path / "one")
        assert manifest.counts["events"] > 0 and manifest.blobs > 0
    async with keepstone.open("memory://", **fixed()) as twin:
        await populate(twin)
        await twin.snapshots.export_to(tmp_path / "two")
    assert tree(tmp_path / "one") == tree(tmp_path / "two")


async def test_round_trip_preserves_everything_and_exports_identically(
    open_store: Callable[..., Any], tmp_path: Path
) -> None:
    async with open_store(**fixed()) as store:
        await populate(store)
        first = await store.snapshots.export_to(
            tmp_path / "first.tar", progress=lambda s, n: None, created_at=T0
        )
        audit_before = (await store.audit.verify()).checked
        events_before = [e.model_dump() async for e in store.events.iterate()]
    async with keepstone.open("memory://", clock=keepstone.FixedClock(T0)) as copy:
        imported = await copy.snapshots.import_from(tmp_path / "first.tar")
        assert imported.counts == first.counts
        verdict = await copy.audit.verify()
        assert verdict.ok and verdict.checked == audit_before
        assert [e.model_dump() async for e in copy.events.iterate()] == events_before
        art = await copy.artifacts.get_by_name(
            (await copy.artifacts.get_collection_by_name("docs")).id, "a"
        )
        assert await copy.artifacts.read(art.id, revision=1) == b"alpha text"
        assert [r.kind for r in (await copy.artifacts.relationships(art.id)).items] == ["cites"]
        await copy.snapshots.export_to(tmp_path / "second.tar", created_at=T0)
        # the chain and the sequences go on where they left off
        last = await copy.events.last_seq()
        p = (await copy.memory.list_profiles()).items[0].id
        event = MemoryEvent(id="evt_after", profile_id=p, at=T0, payload=CustomEvent(name="after"))
        assert (await copy.events.append([event]))[0].seq == last + 1
        assert (await copy.audit.verify()).ok
    assert (tmp_path / "first.tar").read_bytes() == (tmp_path / "second.tar").read_bytes()


@pytest.mark.parametrize(
    "damage",
    ["flip_record_byte", "truncate_record", "drop_manifest", "flip_blob", "extra_blob"],
)
async def test_tampered_snapshot_leaves_target_empty(
    store: keepstone.Store, tmp_path: Path, damage: str
) -> None:
    await populate(store)
    snap = tmp_path / "snap"
    await store.snapshots.export_to(snap)
    events = snap / "records" / "events.jsonl"
    blob = next((snap / "blobs").iterdir())
    if damage == "flip_record_byte":
        data = bytearray(events.read_bytes())
        data[10] ^= 1
        events.write_bytes(bytes(data))
    elif damage == "truncate_record":
        events.write_bytes(events.read_bytes()[:-20])
    elif damage == "drop_manifest":
        (snap / "manifest.json").unlink()
    elif damage == "flip_blob":
        blob.write_bytes(blob.read_bytes() + b"!")
    else:
        (snap / "blobs" / ("0" * 64)).write_bytes(b"stray")
    async with keepstone.open("memory://") as target:
        with pytest.raises(keepstone.StorageError) as info:
            await target.snapshots.import_from(snap)
        assert info.value.code == "corrupt"
        assert "snapshot" in info.value.message
        assert await target.events.last_seq() == 0
        assert (await target.blobs.list()).items == []
        assert await target.audit.head() is None


async def test_import_into_a_non_empty_store_is_refused(
    store: keepstone.Store, tmp_path: Path
) -> None:
    await populate(store)
    await store.snapshots.export_to(tmp_path / "snap")
    head = await store.audit.head()
    with pytest.raises(keepstone.StorageError) as info:
        await store.snapshots.import_from(tmp_path / "snap")
    assert info.value.code == "conflict"
    assert await store.audit.head() == head


def hostile_tar(path: Path, kind: str) -> None:
    with tarfile.open(path, "w") as tar:
        if kind == "symlink":
            info = tarfile.TarInfo("snapshot/manifest.json")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        elif kind == "device":
            info = tarfile.TarInfo("snapshot/dev")
            info.type = tarfile.CHRTYPE
            tar.addfile(info)
        else:
            name = "../escape.txt" if kind == "dotdot" else "/tmp/abs-escape.txt"
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "device"])
async def test_hostile_archive_entries_are_refused(
    store: keepstone.Store, tmp_path: Path, kind: str
) -> None:
    archive = tmp_path / "evil.tar"
    hostile_tar(archive, kind)
    with pytest.raises(keepstone.StorageError) as info:
        await store.snapshots.import_from(archive)
    assert info.value.code == "invalid"
    assert not (tmp_path.parent / "escape.txt").exists()
    assert await store.audit.head() is None


async def test_export_refuses_a_non_empty_directory(store: keepstone.Store, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(keepstone.StorageError) as info:
        await store.snapshots.export_to(tmp_path / "busy")
    assert info.value.code == "conflict"


async def test_graph_envelope_round_trip(store: keepstone.Store) -> None:
    await populate(store)
    p = (await store.memory.list_profiles()).items[0].id
    n = (await store.memory.list_nodes(p)).items[0].id
    await store.memory.forget_node(p, n, approval=OK)
    envelope = await store.snapshots.export_graph(p)
    original = await store.memory.graph(p, view="all")
    async with keepstone.open("memory://") as other:
        profile = await other.snapshots.import_graph(envelope)
        assert profile.id == p
        copy = await other.memory.graph(p, view="all")
        assert copy.nodes == original.nodes
        assert copy.edges == original.edges
        assert [(x.id, x.status, x.parent_path_id) for x in copy.paths] == [
            (x.id, x.status, x.parent_path_id) for x in original.paths
        ]
        with pytest.raises(keepstone.StorageError) as info:
            await other.snapshots.import_graph(envelope)
        assert info.value.code == "conflict"


# --------------------------------------------------------------- bounds, retries, older snapshots


def test_extraction_stops_at_the_size_bound(tmp_path: Path) -> None:
    """Nothing past ``Limits.max_snapshot_bytes`` reaches the temporary directory:
    an entry is counted, by its header, before any of its bytes are written."""
    from keepstone.core import archive
    from keepstone.testing.snapshots import raw_tar, zero_bomb

    bomb = zero_bomb(tmp_path / "bomb.tar.gz", f"snapshot/blobs/{'0' * 64}")
    blobs = [(b * (1 << 20), hashlib.sha256(b * (1 << 20)).hexdigest()) for b in (b"a", b"b")]
    two = raw_tar(
        tmp_path / "two.tar",
        [(_file(f"snapshot/blobs/{name}", len(data)), data) for data, name in blobs],
    )
    for source, bound in ((bomb, 64 << 20), (two, (3 << 20) // 2)):
        dest = tmp_path / f"x-{source.stem}"
        dest.mkdir()
        with pytest.raises(keepstone.StorageError) as info:
            archive.extract_tar(source, dest, keepstone.Limits(max_snapshot_bytes=bound))
        assert info.value.code == "invalid" and "max_snapshot_bytes" in info.value.message
        extracted = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        assert extracted <= bound
    assert extracted == 1 << 20  # the first blob of ``two``, not the second


def _file(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


async def test_export_retries_while_the_store_is_written(tmp_path: Path) -> None:
    async with keepstone.open("memory://", **fixed()) as store:
        await populate(store)
        writes: list[asyncio.Task[Any]] = []

        def write_once(stage: str, done: int) -> None:
            if stage == "export runs" and not writes:
                writes.append(asyncio.get_running_loop().create_task(store.runs.create("late")))

        manifest = await store.snapshots.export_to(tmp_path / "snap", progress=write_once)
        await asyncio.gather(*writes)
        assert manifest.counts["runs"] == 2  # the second attempt saw the late run
        async with keepstone.open("memory://") as copy:
            await copy.snapshots.import_from(tmp_path / "snap")
            assert (await copy.audit.verify()).ok

        def write_always(stage: str, done: int) -> None:
            if stage == "export runs":
                writes.append(asyncio.get_running_loop().create_task(store.runs.create("more")))

        with pytest.raises(keepstone.StorageError) as info:
            await store.snapshots.export_to(tmp_path / "busy.tar", progress=write_always)
        await asyncio.gather(*writes)
        assert info.value.code == "conflict" and "written to" in info.value.message
        left = sorted(await asyncio.to_thread(os.listdir, tmp_path))
        assert left == ["snap"]  # no partial tar, no temporary directory


async def test_a_snapshot_without_counters_still_imports(tmp_path: Path) -> None:
    from keepstone.testing.snapshots import edit_manifest, make_snapshot

    snap = await make_snapshot(tmp_path / "snap")
    edit_manifest(snap, lambda m: m.pop("counters"))
    async with keepstone.open("memory://") as copy:
        await copy.snapshots.import_from(snap)
        assert (await copy.audit.verify()).ok
        run = (await copy.runs.list()).items[0].id
        # made before counters travelled: the log counter is the highest seq kept
        assert (await copy.logs.write(run, "next")).seq == 2
