"""SIGKILL a pipeline mid-step, resume it in a new process, compare outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import keepstone
from tests.conftest import DURABLE_BACKENDS, store_url

CHILD = Path(__file__).with_name("pipeline_child.py")


def run_child(
    url: str, run_id: str, crash_in: str | None = None, signal_to_send: int = signal.SIGKILL
) -> list[str]:
    env = dict(os.environ)
    env.pop("CRASH_IN", None)
    if crash_in:
        env["CRASH_IN"] = crash_in
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), url, run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    if crash_in:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == f"IN {crash_in}":
                proc.send_signal(signal_to_send)
                break
        proc.wait(timeout=60)
        err = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == -signal_to_send, err
        return lines
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return [ln.strip() for ln in out.splitlines()]


async def outputs(url: str, run_id: str) -> dict[str, str]:
    async with keepstone.open(url) as store:
        from keepstone.schemas import ArtifactQuery

        page = await store.artifacts.query(ArtifactQuery(run_id=run_id), limit=100)
        return {a.name.rsplit("/", 1)[-1]: a.digest for a in page.items}


@pytest.mark.parametrize("backend", DURABLE_BACKENDS)
async def test_killed_pipeline_resumes_and_matches_an_uninterrupted_run(
    backend: str, tmp_path: Path
) -> None:
    crashed_dir, clean_dir = tmp_path / "crashed", tmp_path / "clean"
    crashed_dir.mkdir()
    clean_dir.mkdir()
    crashed, clean = store_url(backend, crashed_dir), store_url(backend, clean_dir)

    first = run_child(crashed, "run_etl", crash_in="s3")
    assert first == ["RUN s1", "RUN s2", "RUN s3", "IN s3"]
    async with keepstone.open(crashed) as store:
        run = await store.runs.get("run_etl")
        assert run.status == "running"
        step = run.step("s3")
        assert step is not None and step.status == "running"

    second = run_child(crashed, "run_etl")
    assert second == ["RUN s3", "RUN s4"]  # s1 and s2 were skipped

    assert run_child(clean, "run_etl") == ["RUN s1", "RUN s2", "RUN s3", "RUN s4"]
    assert await outputs(crashed, "run_etl") == await outputs(clean, "run_etl")

    async with keepstone.open(crashed) as store:
        run = await store.runs.get("run_etl")
        assert run.status == "succeeded"
        s3 = run.step("s3")
        assert s3 is not None and s3.attempts == 2
        manifest = await store.runs.get_manifest(run.id)
        assert manifest is not None
        assert len(manifest.outputs or []) == 4  # outputs from before the crash count too
        snapshot = await store.runs.latest_snapshot(run.id)
        assert snapshot is not None and snapshot.state == {"done": ["s1", "s2", "s3", "s4"]}
        assert (await store.audit.verify()).ok


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_ctrl_c_cancels_the_run_and_it_resumes(backend: str, tmp_path: Path) -> None:
    url = store_url(backend, tmp_path)
    first = run_child(url, "run_etl", crash_in="s3", signal_to_send=signal.SIGINT)
    assert first == ["RUN s1", "RUN s2", "RUN s3", "IN s3"]
    async with keepstone.open(url) as store:
        run = await store.runs.get("run_etl")
        assert run.status == "cancelled" and run.error is not None
        assert (run.error.step, run.error.type) == ("s3", "asyncio.exceptions.CancelledError")
        step = run.step("s3")
        assert step is not None and step.status == "cancelled"

    assert run_child(url, "run_etl") == ["RUN s3", "RUN s4"]
    async with keepstone.open(url) as store:
        run = await store.runs.get("run_etl")
        assert run.status == "succeeded"
        assert [a.outcome for a in run.history] == ["cancelled", "succeeded"]
        s3 = run.step("s3")
        assert s3 is not None and [a.outcome for a in s3.history] == ["cancelled", "succeeded"]
        ref = await store.logs.reference(run.id)
        assert ref is not None  # sealed again, over both attempts
        assert (await store.audit.verify()).ok
