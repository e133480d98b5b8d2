"""Pipeline runs: steps, outputs with provenance, checkpoints, status, logging."""

from __future__ import annotations

import asyncio
import logging

import pytest

import keepstone
from keepstone.schemas import ArtifactQuery


async def test_successful_run_records_steps_outputs_manifest_and_logs(
    store: keepstone.Store,
) -> None:
    async with store.runs.start("translate", params={"lang": "fr"}) as run:
        async with run.step("extract"):
            out = await run.save_output("lines", records=[{"n": 1}, {"n": 2}])
            await run.checkpoint({"done": ["extract"]})
        async with run.step("translate"):
            text = await run.save_output("text", "bonjour")
    final = await store.runs.get(run.id)
    assert final.status == "succeeded"
    assert [(s.name, s.status, s.attempts) for s in final.steps] == [
        ("extract", "succeeded", 1),
        ("translate", "succeeded", 1),
    ]
    manifest = await store.runs.get_manifest(run.id)
    assert manifest is not None and manifest.ended_at is not None
    assert {o.artifact_id for o in manifest.outputs or []} == {out.id, text.id}
    assert manifest.inputs is not None and manifest.inputs.params == {"lang": "fr"}
    # outputs link back to the run and step
    rev = await store.artifacts.get_revision(out.id, 1)
    assert rev.provenance is not None
    assert (rev.provenance.run_id, rev.provenance.step) == (run.id, "extract")
    linked = await store.artifacts.query(ArtifactQuery(run_id=run.id))
    assert {a.id for a in linked.items} == {out.id, text.id}
    assert [r async for r in store.artifacts.read_jsonl(out.id)] == [{"n": 1}, {"n": 2}]
    # each output logged with its reference; the stream is sealed at the end
    lines = (await store.logs.read(run.id)).items
    persisted = [ln for ln in lines if ln.event == "artifact.persisted"]
    assert [ln.data["artifact_id"] for ln in persisted if ln.data] == [out.id, text.id]
    assert await store.logs.reference(run.id) is not None
    # every change is a change record
    changes = (await store.artifacts.changes(artifact_id=out.id)).items
    assert [c.action for c in changes] == ["create"]


async def test_failing_step_fails_step_and_run_with_error(store: keepstone.Store) -> None:
    with pytest.raises(ValueError, match="broken input"):
        async with store.runs.start("translate") as run, run.step("extract"):
            raise ValueError("broken input")
    final = await store.runs.get(run.id)
    assert final.status == "failed"
    assert final.error is not None and final.error.type == "ValueError"
    step = final.step("extract")
    assert step is not None and step.status == "failed"
    assert step.error is not None and step.error.message == "broken input"
    manifest = await store.runs.get_manifest(run.id)
    assert manifest is not None and manifest.diagnostics


async def test_cancelled_run_is_cancelled(store: keepstone.Store) -> None:
    with pytest.raises(asyncio.CancelledError):
        async with store.runs.start("translate") as run:
            raise asyncio.CancelledError
    assert (await store.runs.get(run.id)).status == "cancelled"


async def test_logging_handler_writes_to_the_run_stream(store: keepstone.Store) -> None:
    logger = logging.getLogger("keepstone.test.pipeline")
    logger.setLevel(logging.DEBUG)
    async with store.runs.start("translate") as run:
        handler = run.logging_handler()
        logger.addHandler(handler)
        try:
            async with run.step("extract"):
                logger.info("read %d lines", 3)
                logger.warning("odd line")
                try:
                    raise KeyError("x")
                except KeyError:
                    logger.exception("boom")
        finally:
            logger.removeHandler(handler)
    lines = [ln for ln in (await store.logs.read(run.id)).items if ln.event.startswith("log.")]
    assert [(ln.level, ln.message, ln.step) for ln in lines] == [
        ("info", "read 3 lines", "extract"),
        ("warning", "odd line", "extract"),
        ("error", "boom", "extract"),
    ]
    assert lines[2].data is not None and "KeyError" in lines[2].data["exception"]


async def test_restarting_an_unfinished_run_resumes_it(store: keepstone.Store) -> None:
    run = await store.runs.create("translate", id="run_fixed")
    await store.runs.transition(run.id, "running")
    await store.runs.set_step(run.id, "extract", "running")
    await store.runs.set_step(run.id, "extract", "succeeded")
    await store.runs.save_snapshot(run.id, {"cursor": 10}, step="extract")
    await store.runs.set_step(run.id, "translate", "running")  # crashed here

    point = await store.runs.resume_point(run.id)
    assert point.completed_steps == ["extract"]
    assert point.state == {"cursor": 10}

    async with store.runs.start("translate", id="run_fixed") as again:
        assert not again.should_run("extract")
        assert again.should_run("translate")
        assert again.state == {"cursor": 10}
        async with again.step("translate"):
            pass
    final = await store.runs.get(run.id)
    assert final.status == "succeeded"
    step = final.step("translate")
    assert step is not None and step.attempts == 2


async def test_starting_a_finished_run_again_is_a_conflict(store: keepstone.Store) -> None:
    async with store.runs.start("translate", id="run_done"):
        pass
    with pytest.raises(keepstone.StorageError) as info:
        async with store.runs.start("translate", id="run_done"):
            pass
    assert info.value.code == "conflict"


async def test_saving_an_unchanged_output_again_adds_no_revision(store: keepstone.Store) -> None:
    async with store.runs.start("translate") as run:
        first = await run.save_output("text", "same")
        second = await run.save_output("text", "same")
        third = await run.save_output("text", "different")
    assert first.id == second.id == third.id
    assert (second.revision, third.revision) == (1, 2)
