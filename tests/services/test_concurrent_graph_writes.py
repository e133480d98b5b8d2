"""Concurrent graph writers on one profile, in one process, all succeed."""

from __future__ import annotations

import asyncio

import keepstone


async def test_two_tasks_writing_one_profile_both_succeed(store: keepstone.Store) -> None:
    profile = (await store.memory.create_profile("agent")).id

    async def writer(tag: str) -> None:
        for i in range(60):
            await store.memory.put_node(profile, "fact", content=f"{tag} {i}", id=f"{tag}{i}")

    await asyncio.gather(writer("a"), writer("b"), writer("c"))
    nodes = await store.memory.list_nodes(profile, limit=1000)
    assert len(nodes.items) == 180
    assert await store.memory.graph(profile, view="all") == await store.memory.replay(
        profile, view="all"
    )
