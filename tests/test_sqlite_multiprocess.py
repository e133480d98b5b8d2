"""Several processes appending to one SQLite store at once.

4 processes x 500 separate ``store.events.append`` calls: every event lands
exactly once, seqs are strictly increasing in each writer's order and unique
across writers, the audit chain holds, and no caller ever sees a StorageError
(lock conflicts are waited out, never reported).
"""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import sys
import textwrap
import time

import keepstone
from keepstone.schemas.memory import EventQuery

WRITERS = 4
APPENDS = 500

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


def test_four_processes_append_2000_events(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"

    async def setup() -> str:
        async with keepstone.open(url) as store:
            return (await store.memory.create_profile("shared")).id

    profile = asyncio.run(setup())
    start = time.time() + 1.0
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
        assert "StorageError" not in err and "locked" not in err, err
        seqs = []
        for line in out.splitlines():
            event_id, seq = line.split()
            acknowledged[event_id] = int(seq)
            seqs.append(int(seq))
        assert len(seqs) == APPENDS
        assert seqs == sorted(seqs) and len(set(seqs)) == APPENDS  # each writer's order kept

    async def check() -> None:
        async with keepstone.open(url) as store:
            events = [e async for e in store.events.iterate(EventQuery(profile_id=profile))]
            custom = [e for e in events if e.payload.kind == "custom"]
            assert len(custom) == WRITERS * APPENDS
            assert {e.id: e.seq for e in custom} == acknowledged
            seqs = [e.seq or 0 for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            assert await store.events.last_seq() == max(seqs) == len(events)
            verification = await store.audit.verify()
            assert verification.ok, verification
            assert verification.checked == 1 + WRITERS * APPENDS

    asyncio.run(check())
