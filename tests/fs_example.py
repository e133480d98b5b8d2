"""The small example workspace of ``docs/storage-layout.md``.

``build(root)`` writes it (fixed clock, sequential ids, so every byte is
reproducible) touching every kind of file the layout has. The copy kept in
``tests/fixtures/fs-workspace/`` is what the document shows; regenerate it
after a deliberate layout change with::

    .venv/bin/python -m tests.fs_example
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import keepstone
from keepstone.schemas import ApprovalMarker
from keepstone.schemas.artifacts import ArtifactRef, Provenance
from keepstone.schemas.context import ContextReference
from keepstone.schemas.memory import ActivationItem
from keepstone.schemas.runs import InputBundle

FIXTURE = Path(__file__).with_name("fixtures") / "fs-workspace"
APPROVAL = ApprovalMarker(approved_by="ops", reason="example")


async def build(root: Path) -> None:
    """Write the example workspace into ``root`` (which must not exist yet)."""
    async with keepstone.open(
        f"file://{root}", clock=keepstone.FixedClock(), ids=keepstone.SequentialIds(), actor="ex"
    ) as store:
        run = await store.runs.create(
            "etl", params={"source": "s3://bucket/in"}, labels={"env": "dev"}
        )
        await store.runs.transition(run.id, "running")
        docs = await store.artifacts.create_collection("docs")
        source = await store.artifacts.create(docs.id, "glossary.txt", "cat: chat\ndog: chien\n")
        report = await store.artifacts.create(
            docs.id,
            "report.json",
            b'{"terms": 2}',
            type="qa_report",
            provenance=Provenance(run_id=run.id, step="check"),
        )
        await store.artifacts.update(source.id, "cat: chat\ndog: chien\nbird: oiseau\n")
        await store.artifacts.relate(report.id, source.id, "derived_from")
        await store.runs.save_snapshot(run.id, {"step": "check", "seen": 2})
        await store.runs.put_manifest(
            run.id,
            inputs=InputBundle(artifacts=[ArtifactRef(artifact_id=source.id)]),
            outputs=[ArtifactRef(artifact_id=report.id)],
        )
        await store.logs.write(run.id, "started", message="loading the glossary")
        await store.logs.write(run.id, "checked", level="warning", data={"missing": 1})
        await store.logs.seal(run.id)
        await store.runs.transition(run.id, "succeeded")

        profile = await store.memory.create_profile("assistant")
        main = await store.memory.create_path(profile.id, name="main")
        cat = await store.memory.put_node(profile.id, "term", content="cat means chat")
        dog = await store.memory.put_node(profile.id, "term", content="dog means chien")
        await store.memory.put_edge(profile.id, cat.id, dog.id, "related", path_id=main.id)
        await store.memory.record_activation(
            profile.id,
            [ActivationItem(node_id=cat.id, reason="asked about cats", score=0.9)],
            path_id=main.id,
            planner="example",
        )
        ext = await store.context.put_external("mem0", "m-42", provenance={"by": "example"})
        await store.context.create_package(
            "answer-context",
            [
                ContextReference(kind="artifact", id=source.id),
                ContextReference(kind="external", id=ext.id),
            ],
        )


def regenerate() -> None:
    """Rewrite ``tests/fixtures/fs-workspace`` from :func:`build`."""
    shutil.rmtree(FIXTURE, ignore_errors=True)
    FIXTURE.parent.mkdir(exist_ok=True)
    asyncio.run(build(FIXTURE))
    shutil.rmtree(FIXTURE / "tmp", ignore_errors=True)


if __name__ == "__main__":
    regenerate()
    print(f"wrote {FIXTURE}")
