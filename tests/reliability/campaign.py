"""The crash campaign: SIGKILL a writer at random moments, then check the store.

``python -m tests.reliability.campaign --backend sqlite --trials 200`` prints,
per backend: trials, acknowledged writes checked, acknowledged writes lost
(must be 0), corrupt records visible (must be 0), and doctor findings after
restart. ``make reliability`` runs it on every durable backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import keepstone
from keepstone.schemas import EventQuery

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Figures:
    """What a campaign found."""

    backend: str
    trials: int = 0
    acknowledged: int = 0
    lost: int = 0
    corrupt: int = 0
    doctor_errors: int = 0
    doctor_warnings: int = 0
    doctor_runs: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.backend:8} trials={self.trials} acknowledged={self.acknowledged} "
            f"lost={self.lost} corrupt_visible={self.corrupt} "
            f"doctor_errors={self.doctor_errors} doctor_warnings={self.doctor_warnings} "
            f"doctor_runs={self.doctor_runs}"
        )


def run_child(url: str, seed: int, kill_after: float) -> list[str]:
    """Start the workload, SIGKILL it ``kill_after`` seconds after it is ready."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_child", url, str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().decode().strip()
    if first != "READY":
        proc.kill()
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"the workload did not start: {first!r} {err[-2000:]}")
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    lines = out.decode(errors="replace").splitlines()
    # A line cut by the kill was never acknowledged.
    return [ln for ln in lines[:-1] if ln] + ([lines[-1]] if out.endswith(b"\n") else [])


async def check(url: str, acked: list[str], figures: Figures, *, doctor: bool = True) -> None:
    """Every acknowledged write must be visible and intact; count what is not.

    With ``doctor``, also run the doctor over the whole store.
    """
    async with keepstone.open(url) as store:
        events = {e.id async for e in store.events.iterate(EventQuery())}
        digests: dict[str, set[str]] = {}
        for line in acked:
            kind, *rest = line.split()
            figures.acknowledged += 1
            try:
                if kind == "E" and rest[0] not in events:
                    figures.lost += 1
                    figures.problems.append(f"lost event {rest[0]}")
                elif kind == "A":
                    art_id, digest = rest
                    if art_id not in digests:
                        revs = await store.artifacts.revisions(art_id, limit=1000)
                        digests[art_id] = {r.digest for r in revs.items}
                        for rev in revs.items:
                            await store.artifacts.read(art_id, revision=rev.number)
                    if digest not in digests[art_id]:
                        figures.lost += 1
                        figures.problems.append(f"lost revision {digest} of {art_id}")
                elif kind == "R":
                    run = await store.runs.get(rest[0])
                    order = ["pending", "running", "succeeded"]
                    if order.index(run.status) < order.index(rest[1]):
                        figures.lost += 1
                        figures.problems.append(f"run {rest[0]} is {run.status}, not {rest[1]}")
                elif kind == "S":
                    snap = await store.runs.get_snapshot(rest[0], int(rest[1]))
                    if snap.digest != rest[2]:
                        figures.corrupt += 1
                        figures.problems.append(f"snapshot {rest[0]}#{rest[1]} differs")
                elif kind == "N":
                    await store.memory.get_node("prf_crash", rest[0])
            except keepstone.StorageError as exc:
                if exc.code == "not_found":
                    figures.lost += 1
                else:
                    figures.corrupt += 1
                figures.problems.append(f"{line}: {exc}")
        if not doctor:
            return
        figures.doctor_runs += 1
        report = await store.diagnose(verify_blobs=True)
        for d in report.diagnostics:
            if d.severity == "error":
                figures.doctor_errors += 1
                figures.problems.append(f"doctor: {d.code} {d.location} {d.message}")
                if d.code in ("malformed_record", "corrupt_blob", "broken_audit_chain"):
                    figures.corrupt += 1
            elif d.severity == "warning" and d.code != "stale_run":
                figures.doctor_warnings += 1


def store_url(backend: str, location: Path) -> str:
    from tests.conftest import store_url as url_for

    return url_for(backend, location)


def campaign(
    backend: str,
    trials: int,
    seed: int = 0,
    location: Path | None = None,
    doctor_every: int = 10,
) -> Figures:
    """Run ``trials`` kill-and-check rounds against one store of ``backend``.

    Every acknowledged write is checked after every kill; the doctor, which
    scans the whole (growing) store, runs every ``doctor_every`` trials and
    after the last one.
    """
    figures = Figures(backend)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix=f"ks-crash-{backend}-") as tmp:
        where = location or Path(tmp)
        url = store_url(backend, where)
        try:
            for trial in range(trials):
                acked = run_child(url, seed * 100_000 + trial, rng.uniform(0.05, 0.6))
                figures.trials += 1
                last = trial == trials - 1
                doctor = last or (trial + 1) % doctor_every == 0
                asyncio.run(check(url, acked, figures, doctor=doctor))
        finally:
            if backend == "postgres":
                from tests import postgres_support

                postgres_support.drop_schemas_now([postgres_support.schema_for(where)])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", action="append", help="backend(s); default: all durable")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--doctor-every", type=int, default=10)
    args = parser.parse_args()
    from tests.conftest import DURABLE_BACKENDS

    ok = True
    for backend in args.backend or DURABLE_BACKENDS:
        started = time.monotonic()
        figures = campaign(backend, args.trials, args.seed, doctor_every=args.doctor_every)
        print(f"{figures.line()} seconds={time.monotonic() - started:.0f}", flush=True)
        for problem in figures.problems[:20]:
            print(f"  {problem}")
        ok = ok and figures.lost == 0 and figures.corrupt == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
