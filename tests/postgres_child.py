"""A writer process for the PostgreSQL ordering and multi-process tests.

``python tests/postgres_child.py URL PROFILE PREFIX WRITERS COUNT`` opens the
store, waits for ``go`` on stdin (so every process starts together), then runs
WRITERS concurrent asyncio tasks, each appending COUNT single-event batches
with ids ``evt_<PREFIX><writer>_<n>``, and prints ``done``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import keepstone
from keepstone.schemas.memory import CustomEvent, MemoryEvent


async def main(url: str, profile: str, prefix: str, writers: int, count: int) -> None:
    async with keepstone.open(url, pool_size=2) as store:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

        async def writer(w: int) -> None:
            for n in range(count):
                event = MemoryEvent(
                    id=f"evt_{prefix}{w}_{n:05d}",
                    profile_id=profile,
                    at=datetime.now(UTC),
                    payload=CustomEvent(name="tick", data={"writer": f"{prefix}{w}", "n": n}),
                )
                await store.events.append([event])

        await asyncio.gather(*(writer(w) for w in range(writers)))
    print("done", flush=True)


if __name__ == "__main__":
    url, profile, prefix, writers, count = sys.argv[1:6]
    asyncio.run(main(url, profile, prefix, int(writers), int(count)))
