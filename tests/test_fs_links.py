"""A workspace never follows a link: every file it reads or writes stays inside it.

A symbolic link put in the place of a record file, a JSONL stream, a blob, a
control file or a directory on the way to them (pointing outside the
workspace, or elsewhere inside it) is refused with ``corrupt`` naming the
workspace-relative path; nothing outside the workspace is read into a record
or written; and the doctor reports every link it finds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import keepstone
from keepstone.backends.fs import tree
from keepstone.schemas.memory import CustomEvent, MemoryEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def opened(root: Path) -> Any:
    return keepstone.open(f"file://{root}")


@dataclass
class Made:
    run: str
    artifact: str
    digest: str
    profile: str


async def _build(root: Path) -> Made:
    async with opened(root) as store:
        run = await store.runs.create("etl")
        await store.runs.transition(run.id, "running")
        await store.runs.save_snapshot(run.id, {"step": 1})
        await store.logs.write(run.id, "started")
        coll = await store.artifacts.create_collection("docs")
        art = await store.artifacts.create(coll.id, "notes", "the real notes")
        profile = await store.memory.create_profile("p")
        await store.memory.put_node(profile.id, "fact", content="a fact", id="n1")
        event = MemoryEvent(
            id="evt_1", profile_id=profile.id, at=T0, payload=CustomEvent(name="x", data={})
        )
        await store.events.append([event])
        return Made(run.id, art.id, art.digest, profile.id)


@pytest.fixture(autouse=True, params=["openat2", "walk"])
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a path is opened: one ``openat2(2)`` (Linux 5.6+, where
    offered), and the component-by-component walk used everywhere else."""
    if request.param == "walk":
        monkeypatch.setattr(tree, "_syscall", None)
    return str(request.param)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Made]:
    root = tmp_path_factory.mktemp("links") / "ws"
    return root, asyncio.run(_build(root))


@dataclass
class Case:
    root: Path
    outside: Path
    made: Made

    def blob(self) -> str:
        hexdigest = self.made.digest.partition(":")[2]
        return f"blobs/sha256/{hexdigest[:2]}/{hexdigest[2:4]}/{hexdigest}"

    def link(self, rel: str, target: Path | str) -> None:
        """Replace ``rel`` with a link to ``target`` (the original moves there
        first when ``target`` is outside and does not exist yet)."""
        path = self.root / rel
        if isinstance(target, Path) and not target.exists() and path.exists():
            shutil.move(path, target)
        elif path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        path.symlink_to(target)

    def outside_files(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.outside).as_posix(): p.read_bytes()
            for p in sorted(self.outside.rglob("*"))
            if p.is_file()
        }


