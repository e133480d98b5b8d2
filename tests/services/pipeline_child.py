"""A pipeline process for the crash test: ``python pipeline_child.py URL RUN_ID``.

Runs steps s1..s4; each stores an output and checkpoints. With
``CRASH_IN=<step>`` it announces ``IN <step>`` inside that step and waits to
be killed. Prints ``RUN <step>`` for each step it executes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

import keepstone

STEPS = ["s1", "s2", "s3", "s4"]


def content(step: str) -> str:
    return "\n".join(hashlib.sha256(f"{step}:{i}".encode()).hexdigest() for i in range(50))


async def main(url: str, run_id: str) -> None:
    crash_in = os.environ.get("CRASH_IN")
    async with (
        keepstone.open(url) as store,
        store.runs.start("etl", params={"n": 4}, id=run_id) as run,
    ):
        done = list((run.state or {}).get("done", []))
        for step in STEPS:
            if not run.should_run(step):
                continue
            print(f"RUN {step}", flush=True)
            async with run.step(step):
                await run.save_output(f"out-{step}", content(step))
                if step == crash_in:
                    print(f"IN {step}", flush=True)
                    await asyncio.sleep(120)
                done.append(step)
                await run.checkpoint({"done": done})


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
