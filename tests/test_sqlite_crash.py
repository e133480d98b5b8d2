"""SIGKILL a process writing to a SQLite store at random moments; nothing acknowledged
is lost and nothing half-written is visible.

A child process writes a mix concurrently (custom and ``node.put`` events,
artifacts small and large enough to be blob files, run transitions,
snapshots) and prints one line per acknowledged write. The parent kills it at
a random moment, reopens the same store and checks: every acknowledged write
is there, ``PRAGMA integrity_check`` is ok, the audit chain verifies, every
artifact's head revision and bytes exist, every snapshot materialises, and
the stored graph equals the replay of its events. The store is shared by all
trials, so each trial also reopens after every earlier crash.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import keepstone
from keepstone.schemas.artifacts import ArtifactQuery

TRIALS = int(os.environ.get("KEEPSTONE_CRASH_TRIALS", "20"))
PROFILE = "prf_crash"

_CHILD = textwrap.dedent(
    """
    import asyncio, os, random, sys
    from datetime import UTC, datetime
    import keepstone
    from keepstone.errors import StorageError
    from keepstone.schemas.memory import CustomEvent, MemoryEvent, NodePut

    PROFILE = "prf_crash"

    def ack(*parts):
        sys.stdout.write(" ".join(str(p) for p in parts) + "\\n")
        sys.stdout.flush()

    async def events(store, tag, rng, graph):
        # One graph-changing writer per profile: the event log retries a lost
        # race on the profile's version only a few times.
        for i in range(10**6):
            if not graph or rng.random() < 0.5:
                payload = CustomEvent(name="tick", data={"i": i, "pad": "x" * rng.randint(0, 500)})
            else:
                payload = NodePut(node_id=f"n_{tag}_{i}", node_kind="fact", content=f"fact {i}")
            event = MemoryEvent(
                id=f"evt_{tag}_{i}", profile_id=PROFILE, at=datetime.now(UTC), payload=payload
            )
            [stored] = await store.events.append([event])
            ack("event", stored.id, stored.seq, payload.kind, getattr(payload, "node_id", "-"))

    async def artifacts(store, tag, rng):
        coll = await store.artifacts.create_collection(f"c_{tag}")
        for i in range(10**6):
            size = rng.choice([10, 1000, 20_000, 70_000, 300_000])
            data = os.urandom(size)
            art = await store.artifacts.create(coll.id, f"a{i}", data)
            ack("artifact", art.id, art.revision, art.digest)
            if rng.random() < 0.5:
                art = await store.artifacts.update(art.id, os.urandom(rng.randint(1, 100_000)))
                ack("artifact", art.id, art.revision, art.digest)

    async def runs(store, tag, rng):
        for i in range(10**6):
            run = await store.runs.create("crashy", labels={"tag": tag})
            ack("run", run.id, run.revision, run.status)
            run = await store.runs.transition(run.id, "running")
            ack("run", run.id, run.revision, run.status)
            for step in range(rng.randint(1, 4)):
                state = {"big": "B" * 100_000, "step": step, "noise": "n" * rng.randint(0, 9000)}
                snap = await store.runs.save_snapshot(run.id, state, step=f"s{step}")
                ack("snapshot", run.id, snap.number, snap.digest)
            run = await store.runs.transition(run.id, "succeeded")
            ack("run", run.id, run.revision, run.status)

    async def main():
        tag = sys.argv[2]
        rng = random.Random(tag)
        async with keepstone.open("sqlite:///" + sys.argv[1]) as store:
            try:
                await store.memory.create_profile("crash", id=PROFILE)
            except StorageError as exc:
                if exc.code != "conflict":
                    raise
            ack("ready")
            await asyncio.gather(
                events(store, tag, rng, True), events(store, tag + "b", rng, False),
                artifacts(store, tag, rng), runs(store, tag, rng),
            )

    asyncio.run(main())
    """
)


def _crash_once(path: pathlib.Path, tag: str, rng: random.Random) -> list[list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if first != b"ready\n":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"child did not start: {first!r} {err.decode()[-2000:]}")
    time.sleep(rng.uniform(0.02, 0.6))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    lines = out.split(b"\n")
    complete = lines[:-1]  # the last piece has no newline: torn or empty
    return [line.decode().split() for line in complete]


async def _verify(path: pathlib.Path, acked: list[list[str]], seen: set[str]) -> dict[str, int]:
    """Check ``acked`` writes and everything stored that ``seen`` does not list yet."""
    async with keepstone.open(f"sqlite:///{path}") as store:
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
        verification = await store.audit.verify()
        assert verification.ok, verification

        runs: dict[str, int] = {}
        for kind, ident, *rest in acked:
            if kind == "event":
                seq, payload_kind, node_id = rest
                event = await store.events.get(ident)
                assert (event.seq, event.payload.kind) == (int(seq), payload_kind)
                if payload_kind == "node.put":
                    node = await store.memory.get_node(PROFILE, node_id)
                    assert node.content is not None
            elif kind == "artifact":
                revision, digest = rest
                rev = await store.artifacts.get_revision(ident, int(revision))
                assert rev.digest == digest
                await store.artifacts.read(ident, revision=int(revision))  # bytes present, verified
            elif kind == "run":
                runs[ident] = max(runs.get(ident, 0), int(rest[0]))
            elif kind == "snapshot":
                number, digest = rest
                snap = await store.runs.get_snapshot(ident, int(number))
                assert snap.digest == digest
        for run_id, run_revision in runs.items():
            assert (await store.runs.get(run_id)).revision >= run_revision

        # Nothing half-written: every head revision, its bytes and every snapshot exist.
        counts = {"artifacts": 0, "snapshots": 0, "events": 0}
        cursor = None
        while True:
            page = await store.artifacts.query(ArtifactQuery(), cursor=cursor, limit=500)
            for art in page.items:
                counts["artifacts"] += 1
                if f"{art.id}#{art.revision}" not in seen:
                    await store.artifacts.read(art.id)
                    seen.add(f"{art.id}#{art.revision}")
            cursor = page.next_cursor
            if cursor is None:
                break
        for run in (await store.runs.list(limit=1000)).items:
            for record in (await store.runs.list_snapshots(run.id, limit=1000)).items:
                counts["snapshots"] += 1
                if f"{run.id}#{record.number}" not in seen:
                    await store.runs.get_snapshot(run.id, record.number)
                    seen.add(f"{run.id}#{record.number}")
        graph = await store.memory.graph(PROFILE, view="all")
        replay = await store.memory.replay(PROFILE, view="all")
        assert graph.model_dump() == replay.model_dump()
        counts["events"] = await store.events.last_seq()
        return counts


@pytest.mark.slow
def test_sigkill_never_loses_acknowledged_writes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "crash.db"
    rng = random.Random(int(os.environ.get("KEEPSTONE_CRASH_SEED", "0")) or None)
    started = time.monotonic()
    acked_all: list[list[str]] = []
    seen: set[str] = set()
    for trial in range(TRIALS):
        acked = _crash_once(path, f"t{trial}", rng)
        acked_all += acked
        asyncio.run(_verify(path, acked, seen))
    totals = asyncio.run(_verify(path, acked_all, set()))  # every acknowledged write, once more
    assert totals["events"] > TRIALS and totals["artifacts"] > 0
    assert time.monotonic() - started < 120
