"""Child process for fault tests: ``python writer.py URL``.

Reads commands on stdin, one per line: ``write N`` appends N events (one per
call) and prints ``ack <id>`` per success or ``err <code>`` per StorageError
(any other exception prints ``crash <type>`` and exits 3); ``quit`` closes
the store.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import keepstone
from keepstone.schemas import CustomEvent, MemoryEvent


async def main(url: str) -> None:
    store = await keepstone.open(url)
    try:
        profile = (await store.memory.create_profile("faults", id="prf_faults")).id
    except keepstone.StorageError:
        profile = "prf_faults"
    n = 0
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if not line or line == "quit":
            break
        count = int(line.split()[1])
        for _ in range(count):
            n += 1
            event = MemoryEvent(
                id=f"evt_{line.split()[2] if len(line.split()) > 2 else 'w'}_{n}",
                profile_id=profile,
                at=datetime.now(UTC),
                payload=CustomEvent(name="fault", data={"pad": "x" * 2000}),
            )
            try:
                await store.events.append([event])
                print(f"ack {event.id}", flush=True)
            except keepstone.StorageError as exc:
                print(f"err {exc.code}", flush=True)
            except Exception as exc:
                print(f"crash {type(exc).__name__}: {exc}", flush=True)
                sys.exit(3)
        print("done", flush=True)
    try:
        await store.close()
    except keepstone.StorageError as exc:
        print(f"close-err {exc.code}", flush=True)
    print("closed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
