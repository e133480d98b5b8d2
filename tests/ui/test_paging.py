"""Newest-first pages over the oldest-first public listings: the same items
as reading everything and reversing it, page after page, ties included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

import keepstone
from keepstone.schemas import AuditQuery, EventQuery, RunQuery
from keepstone.ui.paging import newest, newest_audit, newest_events, newest_runs


@settings(max_examples=150, deadline=None)
@given(
    keys=st.lists(
        st.one_of(st.integers(0, 10**12), st.sampled_from([7, 7, 7, 10**6])), max_size=300
    ),
    n=st.integers(1, 60),
    top=st.one_of(st.just(10**13), st.integers(0, 10**12)),
    anchor=st.integers(-10, 10**13),
)
async def test_newest_matches_reading_everything(
    keys: list[int], n: int, top: int, anchor: int
) -> None:
    items = [(k, i) for i, k in enumerate(sorted(keys))]
    calls = 0

    async def fetch(after: int, before: int, limit: int) -> list[tuple[int, int]]:
        nonlocal calls
        calls += 1
        return [x for x in items if after < x[0] < before][:limit]

    got = await newest(fetch, lambda x: x[0], top=top, floor=-1, anchor=anchor, n=n, first_step=10)
    assert got == [x for x in items if x[0] < top][::-1][:n]
    assert calls < 150  # logarithmic in the key range, not linear in the items


async def test_runs_pages_newest_first_with_ties_and_filters() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with keepstone.open("memory://", clock=keepstone.FixedClock(start, step_us=0)) as store:
        made = []
        for i in range(23):  # every run created at the same instant: ties on created_at
            run = await store.runs.create(
                "tied" if i % 2 else "other", id=f"run_{i:03d}", labels={"third": str(i % 3)}
            )
            made.append(run)
        everything = sorted(made, key=lambda r: (r.created_at, r.id), reverse=True)
        for name, labels, expected in (
            (None, None, everything),
            ("tied", None, [r for r in everything if r.name == "tied"]),
            (None, {"third": "1"}, [r for r in everything if r.labels == {"third": "1"}]),
        ):
            seen, before = [], None
            while True:
                page = await newest_runs(
                    store,
                    RunQuery(name=name, labels=labels),
                    before=before,
                    n=3,
                    now=start + timedelta(days=1),
                )
                seen += page.items
                if page.before is None:
                    break
                before = page.before
            assert [r.id for r in seen] == [r.id for r in expected]


async def test_runs_spread_over_years_and_created_in_the_future() -> None:
    clock = keepstone.FixedClock(datetime(1999, 1, 1, tzinfo=UTC), step_us=3_600_000_000 * 24 * 97)
    async with keepstone.open("memory://", clock=clock) as store:
        made = [await store.runs.create(f"r{i}") for i in range(120)]  # 1999 .. 2030
        now = datetime(2010, 1, 1, tzinfo=UTC)  # half of them are "in the future"
        page = await newest_runs(store, RunQuery(), before=None, n=10, now=now)
        assert [r.id for r in page.items] == [r.id for r in made[::-1][:10]]
        older = await newest_runs(store, RunQuery(), before=page.before, n=200, now=now)
        assert [r.id for r in older.items] == [r.id for r in made[::-1][10:]]
        assert older.before is None


async def test_audit_and_events_newest_first_with_filters() -> None:
    async with keepstone.open("memory://") as store:
        a = await store.memory.create_profile("a")
        b = await store.memory.create_profile("b")
        for i in range(30):
            await store.memory.put_node(a.id if i % 3 else b.id, "fact", content=f"n{i}")
        events = (await store.events.list(EventQuery(profile_id=a.id), limit=1000)).items
        seen, before = [], None
        while True:
            page = await newest_events(store, EventQuery(profile_id=a.id), before=before, n=4)
            seen += page.items
            if page.before is None:
                break
            before = int(page.before)
        assert [e.seq for e in seen] == [e.seq for e in events][::-1]
        records = (
            await store.audit.list(AuditQuery(action="memory.create_profile"), limit=1000)
        ).items
        page = await newest_audit(
            store, AuditQuery(action="memory.create_profile"), before=None, n=1
        )
        assert [r.seq for r in page.items] == [records[-1].seq]
        assert page.before is not None
        rest = await newest_audit(
            store, AuditQuery(action="memory.create_profile"), before=int(page.before), n=5
        )
        assert [r.seq for r in rest.items] == [r.seq for r in records[:-1]][::-1]
