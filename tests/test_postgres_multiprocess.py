"""Many processes on one PostgreSQL store: 4 x 500 single-event appends."""

from __future__ import annotations

import keepstone
from keepstone.schemas.memory import EventQuery
from tests.test_postgres_ordering import finish, start_writers, store_url

__all__ = ["store_url"]  # the fixture, shared with the ordering test


async def test_four_processes_append_2000_events_each_once_in_order(store_url: str) -> None:
    processes, count = 4, 500
    async with keepstone.open(store_url) as store:
        profile = await store.memory.create_profile("multiprocess")
        start = await store.events.last_seq()
        prefixes = [f"p{i}" for i in range(processes)]
        await finish(await start_writers(store_url, profile.id, prefixes, 1, count))
        events = [e async for e in store.events.iterate(EventQuery(after_seq=start))]
        verified = await store.audit.verify()

    assert len(events) == processes * count
    assert [e.seq for e in events] == list(range(start + 1, start + processes * count + 1))
    assert len({e.id for e in events}) == processes * count
    for prefix in prefixes:
        mine = [e.id for e in events if e.id.startswith(f"evt_{prefix}0_")]
        assert mine == [f"evt_{prefix}0_{n:05d}" for n in range(count)]
    assert verified.ok, verified
    assert verified.checked >= processes * count
