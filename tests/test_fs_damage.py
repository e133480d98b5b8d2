"""Damage to a workspace's files is found, reported with file and line, and
never returned as a record; the rest of the workspace stays readable.

Also: writes that were acknowledged but whose record and JSONL files never
reached the disk (only the journal did) come back from the journal.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import keepstone
from keepstone.backends.fs.commit import INLINE_BLOB_MAX
from keepstone.schemas._base import SCHEMA_VERSION
from keepstone.schemas.memory import CustomEvent, EventQuery, MemoryEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(i: int, profile: str, kind: str = "tick") -> MemoryEvent:
    return MemoryEvent(
        id=f"evt_{i:03d}", profile_id=profile, at=T0, payload=CustomEvent(name=kind, data={"i": i})
    )


def opened(root: Path, **options: Any) -> Any:
    return keepstone.open(
        f"file://{root}", clock=keepstone.FixedClock(T0), ids=keepstone.SequentialIds(), **options
    )


async def findings(store: keepstone.Store) -> list[dict[str, Any]]:
    found = await store.backend.engine.diagnose()  # type: ignore[attr-defined]
    return [f for f in found if f["severity"] != "info"]


async def workspace_with_events(root: Path, count: int = 5) -> str:
    async with opened(root) as store:
        profile = await store.memory.create_profile("p")
        await store.events.append([event(i, profile.id) for i in range(count)])
        return str(profile.id)


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


async def ids(store: keepstone.Store, profile: str) -> list[str]:
    """The ids of the test's custom events, in seq order."""
    query = EventQuery(profile_id=profile, kinds=["custom"])
    return [e.id async for e in store.events.iterate(query)]


# --------------------------------------------------------------------------- torn tails


