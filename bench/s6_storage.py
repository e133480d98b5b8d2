"""Scenario 6: snapshot storage. A run saves ``storage_steps`` snapshots of a
state with a large constant part and a small changing part; we weigh the
files on disk after closing the store (SQLite folds its WAL back on close).
"""

from __future__ import annotations

import base64
import random
from typing import Any

from bench.context import Context
from bench.keepstone_side import on_disk, open_store
from bench.peer_raw import disk_bytes
from bench.report import Row, fmt_bytes, max_value_row

NAME = "storage"
TITLE = "6. snapshot storage: constant part + changing part"
ROWS = {"6a": "snapshot storage, bytes on disk"}


def text_of(size: int, seed: int) -> str:
    """``size`` characters of incompressible text."""
    raw = random.Random(seed).randbytes(size * 3 // 4 + 3)
    return base64.b64encode(raw).decode()[:size]


async def run(ctx: Context) -> list[Row]:
    steps = ctx.sizes.storage_steps
    constant_size, changing_size = ctx.sizes.storage_constant, ctx.sizes.storage_changing
    constant = text_of(constant_size, 1)

    def state(step: int) -> dict[str, Any]:
        return {"context": constant, "working": text_of(changing_size, 1000 + step)}

    ideal = constant_size + steps * changing_size
    scenario = (
        f"{steps} snapshots of {fmt_bytes(constant_size)} constant"
        f" + {fmt_bytes(changing_size)} changing"
    )
    with ctx.workdir(NAME) as work:
        store_dir = work / "keepstone"
        async with open_store(ctx.keepstone_url(work)) as store:
            run_ = await store.runs.create("bench")
            for step in range(steps):
                await store.runs.save_snapshot(run_.id, state(step))
            latest = await store.runs.latest_snapshot(run_.id)
            assert latest is not None and latest.state == state(steps - 1)
        ks_bytes = disk_bytes(store_dir) if on_disk(ctx.backend) else None

        lg = ctx.peer("langgraph")
        lg_bytes = None
        if lg is not None:
            path = work / "langgraph.db"
            with lg.sync_saver(path) as saver:
                thread = lg.Thread(saver, "bench")
                for step in range(steps):
                    thread.put(state(step))
            lg_bytes = sum(
                disk_bytes(p) for p in work.iterdir() if p.name.startswith("langgraph.db")
            )

    versus = (
        f"LangGraph {fmt_bytes(lg_bytes)}"
        if lg_bytes is not None
        else "LangGraph: peer not installed"
    )
    ctx.extra["storage"] = {
        "keepstone_bytes": ks_bytes,
        "langgraph_bytes": lg_bytes,
        "ideal": ideal,
    }
    ctx.say(f"    bytes on disk: keepstone {ks_bytes}, langgraph {lg_bytes}, ideal {ideal}")
    note = "" if ks_bytes is not None else "memory backend: nothing on disk"
    row = max_value_row("6a", scenario, ks_bytes, 1.2 * ideal, fmt_bytes, versus=versus, note=note)
    row.goal = f"≤ 1.2 × {fmt_bytes(ideal)} = {fmt_bytes(1.2 * ideal)}"
    return [row]
