"""The filesystem backend's own behaviour: URLs, opening, the index, the event
log across restarts, and that queries read only the files they return."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import keepstone
from keepstone.backends import fs
from keepstone.backends.fs import state, workspace
from keepstone.backends.fs.tree import Tree
from keepstone.schemas import RunQuery
from keepstone.schemas.memory import CustomEvent, EventQuery, MemoryEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def opened(target: str | Path, **options: Any) -> Any:
    url = target if isinstance(target, str) else f"file://{target}"
    return keepstone.open(
        url, clock=keepstone.FixedClock(T0), ids=keepstone.SequentialIds(), **options
    )


def event(event_id: str, profile: str, name: str = "tick", **data: Any) -> MemoryEvent:
    return MemoryEvent(
        id=event_id, profile_id=profile, at=T0, payload=CustomEvent(name=name, data=data)
    )


async def refused(code: str, opening: Any) -> keepstone.StorageError:
    with pytest.raises(keepstone.StorageError) as info:
        async with opening:
            pass
    assert info.value.code == code, info.value
    return info.value


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file:///data/ws", "/data/ws"),
        ("file://localhost/data/ws", "/data/ws"),
        ("file:///data/my%20ws", "/data/my ws"),
        ("./ws", "ws"),
        ("/data/ws", "/data/ws"),
    ],
)
def test_url_forms(url: str, path: str) -> None:
    assert fs.parse_url(url, {}) == (Path(path), {})


def test_options_come_from_the_query_or_keywords() -> None:
    assert fs.parse_url("file:///ws?checkpoint_bytes=10", {})[1] == {"checkpoint_bytes": 10}
    assert fs.parse_url("file:///ws", {"checkpoint_bytes": 5})[1] == {"checkpoint_bytes": 5}


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("file://relative/ws", {}),
        ("file://otherhost/ws", {}),
        ("file:///ws?nope=1", {}),
        ("file:///ws", {"checkpoint_bytes": "lots"}),
        ("file:///ws", {"checkpoint_bytes": -1}),
    ],
)
def test_bad_urls_and_options_are_config_errors(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(keepstone.StorageError) as info:
        fs.parse_url(url, options)
    assert info.value.code == "config"


async def test_a_relative_bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with opened("ws") as store:
        await store.runs.create("etl")
    assert (tmp_path / "ws" / "keepstone.json").is_file()


# --------------------------------------------------------------------------- opening


async def test_opening_refuses_what_is_not_a_workspace(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    await refused("config", opened(tmp_path / "file"))
    await refused("config", opened(tmp_path / "no" / "parent"))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    await refused("config", opened(foreign))
    assert sorted(os.listdir(foreign)) == ["notes.txt"]  # nothing was created in it


async def test_a_newer_layout_is_refused_untouched(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    async with opened(root) as store:
        await store.runs.create("etl")
    stamp = orjson.loads((root / "keepstone.json").read_bytes())
    (root / "keepstone.json").write_bytes(orjson.dumps({**stamp, "layout_version": 2}))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    error = await refused("unsupported_schema", opened(root))
    assert "layout version 2" in error.message
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


async def test_a_foreign_stamp_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "keepstone.json").write_text('{"format": "something-else"}')
    await refused("config", opened(root))


# --------------------------------------------------------------------------- events


async def test_event_log_semantics_survive_reopening(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    async with opened(root) as store:
        profile = (await store.memory.create_profile("p")).id
        first = await store.events.append(
            [event("evt_a", profile, "greet"), event("evt_b", profile, "tick", n=1)]
        )
    for _ in range(2):  # once from index.json, once rebuilt from the files
        async with opened(root) as store:
            again = await store.events.append([event("evt_a", profile, "greet")])
            assert [e.seq for e in again] == [first[0].seq]  # same content: a no-op
            with pytest.raises(keepstone.StorageError) as info:
                await store.events.append([event("evt_b", profile, "tick", n=2)])
            assert info.value.code == "conflict"
            query = EventQuery(profile_id=profile, kinds=["custom"])
            listed = [(e.id, e.seq) async for e in store.events.iterate(query)]
            assert listed == [(e.id, e.seq) for e in first]
            assert await store.memory.graph(profile, view="all") == await store.memory.replay(
                profile, view="all"
            )
        (root / "index.json").unlink()


# --------------------------------------------------------------------------- the index


@pytest.fixture
def file_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every record file the workspace reads."""
    seen: list[str] = []
    real = workspace._read_file

    def spy(tree: Tree, rel: str) -> bytes:
        seen.append(rel)
        return real(tree, rel)

    monkeypatch.setattr(workspace, "_read_file", spy)
    return seen