async def test_a_torn_last_line_is_reported_never_returned(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    profile = await workspace_with_events(root)
    path = root / "events.jsonl"
    whole = lines(path)
    path.write_bytes(b"".join(whole) + whole[-1][: len(whole[-1]) // 2])  # cut mid-line
    async with opened(root) as store:
        assert await ids(store, profile) == [f"evt_{i:03d}" for i in range(5)]
        found = await findings(store)
        assert [(f["code"], f["file"], f["line"]) for f in found] == [
            ("torn_tail", "events.jsonl", len(whole) + 1)
        ]
        # Appending after a torn tail starts a new line: the fragment stays
        # visible as damage, the new event reads back, seqs go on.
        [late] = await store.events.append([event(9, profile)])
        assert late.seq == 7  # profile creation + 5 events + this one
        assert (await store.events.get("evt_009")).seq == 7
        found = await findings(store)
        assert [(f["code"], f["line"]) for f in found] == [("malformed_line", len(whole) + 1)]
    async with opened(root) as store:
        assert (await ids(store, profile))[-1] == "evt_009"


async def test_a_torn_tail_made_while_the_store_is_open_is_noticed(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    async with opened(root) as store:
        profile = (await store.memory.create_profile("p")).id
        await store.events.append([event(1, profile)])
        append_bytes(root / "events.jsonl", b'{"id":"evt_torn","seq":3')  # behind our back
        await store.events.append([event(2, profile)])
        assert await ids(store, profile) == ["evt_001", "evt_002"]
        assert [f["code"] for f in await findings(store)] == ["malformed_line"]


# --------------------------------------------------------------------------- malformed lines


async def test_a_malformed_middle_line_is_reported_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    profile = await workspace_with_events(root)
    path = root / "events.jsonl"
    whole = lines(path)
    path.write_bytes(b"".join([*whole[:3], b"this is not json\n", *whole[3:]]))
    async with opened(root) as store:
        assert await ids(store, profile) == [f"evt_{i:03d}" for i in range(5)]
        for i in range(5):
            assert (await store.events.get(f"evt_{i:03d}")).payload.data == {"i": i}
        found = await findings(store)
        assert [(f["code"], f["file"], f["line"]) for f in found] == [
            ("malformed_line", "events.jsonl", 4)
        ]
        assert "not JSON" in found[0]["message"]


async def test_a_line_edited_while_open_is_reread_not_misread(tmp_path: Path) -> None:
    """Lines shift when one is rewritten longer; reads notice and re-scan."""
    root = tmp_path / "ws"
    async with opened(root) as store:
        profile = (await store.memory.create_profile("p")).id
        await store.events.append([event(i, profile) for i in range(4)])
        path = root / "events.jsonl"
        whole = lines(path)
        row = orjson.loads(whole[2])
        row["payload"]["data"] = {"i": 1, "edited": "x" * 40}
        path.write_bytes(b"".join([*whole[:2], orjson.dumps(row) + b"\n", *whole[3:]]))
        edited = await store.events.get(row["id"])
        assert edited.payload.data == {"i": 1, "edited": "x" * 40}
        assert await ids(store, profile) == [f"evt_{i:03d}" for i in range(4)]


# --------------------------------------------------------------------------- schema versions


async def test_a_record_of_a_newer_schema_is_refused_alone(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    async with opened(root) as store:
        old = await store.runs.create("old")
        new = await store.runs.create("new")
    path = root / "runs" / f"{new.id}.json"
    row = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({**row, "schema_version": 99}) + b"\n")
    async with opened(root) as store:
        with pytest.raises(keepstone.StorageError) as info:
            await store.runs.get(new.id)
        assert info.value.code == "unsupported_schema"
        assert await store.runs.get(old.id) == old
        found = await findings(store)
        assert [(f["code"], f["file"]) for f in found] == [
            ("unknown_schema_version", f"runs/{new.id}.json")
        ]


async def test_an_event_line_of_a_newer_schema_is_refused_alone(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    await workspace_with_events(root, 3)
    path = root / "events.jsonl"
    whole = lines(path)
    row = orjson.loads(whole[2])
    whole[2] = orjson.dumps({**row, "schema_version": SCHEMA_VERSION + 1}) + b"\n"
    path.write_bytes(b"".join(whole))
    async with opened(root) as store:
        with pytest.raises(keepstone.StorageError) as info:
            await store.events.get(row["id"])
        assert info.value.code == "unsupported_schema"
        assert (await store.events.get("evt_002")).seq == 4
        found = await findings(store)
        assert [(f["code"], f["file"], f["line"]) for f in found] == [
            ("unknown_schema_version", "events.jsonl", 3)
        ]


async def test_a_record_file_that_is_not_json_is_corrupt(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    async with opened(root) as store:
        good = await store.runs.create("good")
        bad = await store.runs.create("bad")
    (root / "runs" / f"{bad.id}.json").write_bytes(b'{"id": "run_')
    async with opened(root) as store:
        with pytest.raises(keepstone.StorageError) as info:
            await store.runs.get(bad.id)
        assert info.value.code == "corrupt"
        assert await store.runs.get(good.id) == good
        found = await findings(store)
        assert [(f["code"], f["file"], f["line"]) for f in found] == [
            ("malformed_record", f"runs/{bad.id}.json", 1)
        ]


# --------------------------------------------------------------------------- the journal


async def test_a_torn_journal_tail_is_an_unacknowledged_commit(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    profile = await workspace_with_events(root)
    append_bytes(root / "journal.jsonl", b'{"n":99,"ops":[{"op":"add"')  # never acknowledged
    async with opened(root) as store:
        assert len(await ids(store, profile)) == 5
        notes = await store.backend.engine.diagnose()
        assert [(n["code"], n["severity"], n["file"]) for n in notes] == [
            ("recovered", "info", "journal.jsonl")
        ]
        assert "never acknowledged" in notes[0]["message"]
        await store.events.append([event(7, profile)])
    async with opened(root) as store:
        assert len(await ids(store, profile)) == 6


def crash_image(root: Path, image: Path) -> None:
    """What a power cut leaves: the journal (fsync'd at every commit) as it is;
    every other file as it was at the last checkpoint (its writes since were
    never fsync'd, so assume the worst: they are all lost)."""
    shutil.copytree(root, image)


def lose_unsynced(image: Path, checkpoint: dict[str, bytes], torn: bool) -> None:
    for path in sorted(image.rglob("*")):
        rel = path.relative_to(image).as_posix()
        if not path.is_file() or rel in ("journal.jsonl", "lock"):
            continue
        if rel.startswith("blobs/") and path.stat().st_size > INLINE_BLOB_MAX:
            continue  # written and fsync'd before its commit
        before = checkpoint.get(rel)
        if before is None:
            path.unlink()
        elif path.read_bytes() != before:
            now = path.read_bytes()
            if torn and rel.endswith(".jsonl") and now.startswith(before):
                cut = len(before) + (len(now) - len(before)) // 3
                path.write_bytes(now[:cut])  # half a line made it to disk
            else:
                path.write_bytes(before)


@pytest.mark.parametrize("torn", [False, True], ids=["lost", "torn"])
async def test_writes_whose_files_were_lost_come_back_from_the_journal(
    tmp_path: Path, torn: bool
) -> None:
    root = tmp_path / "ws"
    profile = await workspace_with_events(root, 3)
    checkpoint = {
        p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }
    store = await opened(root)
    try:
        run = await store.runs.create("etl")
        await store.runs.transition(run.id, "running")
        coll = await store.artifacts.create_collection("docs")
        art = await store.artifacts.create(coll.id, "a", b"x" * 100_000)
        await store.events.append([event(10 + i, profile) for i in range(4)])
        await store.logs.write(run.id, "hello")
        snap = await store.runs.save_snapshot(run.id, {"k": "v" * 10_000})
        expected = {
            "run": await store.runs.get(run.id),
            "events": await ids(store, profile),
            "audit": [r async for r in _audit(store)],
            "log": (await store.logs.read(run.id)).items,
        }
        crash_image(root, tmp_path / "image")
    finally:
        await store.close()
    lose_unsynced(tmp_path / "image", checkpoint, torn)
    async with opened(tmp_path / "image") as store:
        assert await store.runs.get(run.id) == expected["run"]
        assert await ids(store, profile) == expected["events"]
        assert await store.artifacts.read(art.id) == b"x" * 100_000
        assert (await store.runs.latest_snapshot(run.id)) == snap
        assert (await store.logs.read(run.id)).items == expected["log"]
        assert [r async for r in _audit(store)] == expected["audit"]
        assert (await store.audit.verify()).ok
        assert await findings(store) == []


async def _audit(store: keepstone.Store) -> Any:
    cursor = None
    while True:
        page = await store.audit.list(cursor=cursor, limit=100)
        for record in page.items:
            yield record
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
