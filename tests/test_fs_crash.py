"""SIGKILL a process writing to a filesystem workspace, many times; nothing
acknowledged is lost, nothing torn is visible, the audit chain holds.

Each trial starts ``fs_crash_child.py`` on the same workspace (so later
trials also recover earlier crashes), lets it acknowledge a random number of
writes, kills it at a random moment, reopens the workspace and checks every
write any trial acknowledged. Odd trials checkpoint every 16 KiB of journal,
so kills also land inside checkpoints.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import keepstone
from tests.fs_crash_child import COLLECTION, artifact_bytes, snapshot_state

CHILD = Path(__file__).with_name("fs_crash_child.py")
TRIALS = 20
STATUS_ORDER = {"pending": 0, "running": 1, "succeeded": 2}

pytestmark = pytest.mark.slow


def run_and_kill(url: str, tag: str, rng: random.Random) -> list[list[str]]:
    """Start a writer, kill it after a random number of acknowledgements."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHILD.parent.parent), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), url, tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    acked: list[list[str]] = []
    wanted = rng.randint(1, 40)
    try:
        for raw in proc.stdout:
            words = raw.decode().split()
            if words == ["READY"]:
                continue
            acked.append(words)
            if len(acked) >= wanted:
                time.sleep(rng.random() * 0.004)
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    if proc.returncode != -signal.SIGKILL:
        err = proc.stderr.read().decode() if proc.stderr else ""
        pytest.fail(f"the writer ended by itself ({proc.returncode}): {err}")
    # Lines printed before the kill but not read yet were acknowledged too.
    rest = proc.stdout.read().decode().split("\n")
    acked += [line.split() for line in rest if line.strip() and line.strip() != "READY"]
    return acked


async def check(url: str, acked: list[list[str]]) -> list[dict[str, object]]:
    async with keepstone.open(url) as store:
        runs: dict[str, str] = {}
        for words in acked:
            kind = words[0]
            if kind == "EVENT":
                event = await store.events.get(words[1])
                assert event.payload.data == {"i": int(words[2])}  # type: ignore[union-attr]
            elif kind == "ART":
                art = await store.artifacts.get(words[1])
                assert art.collection_id == COLLECTION
                tag = art.name.split("_")[1]
                assert await store.artifacts.read(art.id) == artifact_bytes(tag, int(words[2]))
            elif kind == "RUN":
                if STATUS_ORDER[words[2]] >= STATUS_ORDER.get(runs.get(words[1], ""), -1):
                    runs[words[1]] = words[2]
            elif kind == "SNAP":
                snap = await store.runs.get_snapshot(words[1], int(words[2]))
                assert snap.state == snapshot_state(int(words[3]))
        for run_id, status in runs.items():
            run = await store.runs.get(run_id)
            assert STATUS_ORDER[run.status] >= STATUS_ORDER[status], (run_id, run.status, status)
        events = [e async for e in store.events.iterate()]
        seqs = [e.seq or 0 for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        findings = await store.backend.engine.diagnose()  # type: ignore[attr-defined]
        damage = [f for f in findings if f["severity"] != "info"]
        assert damage == [], damage
        verdict = await store.audit.verify()
        assert verdict.ok, verdict
        return [f for f in findings if f["code"] == "recovered"]


async def test_sigkill_never_loses_an_acknowledged_write(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("KEEPSTONE_CRASH_SEED", "5")))
    workspace = tmp_path / "ws"
    acked: list[list[str]] = []
    recovered = 0
    started = time.monotonic()
    for trial in range(TRIALS):
        query = "?checkpoint_bytes=16384" if trial % 2 else ""
        url = f"file://{workspace}{query}"
        got = run_and_kill(url, f"t{trial}", rng)
        assert got, f"trial {trial}: the writer acknowledged nothing"
        acked += got
        recovered += len(await check(url, acked))
    print(f"{len(acked)} acknowledged writes checked; {recovered} recoveries reported")
    assert len(acked) >= TRIALS
    assert time.monotonic() - started < 120