async def test_queries_read_only_the_rows_they_return(
    tmp_path: Path, file_reads: list[str]
) -> None:
    root = tmp_path / "ws"
    async with opened(root) as store:
        runs = [await store.runs.create("etl" if i % 2 else "train") for i in range(60)]
        coll = await store.artifacts.create_collection("c")
        arts = [await store.artifacts.create(coll.id, f"a{i}", f"text {i}") for i in range(30)]
        profile = (await store.memory.create_profile("p")).id
        await store.events.append([event(f"evt_{i}", profile) for i in range(50)])
    file_reads.clear()
    async with opened(root) as store:
        assert file_reads == []  # reopening loads index.json; no record file is read
        page = await store.runs.list(RunQuery(name="etl"), limit=5)
        assert [r.id for r in page.items] == [r.id for r in runs if r.name == "etl"][:5]
        assert len(file_reads) == 6  # the page and one more (is there a next page?)
        file_reads.clear()
        assert (await store.artifacts.get(arts[7].id)).name == "a7"
        assert (await store.artifacts.get_by_name(coll.id, "a9")).id == arts[9].id
        assert len(file_reads) == 2
        file_reads.clear()
        await store.events.append([event("evt_new", profile)])  # the duplicate check
        assert (await store.events.get("evt_7")).id == "evt_7"
        assert all("events" not in f for f in file_reads)


async def test_a_stale_index_is_rebuilt_from_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ws"
    async with opened(root) as store:
        run = await store.runs.create("etl")
    saved = (root / "index.json").read_bytes()
    async with opened(root) as store:
        await store.runs.transition(run.id, "running")
    (root / "index.json").write_bytes(saved)  # an index older than the journal
    rebuilt: list[int] = []
    real = state.rebuild

    def spy(tree: Tree) -> state.WorkspaceIndex:
        rebuilt.append(1)
        return real(tree)

    monkeypatch.setattr(workspace, "rebuild", spy)
    async with opened(root) as store:
        assert (await store.runs.get(run.id)).status == "running"
        assert (await store.runs.list(RunQuery(status="running"))).items[0].id == run.id
    assert rebuilt == [1]
    async with opened(root) as store:
        assert (await store.runs.get(run.id)).status == "running"
    assert rebuilt == [1]  # the close saved a fresh index


async def test_a_healthy_workspace_has_no_findings(tmp_path: Path) -> None:
    async with opened(tmp_path / "ws") as store:
        run = await store.runs.create("etl")
        await store.logs.write(run.id, "hello")
        coll = await store.artifacts.create_collection("c")
        await store.artifacts.create(coll.id, "big", b"b" * 200_000)
        assert await store.backend.engine.diagnose() == []


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 22])
def test_scanning_a_jsonl_file_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Lines that straddle read chunks are found whole, damage is placed right."""
    from keepstone.backends.fs import jsonl
    from keepstone.engine.tables import AUDIT

    rows = [orjson.dumps({"seq": i, "pad": "x" * (i * 13 % 40)}) + b"\n" for i in range(1, 30)]
    content = b"".join([*rows[:10], b"garbage\n", *rows[10:], b'{"seq": 99, "pa'])
    path = tmp_path / "audit.jsonl"
    path.write_bytes(content)
    monkeypatch.setattr(jsonl, "CHUNK", chunk)
    result = jsonl.Scan()
    fd = os.open(path, os.O_RDONLY)
    try:
        found = list(jsonl.scan_lines(fd, AUDIT, result))
    finally:
        os.close(fd)
    assert [row["seq"] for _, _, _, row in found] == list(range(1, 30))
    for number, offset, size, row in found:
        assert content[offset : offset + size] == orjson.dumps(row) + b"\n"
        assert number == row["seq"] + (1 if row["seq"] > 10 else 0)
    assert [(d.kind, d.line) for d in result.damage] == [("malformed_line", 11), ("torn_tail", 31)]
    assert (result.size, result.ends_with_newline) == (len(content), False)
