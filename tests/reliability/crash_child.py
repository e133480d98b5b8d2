"""The workload of the crash campaign: ``python -m tests.reliability.crash_child URL SEED``.

Writes a mix — events, artifacts, run transitions, snapshots, memory nodes —
and prints one line per acknowledged write (flushed), until killed:

    E <event id>            an appended event
    A <artifact id> <digest> a created artifact (or revision)
    R <run id> <status>     a run transition
    S <run id> <number> <digest>  a run snapshot
    N <node id>             a memory node
"""

from __future__ import annotations

import asyncio
import random
import sys
from datetime import UTC, datetime

import keepstone
from keepstone.schemas import CustomEvent, MemoryEvent


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(url: str, seed: int) -> None:
    rng = random.Random(seed)
    tag = f"s{seed}"
    async with keepstone.open(url) as store:
        try:
            profile = (await store.memory.create_profile("crash", id="prf_crash")).id
        except keepstone.StorageError:
            profile = "prf_crash"
        try:
            coll = (await store.artifacts.create_collection("crash", id="col_crash")).id
        except keepstone.StorageError:
            coll = "col_crash"
        say("READY")
        run_id: str | None = None
        i = 0
        while True:
            i += 1
            choice = rng.random()
            if choice < 0.35:
                event = MemoryEvent(
                    id=f"evt_{tag}_{i}",
                    profile_id=profile,
                    at=datetime.now(UTC),
                    payload=CustomEvent(
                        name="tick", data={"i": i, "pad": "x" * rng.randint(0, 3000)}
                    ),
                )
                await store.events.append([event])
                say(f"E {event.id}")
            elif choice < 0.55:
                data = rng.randbytes(rng.choice([100, 5000, 100_000]))
                art = await store.artifacts.create(coll, f"a_{tag}_{i}", data)
                say(f"A {art.id} {art.digest}")
                if rng.random() < 0.5:
                    art = await store.artifacts.update(art.id, rng.randbytes(2000))
                    say(f"A {art.id} {art.digest}")
            elif choice < 0.7:
                if run_id is None:
                    run = await store.runs.create("crash", id=f"run_{tag}_{i}")
                    run_id = run.id
                    run = await store.runs.transition(run_id, "running")
                    say(f"R {run_id} running")
                else:
                    run = await store.runs.transition(run_id, "succeeded")
                    say(f"R {run_id} succeeded")
                    run_id = None
            elif choice < 0.85 and run_id is not None:
                snap = await store.runs.save_snapshot(
                    run_id, {"const": "k" * 20_000, "i": i, "rnd": rng.random()}
                )
                say(f"S {run_id} {snap.number} {snap.digest}")
            else:
                node = await store.memory.put_node(
                    profile, "fact", content=f"fact {i}", id=f"node_{tag}_{i}"
                )
                say(f"N {node.id}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
