"""Stores for the CLI tests: real SQLite files, filled through the Python API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import keepstone
from keepstone.cli import app
from keepstone.schemas import ArtifactRef

APPROVE = ["--approve", "ops: test"]


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'store.db'}"


def invoke(url: str, *args: str, input: str | bytes | None = None) -> Result:
    """Run ``keepstone --store URL ARGS...`` in-process."""
    return CliRunner().invoke(app, ["--store", url, *args], input=input)


@dataclass(frozen=True)
class Filled:
    """A store with a bit of everything, and the ids the tests look for."""

    url: str
    run: str
    crashed: str
    output: str
    spec: str
    notes: str
    profile: str
    main_path: str
    branch: str
    orphan: str


async def fill(url: str) -> Filled:
    async with keepstone.open(url) as store:
        async with store.runs.start("etl", params={"n": 1}, labels={"env": "test"}) as run:
            async with run.step("load"):
                out = await run.save_output("rows", records=[{"i": i} for i in range(3)])
                await run.checkpoint({"rows": 3})
                await run.log("loaded", message="[bold]3 rows[/]", data={"rows": 3})
            async with run.step("publish"):
                await run.log("published", level="warning")
        crashed = await store.runs.create("nightly", id="run_crashed")
        await store.runs.transition(crashed.id, "running")
        await store.runs.set_step(crashed.id, "extract", "running")
        await store.runs.save_snapshot(crashed.id, {"rows": 120}, step="extract")
        await store.runs.set_step(crashed.id, "extract", "succeeded")
        await store.runs.set_step(crashed.id, "translate", "running")

        docs = await store.artifacts.create_collection("docs")
        spec = await store.artifacts.create(docs.id, "spec", "v1: cats only", type="knowledge")
        spec = await store.artifacts.update(spec.id, "v2: cats and chiens")
        notes = await store.artifacts.create(docs.id, "notes", "about the spec")
        await store.artifacts.relate(notes.id, spec.id, "describes")
        await store.runs.put_manifest(run.id, outputs=[ArtifactRef(artifact_id=out.id)])

        me = await store.memory.create_profile("assistant")
        main = await store.memory.create_path(me.id, name="main")
        fact = await store.memory.put_node(me.id, "fact", content="prefers French", path_id=main.id)
        branch = await store.memory.create_path(me.id, name="what-if", parent_path_id=main.id)
        idea = await store.memory.put_node(
            me.id, "idea", content="offer Spanish", path_id=branch.id
        )
        await store.memory.put_edge(me.id, idea.id, fact.id, "refines", path_id=branch.id)
        await store.memory.merge_path(me.id, branch.id, main.id)
        dead = await store.memory.create_path(me.id, name="dead-end", parent_path_id=main.id)
        await store.memory.abandon_path(
            me.id,
            dead.id,
            "went nowhere",
            approval=keepstone.ApprovalMarker(approved_by="alice", reason="pruning"),
        )
        orphan = await store.blobs.put(b"bytes nobody refers to")
    return Filled(
        url=url,
        run=run.id,
        crashed=crashed.id,
        output=out.id,
        spec=spec.id,
        notes=notes.id,
        profile=me.id,
        main_path=main.id,
        branch=branch.id,
        orphan=orphan.digest,
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """One filled store shared by a module's read-only tests."""
    return asyncio.run(fill(sqlite_url(tmp_path_factory.mktemp("filled"))))


@pytest.fixture
def fresh(tmp_path: Path) -> Filled:
    """A filled store of this test's own, for commands that change it."""
    return asyncio.run(fill(sqlite_url(tmp_path)))