@pytest.fixture(params=["index kept", "index rebuilt"])
def case(template: tuple[Path, Made], tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    """A copy of the template workspace; reopening it either loads the index
    saved at its last close, or (without ``index.json``) rebuilds it from the
    files, which must not follow a link either."""
    root, made = template
    copy = tmp_path / "ws"
    shutil.copytree(root, copy)
    if request.param == "index rebuilt":
        (copy / "index.json").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    return Case(copy, outside, made)


async def refused(action: Awaitable[Any], rel: str) -> keepstone.StorageError:
    with pytest.raises(keepstone.StorageError) as info:
        await action
    assert info.value.code == "corrupt", info.value
    assert info.value.details.get("file") == rel, info.value.details
    assert f"{rel} in the workspace is " in info.value.message
    return info.value


async def doctor_reports(store: keepstone.Store, *rels: str) -> None:
    report = await store.diagnose()
    flagged = {
        d.location
        for d in report.diagnostics
        if d.code == "storage_integrity" and "symbolic link" in d.message
    }
    assert set(rels) <= flagged, (rels, report.diagnostics)
    assert not report.ok


# --------------------------------------------------------------------------- data files


async def test_a_record_file_linked_outside_is_refused(case: Case) -> None:
    rel = f"runs/{case.made.run}.json"
    forged = orjson.loads((case.root / rel).read_bytes()) | {"name": "forged"}
    (case.outside / "forged.json").write_bytes(orjson.dumps(forged))
    case.link(rel, case.outside / "forged.json")
    before = case.outside_files()
    async with opened(case.root) as store:
        await refused(store.runs.get(case.made.run), rel)
        await refused(store.runs.list(), rel)
        await refused(store.runs.transition(case.made.run, "succeeded"), rel)
        assert (await store.artifacts.get(case.made.artifact)).name == "notes"  # the rest reads
        await doctor_reports(store, rel)
    assert case.outside_files() == before


async def test_a_run_log_linked_outside_is_never_appended_to(case: Case) -> None:
    rel = f"log_lines/{case.made.run}.jsonl"
    case.link(rel, case.outside / "log.jsonl")
    before = case.outside_files()
    async with opened(case.root) as store:
        await refused(store.logs.write(case.made.run, "more"), rel)
        await refused(store.logs.read(case.made.run), rel)
        await doctor_reports(store, rel)
    assert case.outside_files() == before


@pytest.mark.parametrize("rel", ["events.jsonl", "audit.jsonl", "changes.jsonl"])
async def test_a_stream_linked_outside_is_refused(case: Case, rel: str) -> None:
    case.link(rel, case.outside / rel)
    before = case.outside_files()
    event = MemoryEvent(
        id="evt_2", profile_id=case.made.profile, at=T0, payload=CustomEvent(name="y", data={})
    )
    async with opened(case.root) as store:
        if rel == "events.jsonl":
            await refused(store.events.append([event]), rel)
        elif rel == "audit.jsonl":
            await refused(store.runs.create("another"), rel)  # every write appends audit
            await refused(store.audit.verify(), rel)
        else:
            await refused(store.artifacts.update(case.made.artifact, "changed"), rel)
        await doctor_reports(store, rel)
    assert case.outside_files() == before


async def test_a_blob_linked_outside_is_refused(case: Case) -> None:
    rel = case.blob()
    (case.outside / "blob").write_bytes(b"forged bytes")
    case.link(rel, case.outside / "blob")
    async with opened(case.root) as store:
        await refused(store.artifacts.read(case.made.artifact), rel)
        await refused(store.artifacts.read(case.made.artifact, verify=False), rel)
        await doctor_reports(store, rel)


@pytest.mark.parametrize("rel", ["runs", "log_lines", "blobs/sha256", "nodes"])
async def test_a_directory_linked_outside_is_refused(case: Case, rel: str) -> None:
    case.link(rel, case.outside / "moved")
    before = case.outside_files()
    async with opened(case.root) as store:
        if rel == "runs":
            await refused(store.runs.get(case.made.run), rel)
            await refused(store.runs.create("new"), rel)
        elif rel == "log_lines":
            await refused(store.logs.write(case.made.run, "more"), rel)
        elif rel == "blobs/sha256":
            await refused(store.artifacts.read(case.made.artifact), rel)
            await refused(store.blobs.put(b"new bytes"), rel)
        else:
            await refused(store.memory.get_node(case.made.profile, "n1"), rel)
            await refused(store.memory.put_node(case.made.profile, "fact", id="n2"), rel)
        await doctor_reports(store, rel)
    assert case.outside_files() == before


async def test_a_directory_linked_inside_the_workspace_is_refused(case: Case) -> None:
    rel = f"snapshots/{case.made.run}"
    case.link(rel, "../runs")  # a directory of the workspace, reached through a link
    runs_before = sorted(p.name for p in (case.root / "runs").iterdir())
    async with opened(case.root) as store:
        await refused(store.runs.latest_snapshot(case.made.run), rel)
        await refused(store.runs.save_snapshot(case.made.run, {"step": 2}), rel)
        await doctor_reports(store, rel)
    assert sorted(p.name for p in (case.root / "runs").iterdir()) == runs_before


async def test_a_fifo_in_place_of_a_record_is_refused_not_waited_for(case: Case) -> None:
    rel = f"runs/{case.made.run}.json"
    (case.root / rel).unlink()
    os.mkfifo(case.root / rel)
    async with opened(case.root) as store:
        error = await asyncio.wait_for(refused(store.runs.get(case.made.run), rel), 10)
        assert "a FIFO" in error.message
        report = await store.diagnose()
        assert rel in {d.location for d in report.diagnostics}


# --------------------------------------------------------------------------- control files


@pytest.mark.parametrize("rel", ["journal.jsonl", "index.json", "keepstone.json", "lock"])
async def test_a_control_file_linked_outside_refuses_the_open(case: Case, rel: str) -> None:
    case.link(rel, case.outside / rel)
    before = case.outside_files()
    await refused(opened(case.root).__aenter__(), rel)
    assert case.outside_files() == before


async def test_a_temp_directory_linked_outside_is_refused(case: Case) -> None:
    (case.outside / "tmp").mkdir()
    (case.outside / "tmp" / "999999999-1-1.tmp").write_bytes(b"someone else's")
    case.link("tmp", case.outside / "tmp")
    before = case.outside_files()
    await refused(opened(case.root).__aenter__(), "tmp")
    assert case.outside_files() == before  # temp cleanup never reached outside


async def test_the_doctor_lists_every_link(case: Case) -> None:
    links = [f"runs/{case.made.run}.json", f"snapshots/{case.made.run}", "stray-link"]
    case.link(links[0], case.outside / "run.json")
    case.link(links[1], case.outside / "snapshots")
    (case.root / "stray-link").symlink_to(case.root / "missing")  # dangling
    async with opened(case.root) as store:
        await doctor_reports(store, *links)
