"""Pipelines after a failure: resume, retry, re-run from a step, what a failure stores."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import keepstone
from keepstone import RetryPolicy
from keepstone.cli import app
from keepstone.schemas import AuditQuery, LogQuery

STEPS = ("extract", "translate", "publish")

# The pipeline logic is the same on every backend: the resume after an
# exception runs on all four, the rest on the reference and SQLite.
some_backends = pytest.mark.parametrize("backend", ["memory", "sqlite"], indirect=True)


async def etl(
    store: keepstone.Store, run_id: str, fail_in: str | None = None, cancel_in: str | None = None
) -> list[str]:
    """Run (or resume) three steps; each saves an output and checkpoints."""
    ran: list[str] = []
    async with store.runs.start("etl", params={"n": 3}, id=run_id) as run:
        done = list((run.state or {}).get("done", []))
        for step in STEPS:
            if not run.should_run(step):
                continue
            async with run.step(step):
                ran.append(step)
                await run.save_output(step, f"output of {step}")
                if step == fail_in:
                    raise ValueError(f"bad input in {step}")
                if step == cancel_in:
                    raise asyncio.CancelledError
                done.append(step)
                await run.checkpoint({"done": done})
    return ran


async def test_exception_mid_step_then_resume(store: keepstone.Store) -> None:
    with pytest.raises(ValueError, match="bad input in translate"):
        await etl(store, "run_etl", fail_in="translate")
    failed = await store.runs.get("run_etl")
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.type, failed.error.message, failed.error.step) == (
        "ValueError",
        "bad input in translate",
        "translate",
    )
    assert failed.error.traceback is not None
    assert "Traceback" in failed.error.traceback and "in etl" in failed.error.traceback
    step = failed.step("translate")
    assert step is not None and step.error == failed.error

    assert await etl(store, "run_etl") == ["translate", "publish"]  # extract is skipped
    done = await store.runs.get("run_etl")
    assert done.status == "succeeded" and done.error is None
    assert [(a.number, a.outcome) for a in done.history] == [(1, "failed"), (2, "succeeded")]
    assert done.history[0].error == failed.error
    translate = done.step("translate")
    assert translate is not None and translate.attempts == 2
    assert [a.outcome for a in translate.history] == ["failed", "succeeded"]
    snapshot = await store.runs.latest_snapshot("run_etl")
    assert snapshot is not None and snapshot.state == {"done": list(STEPS)}
    manifest = await store.runs.get_manifest("run_etl")
    assert manifest is not None and len(manifest.outputs or []) == 3
    reopens = await store.audit.list(AuditQuery(action="run.reopen"))
    assert [(r.target, (r.details or {}).get("from")) for r in reopens.items] == [
        ("run_etl", "failed")
    ]
    assert (await store.audit.verify()).ok
    resumed = await store.logs.read("run_etl", LogQuery(event="run.resumed"))
    assert [ln.data["attempt"] for ln in resumed.items if ln.data] == [2]


@some_backends
async def test_cancelled_run_resumes_through_the_explicit_api(store: keepstone.Store) -> None:
    with pytest.raises(asyncio.CancelledError):
        await etl(store, "run_c", cancel_in="extract")
    cancelled = await store.runs.get("run_c")
    assert cancelled.status == "cancelled" and cancelled.error is not None
    assert cancelled.error.type == "asyncio.exceptions.CancelledError"
    assert cancelled.error.message.startswith("cancelled (Ctrl-C")
    async with store.runs.resume("run_c") as run:
        assert run.should_run("extract") and run.resumed is not None
        for step in STEPS:
            async with run.step(step):
                pass
    final = await store.runs.get("run_c")
    assert final.status == "succeeded"
    assert [a.outcome for a in final.history] == ["cancelled", "succeeded"]


@some_backends
async def test_a_succeeded_run_cannot_resume_and_says_how_to_rerun(
    store: keepstone.Store,
) -> None:
    await etl(store, "run_ok")
    for attempt in (
        store.runs.start("etl", params={"n": 3}, id="run_ok"),
        store.runs.resume("run_ok"),
    ):
        with pytest.raises(keepstone.StorageError) as info:
            async with attempt:
                pass
        assert info.value.code == "conflict" and "rerun" in info.value.message
    with pytest.raises(keepstone.StorageError) as missing:
        async with store.runs.resume("run_missing"):
            pass
    assert missing.value.code == "not_found"


@some_backends
async def test_retry_policy_retries_transient_errors(store: keepstone.Store) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TimeoutError(f"timeout {calls}")
        return "data"

    policy = RetryPolicy(attempts=4, backoff=0.01, retry_on=(TimeoutError,))
    async with store.runs.start("fetcher") as run:
        async for attempt in run.retrying("fetch", policy):
            async with attempt:
                result = await flaky()
    assert result == "data" and calls == 3
    final = await store.runs.get(run.id)
    assert final.status == "succeeded"
    step = final.step("fetch")
    assert step is not None and step.status == "succeeded" and step.attempts == 3
    assert [(a.outcome, a.error.message if a.error else None) for a in step.history] == [
        ("failed", "timeout 1"),
        ("failed", "timeout 2"),
        ("succeeded", None),
    ]
    retries = await store.logs.read(run.id, LogQuery(event="step.retry"))
    assert [ln.data["attempt"] for ln in retries.items if ln.data] == [1, 2]
    assert all(ln.level == "warning" for ln in retries.items)


@some_backends
async def test_retry_policy_gives_up(store: keepstone.Store) -> None:
    async def attempts_of(policy: RetryPolicy, error: Exception) -> tuple[int, Any]:
        tries = 0
        ids: list[str] = []

        async def body() -> None:
            nonlocal tries
            async with store.runs.start("giver", retry=policy) as run:
                ids.append(run.id)
                async for attempt in run.retrying("call"):
                    async with attempt:
                        tries += 1
                        raise error

        with pytest.raises(type(error)):
            await body()
        final = await store.runs.get(ids[0])
        step = final.step("call")
        assert step is not None and final.status == "failed"
        assert final.error is not None and final.error.step == "call"
        return tries, [a.outcome for a in step.history]

    quick = RetryPolicy(attempts=3, backoff=0.0, retry_on=(TimeoutError,))
    assert await attempts_of(quick, TimeoutError("again")) == (3, ["failed"] * 3)
    assert await attempts_of(quick, ValueError("a bug")) == (1, ["failed"])  # not retried


def test_retry_policy_refuses_nonsense_and_computes_backoff() -> None:
    with pytest.raises(keepstone.StorageError) as info:
        RetryPolicy(attempts=0)
    assert info.value.code == "invalid"
    policy = RetryPolicy(backoff=1.0, multiplier=2.0, max_backoff=5.0, jitter=0.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert not policy.retries(asyncio.CancelledError()) and not policy.retries(KeyboardInterrupt())


async def test_rerun_from_a_step_reuses_earlier_outputs(store: keepstone.Store) -> None:
    await etl(store, "run_first")
    first_outputs = {
        ref.artifact_id
        for ref in (await store.runs.get_manifest("run_first")).outputs or []  # type: ignore[union-attr]
    }
    async with store.runs.rerun("run_first", from_step="translate", id="run_second") as run:
        assert run.run.rerun_of == "run_first" and run.run.rerun_from_step == "translate"
        assert not run.should_run("extract") and run.should_run("translate")
        assert run.state == {"done": ["extract"]}
        assert set(run.outputs) == {"extract"}
        reused = run.outputs["extract"]
        for step in ("translate", "publish"):
            async with run.step(step):
                await run.save_output(step, f"new {step}")
    second = await store.runs.get("run_second")
    assert (second.status, second.rerun_of, second.name, second.params) == (
        "succeeded",
        "run_first",
        "etl",
        {"n": 3},
    )
    assert [(s.name, s.status) for s in second.steps] == [
        ("extract", "skipped"),
        ("translate", "succeeded"),
        ("publish", "succeeded"),
    ]
    manifest = await store.runs.get_manifest("run_second")
    assert manifest is not None
    outputs = {ref.artifact_id for ref in manifest.outputs or []}
    assert reused.id in first_outputs and reused.id in outputs
    assert len(outputs & first_outputs) == 1 and len(outputs) == 3
    snaps = (await store.runs.list_snapshots("run_second")).items
    assert snaps[0].step == "extract"  # the origin's checkpoint, copied
    # a re-run of the re-run reuses the same artifact
    async with store.runs.rerun("run_second", from_step="publish") as third:
        assert third.outputs["extract"].id == reused.id
        assert set(third.outputs) == {"extract", "translate"}
        assert third.state == {"done": ["extract"]}  # no checkpoint in translate this time


@some_backends
async def test_rerun_refusals(store: keepstone.Store) -> None:
    with pytest.raises(ValueError, match="bad input"):
        await etl(store, "run_broken", fail_in="translate")
    mixed = await store.runs.create("etl", id="run_mixed")
    await store.runs.transition(mixed.id, "running")
    for step, end in (("a", "succeeded"), ("b", "failed"), ("c", "succeeded")):
        await store.runs.set_step(mixed.id, step, "running")
        await store.runs.set_step(mixed.id, step, end)  # type: ignore[arg-type]
    await store.runs.transition(mixed.id, "failed")
    cases = [
        ("run_broken", "nope", "invalid"),
        ("run_mixed", "c", "conflict"),  # b, before it, did not complete
        ("run_missing", "extract", "not_found"),
    ]
    for run_id, step, code in cases:
        with pytest.raises(keepstone.StorageError) as info:
            async with store.runs.rerun(run_id, from_step=step):
                pass
        assert info.value.code == code, (run_id, step, info.value)
    running = await store.runs.create("etl", id="run_busy")
    await store.runs.transition(running.id, "running")
    with pytest.raises(keepstone.StorageError) as busy:
        async with store.runs.rerun("run_busy", from_step="extract"):
            pass
    assert busy.value.code == "conflict"
    async with store.runs.rerun("run_broken", from_step="translate") as fixed:
        assert fixed.run.rerun_of == "run_broken" and set(fixed.outputs) == {"extract"}
    assert (await store.runs.get(fixed.id)).status == "succeeded"


def test_runs_show_prints_the_failure_and_the_resume_point(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"

    async def fail() -> None:
        async with keepstone.open(url) as store:
            with pytest.raises(ValueError, match="bad input"):
                await etl(store, "run_cli", fail_in="translate")

    asyncio.run(fail())
    result = CliRunner().invoke(app, ["--store", url, "runs", "show", "run_cli"])
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "ValueError: bad input in translate (step translate)" in text
    assert "Traceback (most recent call last)" in text and "in etl" in text
    assert "remaining" in text and "store.runs.resume('run_cli')" in text
    data = orjson.loads(
        CliRunner().invoke(app, ["--store", url, "runs", "show", "run_cli", "--json"]).stdout
    )
    error = data["run"]["error"]
    assert (error["type"], error["step"]) == ("ValueError", "translate")
    assert "Traceback" in error["traceback"]
    assert data["resume_point"]["completed_steps"] == ["extract"]
    assert data["resume_point"]["remaining_steps"] == ["translate"]
