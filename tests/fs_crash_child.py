"""A writer for the filesystem crash test: ``python fs_crash_child.py URL TAG``.

Writes a mix forever — single events, artifacts (every fifth one too big to
travel in the journal), run transitions and snapshots — and prints one line
per acknowledged write, flushed as soon as the call returned::

    EVENT <event id> <i>
    ART <artifact id> <i>
    RUN <run id> <status>
    SNAP <run id> <number> <i>
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import keepstone
from keepstone.schemas.artifacts import Provenance
from keepstone.schemas.memory import CustomEvent, MemoryEvent

PROFILE = "prof_crash"
COLLECTION = "coll_crash"


def artifact_bytes(tag: str, i: int) -> bytes:
    size = 100_000 if i % 5 == 0 else 300
    return (f"{tag}:{i}:".encode() * (size // 8 + 1))[:size]


def snapshot_state(i: int) -> dict[str, object]:
    return {"i": i, "pad": "x" * (5000 if i % 2 else 10), "steps": list(range(i % 7))}


async def main(url: str, tag: str) -> None:
    async with keepstone.open(url) as store:
        for create in (
            store.memory.create_profile("crash", id=PROFILE),
            store.artifacts.create_collection("crash", id=COLLECTION),
        ):
            try:
                await create
            except keepstone.StorageError as exc:
                if exc.code != "conflict":
                    raise
        print("READY", flush=True)
        i = 0
        while True:
            run_id = f"run_{tag}_{i}"
            await store.runs.create("crash", id=run_id)
            print(f"RUN {run_id} pending", flush=True)
            event = MemoryEvent(
                id=f"evt_{tag}_{i}",
                profile_id=PROFILE,
                at=datetime.now(UTC),
                payload=CustomEvent(name="tick", data={"i": i}),
            )
            await store.events.append([event])
            print(f"EVENT {event.id} {i}", flush=True)
            await store.runs.transition(run_id, "running")
            print(f"RUN {run_id} running", flush=True)
            art = await store.artifacts.create(
                COLLECTION,
                f"a_{tag}_{i}",
                artifact_bytes(tag, i),
                provenance=Provenance(run_id=run_id, step="make"),
            )
            print(f"ART {art.id} {i}", flush=True)
            snap = await store.runs.save_snapshot(run_id, snapshot_state(i))
            print(f"SNAP {run_id} {snap.number} {i}", flush=True)
            await store.runs.transition(run_id, "succeeded")
            print(f"RUN {run_id} succeeded", flush=True)
            i += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
