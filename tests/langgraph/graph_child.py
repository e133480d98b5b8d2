"""A graph run in a child process by the crash and multi-process tests.

``python -m tests.langgraph.graph_child URL THREAD MODE [MARKER]``:

- ``crash``: run the five-step pipeline with sync durability; step ``s3``
  creates the file MARKER on its first run and then waits, so the parent can
  SIGKILL the process there.
- ``resume``: resume the thread (``invoke(None)``) and print the final state.
- ``run``: run a ten-step pipeline on THREAD to the end and print the state.

Every step that starts appends its name to ``MARKER.log`` (when MARKER is
given), so the parent can count how often each step ran.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from keepstone.langgraph import KeepstoneSaver
from tests.langgraph.conftest import Chat, pipeline, start

STEPS = ["s1", "s2", "s3", "s4", "s5"]


def main(url: str, thread: str, mode: str, marker: str | None = None) -> None:
    flag = Path(marker) if marker else None

    def hook(name: str, state: Chat) -> None:
        if flag is None:
            return
        with flag.with_name(flag.name + ".log").open("a") as log:
            log.write(name + "\n")
        if name == "s3" and not flag.exists():
            flag.write_text("at s3")
            time.sleep(60)  # the parent kills us here

    names = STEPS if mode != "run" else [f"r{i}" for i in range(10)]
    config: Any = {"configurable": {"thread_id": thread}}
    with KeepstoneSaver.from_url(url) as saver:
        graph = pipeline(*names, hook=hook).compile(checkpointer=saver)
        if mode == "crash":
            graph.invoke(start(), config, durability="sync")
            return
        out = graph.invoke(None if mode == "resume" else start(), config, durability="sync")
        print(json.dumps({"steps": out["steps"], "count": out["count"]}))


if __name__ == "__main__":
    main(*sys.argv[1:])
