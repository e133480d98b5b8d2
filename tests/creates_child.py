"""A process racing another on creates with caller-chosen ids.

``python tests/creates_child.py URL ROUNDS`` opens the store, prints
``ready``, waits for ``go`` on stdin (so both processes start together), then
for each round makes one create of every kind at once, with the ids
``<prefix>-r<round>`` that the other process uses too. It prints one JSON
line per create, ``[ident, record]`` (the record's JSON form) or
``[ident, null, error]``, then ``done``.

The creates are those of :data:`keepstone.testing.creates.KINDS` (variant
``"a"``), written out again here: importing the conformance suite would
import pytest and hypothesis, and double the process's start-up time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

import keepstone
from keepstone.schemas import ActivationItem, ContextReference

CREATES: dict[str, Callable[[keepstone.Store, str], Awaitable[Any]]] = {
    "col": lambda s, i: s.artifacts.create_collection(i, metadata={"v": "a"}, id=i),
    "run": lambda s, i: s.runs.create("nightly", params={"v": "a"}, labels={"l": "x"}, id=i),
    "art": lambda s, i: s.artifacts.create("col-base", i, "text a", id=i),
    "rel": lambda s, i: s.artifacts.relate("art-a", "art-b", i, metadata={"v": "a"}, id=i),
    "ext": lambda s, i: s.context.put_external("mem0", "m/1", provenance={"v": "a"}, id=i),
    "pkg": lambda s, i: s.context.create_package(
        "ctx", [ContextReference(kind="run", id="run-x", note="a")], metadata={"v": "a"}, id=i
    ),
    "prf": lambda s, i: s.memory.create_profile("agent", attributes={"v": "a"}, id=i),
    "path": lambda s, i: s.memory.create_path("prf-base", name="a", id=i),
    "act": lambda s, i: s.memory.record_activation(
        "prf-base", [ActivationItem(node_id="node-1", reason="a")], planner="a", id=i
    ),
}
"""Prefix of the ids -> one create (the prerequisites are the suite's setups)."""


async def main(url: str, rounds: int) -> None:
    async with keepstone.open(url) as store:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        for n in range(rounds):
            idents = {prefix: f"{prefix}-r{n}" for prefix in CREATES}
            made = [create(store, idents[prefix]) for prefix, create in CREATES.items()]
            results = await asyncio.gather(*made, return_exceptions=True)
            for ident, result in zip(idents.values(), results, strict=True):
                if isinstance(result, BaseException):
                    line = [ident, None, repr(result)]
                else:
                    line = [ident, result.model_dump(mode="json")]
                print(orjson.dumps(line).decode(), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
