"""A pipeline process for the log durability tests: ``python log_child.py URL RUN_ID MODE``.

MODE ``error``: log two INFO lines, then ``logger.error``, then SIGKILL itself
right after the call returns. MODE ``interval``: log one INFO line with a
short flush interval, wait a little longer than it, SIGKILL itself. MODE
``exit``: log one INFO line with a long flush interval and end the process
normally without leaving the run (the exit hook writes the line).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import keepstone


async def main(url: str, run_id: str, mode: str) -> None:
    store = await keepstone.open(url)
    context = store.runs.start("logged", id=run_id)
    run = await context.__aenter__()
    interval = {"error": 60.0, "interval": 0.05, "exit": 60.0}[mode]
    logger = logging.getLogger("child")
    logger.setLevel(logging.INFO)
    logger.addHandler(run.logging_handler(flush_interval=interval))
    if mode == "exit":
        logger.info("only line")
        return  # the run is left open; the process ends normally
    async with run.step("work"):
        if mode == "error":
            logger.info("first")
            logger.info("second")
            logger.error("the last words")
            os.kill(os.getpid(), signal.SIGKILL)
        logger.info("only line")
        await asyncio.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
