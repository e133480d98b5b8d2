"""A sync pipeline for the Ctrl-C test: ``python sync_child.py URL RUN_ID``.

Inside its step it blocks in a keepstone call (following the run's own log,
which stays open) after printing ``WAITING``; the test sends SIGINT.
"""

from __future__ import annotations

import sys

import keepstone


def main(url: str, run_id: str) -> None:
    with (
        keepstone.connect(url) as store,
        store.runs.start("etl", id=run_id) as run,
        run.step("wait"),
    ):
        print("WAITING", flush=True)
        for _ in store.logs.follow(run.id, poll_interval=0.05):
            pass


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
