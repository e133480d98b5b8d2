"""Several processes on one filesystem workspace at once.

4 processes x 500 separate ``store.events.append`` calls: every event lands
exactly once, seqs are strictly increasing in each writer's order and unique
across writers, the audit chain holds, nobody sees an error. Meanwhile a
fifth process follows the log by ``after_seq`` and must see every event once,
in seq order, with no gap: a reader in another process never sees a commit
before the ones before it.
"""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

import keepstone
from keepstone.schemas.memory import EventQuery

WRITERS = 4
APPENDS = 500

pytestmark = pytest.mark.slow

_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from datetime import UTC, datetime
    import keepstone
    from keepstone.schemas.memory import CustomEvent, MemoryEvent

    async def main(url, profile, name, count, start):
        async with keepstone.open(url) as store:
            while time.time() < start:
                await asyncio.sleep(0.001)
            for i in range(count):
                event = MemoryEvent(
                    id=f"evt_{name}_{i:04d}",
                    profile_id=profile,
                    at=datetime.now(UTC),
                    payload=CustomEvent(name="tick", data={"writer": name, "i": i}),
                )
                [stored] = await store.events.append([event])
                print(stored.id, stored.seq, flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
    """
)

_FOLLOWER = textwrap.dedent(
    """
    import asyncio, sys, time
    import keepstone
    from keepstone.schemas.memory import EventQuery

    async def main(url, profile, total, deadline):
        async with keepstone.open(url) as store:
            last, seen = 0, 0
            while seen < total and time.time() < deadline:
                page = await store.events.list(EventQuery(profile_id=profile, after_seq=last))
                for event in page.items:
                    if event.payload.kind == "custom":
                        seen += 1
                    print(event.id, event.seq, flush=True)
                    last = event.seq
                if not page.items:
                    await asyncio.sleep(0.002)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    """
)


@pytest.mark.parametrize("query", ["", "?checkpoint_bytes=8192"], ids=["journal", "checkpoints"])
def test_four_processes_append_2000_events(tmp_path: pathlib.Path, query: str) -> None:
    """``checkpoints``: the journal is rotated every few commits, under the
    feet of the other writers and of the follower."""
    url = f"file://{tmp_path / 'shared'}{query}"

    async def setup() -> str:
        async with keepstone.open(url) as store:
            return (await store.memory.create_profile("shared")).id

    profile = asyncio.run(setup())
    start = time.time() + 1.5
    total = WRITERS * APPENDS
    follower = subprocess.Popen(
        [sys.executable, "-c", _FOLLOWER, url, profile, str(total), str(start + 240)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, url, profile, f"w{n}", str(APPENDS), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    acknowledged: dict[str, int] = {}
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "StorageError" not in err, err
        seqs = []
        for line in out.splitlines():
            event_id, seq = line.split()
            acknowledged[event_id] = int(seq)
            seqs.append(int(seq))
        assert len(seqs) == APPENDS
        assert seqs == sorted(seqs) and len(set(seqs)) == APPENDS  # each writer's order kept
    assert len(acknowledged) == total and len(set(acknowledged.values())) == total

    out, err = follower.communicate(timeout=300)
    assert follower.returncode == 0, err
    followed = [line.split() for line in out.splitlines()]
    followed_seqs = [int(seq) for _, seq in followed]
    assert followed_seqs == list(range(1, len(followed) + 1))  # every seq once, no gap
    assert {i: int(s) for i, s in followed if i in acknowledged} == acknowledged

    async def check() -> None:
        async with keepstone.open(url) as store:
            events = [e async for e in store.events.iterate(EventQuery(profile_id=profile))]
            custom = [e for e in events if e.payload.kind == "custom"]
            assert len(custom) == total
            assert {e.id: e.seq for e in custom} == acknowledged
            seqs = [e.seq or 0 for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            assert await store.events.last_seq() == max(seqs) == len(events)
            verification = await store.audit.verify()
            assert verification.ok, verification
            assert verification.checked == 1 + total
            findings = await store.backend.engine.diagnose()  # type: ignore[attr-defined]
            assert [f for f in findings if f["severity"] != "info"] == []

    asyncio.run(check())


_COMMITTER = textwrap.dedent(
    """
    import asyncio, pathlib, sys
    from keepstone.backends.fs.engine import FsEngine
    from keepstone.engine.spi import Put, WriteBatch
    from keepstone.engine.tables import RUNS

    async def main(root, count):
        engine = await FsEngine.open(root, version="test")
        try:
            for n in range(1, count + 1):
                # One commit rewrites an existing record and adds a new one.
                await engine.apply(WriteBatch([
                    Put(RUNS, {"id": "run_head", "n": n}),
                    Put(RUNS, {"id": f"run_{n:05d}", "n": n}),
                ]))
        finally:
            await engine.close()

    asyncio.run(main(pathlib.Path(sys.argv[1]), int(sys.argv[2])))
    """
)


async def test_a_read_never_mixes_two_commits_of_another_process(tmp_path: pathlib.Path) -> None:
    """A record rewritten by another process's commit is never seen before the
    records that commit added: each read is of one committed state, even while
    the other process is between journaling a commit and writing its files."""
    import orjson

    from keepstone.backends.fs.engine import FsEngine
    from keepstone.engine.spi import Put, WriteBatch
    from keepstone.engine.tables import RUNS

    root = tmp_path / "ws"
    engine = await FsEngine.open(root, version="test")
    try:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "run_head", "n": 0})]))
        count = 300
        child = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited on
            [sys.executable, "-c", _COMMITTER, str(root), str(count)]
        )
        try:
            seen = 0
            while child.poll() is None or seen < count:
                raw = await engine.get(RUNS, "run_head")
                assert raw is not None
                n = int(orjson.loads(raw)["n"])
                if n:
                    # The record the same commit added must be there too.
                    assert await engine.get(RUNS, f"run_{n:05d}") is not None, n
                seen = max(seen, n)
                if child.poll() is not None and seen < count:
                    assert child.returncode == 0
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
        assert child.returncode == 0
    finally:
        await engine.close()
