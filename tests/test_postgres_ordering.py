"""Followers can trust the event order: seq order is commit order on PostgreSQL.

Sequences from concurrent transactions can commit out of order, so a reader
polling "events after N" could skip an event whose smaller seq committed late,
forever. keepstone assigns seqs under a lock held until COMMIT; here 8
concurrent writers in 2 processes append while a follower polls, and the
follower must see exactly the final list, in order, with no gap or duplicate.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import keepstone
from keepstone.schemas.memory import EventQuery, MemoryEvent
from tests import postgres_support as pg

CHILD = Path(__file__).with_name("postgres_child.py")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def store_url(tmp_path: Path) -> AsyncIterator[str]:
    pg.require_postgres()
    schema = pg.schema_for(tmp_path)
    try:
        yield pg.url_for(schema)
    finally:
        await pg.drop_schemas([schema])


async def start_writers(
    url: str, profile: str, prefixes: list[str], writers: int, count: int
) -> list[asyncio.subprocess.Process]:
    """Start one process per prefix, wait until each has opened the store, then
    let them all go at once."""
    procs = []
    for prefix in prefixes:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            url,
            profile,
            prefix,
            str(writers),
            str(count),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            _, err = await proc.communicate()
            raise AssertionError(f"writer did not start: {line!r} {err.decode()[-2000:]}")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    return procs


async def finish(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert out.strip().endswith(b"done"), out


async def test_follower_sees_every_event_once_in_order(store_url: str) -> None:
    writers, count = 4, 60  # per process; 2 processes: 8 writers, 480 events
    async with keepstone.open(store_url) as store:
        profile = await store.memory.create_profile("ordering")
        start = await store.events.last_seq()
        procs = await start_writers(store_url, profile.id, ["a", "b"], writers, count)
        seen: list[MemoryEvent] = []
        last = start
        expected = 2 * writers * count
        polls = 0
        while len(seen) < expected:
            page = await store.events.list(EventQuery(after_seq=last), limit=7)
            polls += 1
            if page.items:
                seen.extend(page.items)
                last = page.items[-1].seq or last
            elif all(p.returncode is not None for p in procs):
                break
            else:
                await asyncio.sleep(0.002)
        await finish(procs)
        final = await store.events.list(EventQuery(after_seq=start), limit=10_000)

    assert final.next_cursor is None
    assert len(final.items) == expected
    final_order = [(e.seq, e.id) for e in final.items]
    assert [(e.seq, e.id) for e in seen] == final_order, "the follower skipped or repeated events"
    assert [s for s, _ in final_order] == list(range(start + 1, start + expected + 1))
    assert len({i for _, i in final_order}) == expected
    assert polls > 10, "the follower should have polled while the writers ran"
    # Each writer's own events are in the order it appended them.
    for writer in [f"{p}{w}" for p in "ab" for w in range(writers)]:
        mine = [e.id for e in final.items if e.id.startswith(f"evt_{writer}_")]
        assert mine == sorted(mine) and len(mine) == count
