"""Conformance of every cursor-paged listing, and of filters from outside.

A cursor is accepted only by the listing that made it, called with the same
filter; anything else (another listing's cursor, the same listing's with
another filter, bytes keepstone did not write, a cursor of another format
version) is refused with ``invalid`` before the backend reads anything, and
the store is left as it was. Filters holding integers beyond 64 bits (a
metadata value, a seq bound) answer what they say, the same on every backend.

The forgeries take a real cursor apart and put it back together: a cursor is
URL-safe base64, without padding, of the JSON ``[format, binding, keyset]``
(see :mod:`keepstone.core.paging`), the same for every backend.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from keepstone.errors import StorageError
from keepstone.schemas import (
    ArtifactQuery,
    AuditQuery,
    ContextReference,
    EventQuery,
    LogQuery,
    Page,
    RunQuery,
)
from keepstone.testing.base import ALL, ConformanceBase, collect, expect_error, fingerprint

if TYPE_CHECKING:
    from keepstone import Store

Fetch = Callable[[Any, int], Awaitable[Page[Any]]]
"""One page of a listing: ``fetch(cursor, limit)``."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _token(value: Any, **dump: Any) -> str:
    """A cursor-shaped token holding ``value`` (stdlib JSON: it writes any int)."""
    return _b64(json.dumps(value, separators=(",", ":"), **dump).encode())


def _opened(cursor: str) -> list[Any]:
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert isinstance(data, list) and len(data) == 3, data
    return data


def _retyped(version: int, binding: str, keyset: list[Any], at: int, value: Any) -> str:
    """The token of a cursor whose keyset value ``at`` is ``value``."""
    changed = list(keyset)
    changed[at] = value
    return _token([version, binding, changed])


FORGED = (
    "",
    " ",
    "%%not-a-cursor%%",
    _b64(os.urandom(48)),
    _b64(b"\xff\xfe\x00garbage"),
    _token([1, 2]),
    _token([2**63]),
    _token([2**63, "x"]),
    _token([{"a": [1, {"b": None}]}, "x"]),
    _token({"after": [1, "1"]}),
    _token("run_1"),
    _token(None),
    _token([1, "binding", [1, "1"], "extra"]),
    "W" * 20_000,
)
"""Cursors no listing of any store hands out."""

NOT_STRINGS: tuple[Any, ...] = (7, 1.5, b"WzEsMl0", ["x"], {"cursor": "x"})
"""Cursor arguments that are not strings at all."""

BAD_VALUES: tuple[Any, ...] = (
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    1.5,
    True,
    None,
    [1, 2],
    {"a": {"b": [1]}},
)
"""Values no keyset holds, in any position."""


async def _listings(store: Store) -> list[tuple[str, Fetch, Fetch | None]]:
    """Fill ``store`` so that every listing has at least two items, and return
    each listing as ``(name, fetch, fetch with another filter or None)``."""
    runs, arts, mem, ctx = store.runs, store.artifacts, store.memory, store.context
    r1 = await runs.create("one", id="run-1")
    r2 = await runs.create("two", id="run-2")
    for run in (r1, r2):
        for step in ("a", "b"):
            await runs.save_snapshot(run.id, {"step": step})
            await store.logs.write(run.id, f"did-{step}")
    c1 = await arts.create_collection("c1", id="col-1")
    await arts.create_collection("c2", id="col-2")
    a = await arts.create(c1.id, "a", "alpha one", id="art-a")
    b = await arts.create(c1.id, "b", "alpha two", id="art-b")
    c = await arts.create(c1.id, "c", "gamma", id="art-c")
    await arts.update(a.id, "alpha one, again")
    await arts.update(b.id, "alpha two, again")
    await arts.relate(a.id, b.id, "cites")
    await arts.relate(c.id, a.id, "cites")
    p1 = await mem.create_profile("p1", id="prof-1")
    await mem.create_profile("p2", id="prof-2")
    for node in ("n1", "n2"):
        await mem.put_node(p1.id, "fact", content=f"cat {node}", id=node)
    await mem.put_edge(p1.id, "n1", "n2", "knows", id="e1")
    await mem.put_edge(p1.id, "n2", "n1", "knows", id="e2")
    path = await mem.create_path(p1.id, id="path-1")
    await mem.create_path(p1.id, id="path-2")
    await mem.record_activation(p1.id, [], id="plan-1")
    await mem.record_activation(p1.id, [], id="plan-2")
    for i in (1, 2):
        await ctx.put_external("sys", f"ref-{i}", provenance={}, id=f"ext-{i}")
        await ctx.create_package(f"pkg{i}", [ContextReference(kind="run", id=r1.id)])

    return [
        (
            "runs.list",
            lambda c, n: runs.list(cursor=c, limit=n),
            lambda c, n: runs.list(RunQuery(name="one"), cursor=c, limit=n),
        ),
        (
            "runs.list_snapshots",
            lambda c, n: runs.list_snapshots(r1.id, cursor=c, limit=n),
            lambda c, n: runs.list_snapshots(r2.id, cursor=c, limit=n),
        ),
        ("artifacts.list_collections", lambda c, n: arts.list_collections(cursor=c, limit=n), None),
        (
            "artifacts.revisions",
            lambda c, n: arts.revisions(a.id, cursor=c, limit=n),
            lambda c, n: arts.revisions(b.id, cursor=c, limit=n),
        ),
        (
            "artifacts.relationships",
            lambda c, n: arts.relationships(a.id, cursor=c, limit=n),
            lambda c, n: arts.relationships(a.id, direction="out", cursor=c, limit=n),
        ),
        (
            "artifacts.query",
            lambda c, n: arts.query(cursor=c, limit=n),
            lambda c, n: arts.query(ArtifactQuery(text="alpha"), cursor=c, limit=n),
        ),
        (
            "artifacts.changes",
            lambda c, n: arts.changes(cursor=c, limit=n),
            lambda c, n: arts.changes(artifact_id=a.id, cursor=c, limit=n),
        ),
        ("blobs.list", lambda c, n: store.blobs.list(cursor=c, limit=n), None),
        (
            "logs.read",
            lambda c, n: store.logs.read(r1.id, cursor=c, limit=n),
            lambda c, n: store.logs.read(r1.id, LogQuery(min_level="info"), cursor=c, limit=n),
        ),
        (
            "events.list",
            lambda c, n: store.events.list(cursor=c, limit=n),
            lambda c, n: store.events.list(EventQuery(profile_id=p1.id), cursor=c, limit=n),
        ),
        ("memory.list_profiles", lambda c, n: mem.list_profiles(cursor=c, limit=n), None),
        (
            "memory.list_nodes",
            lambda c, n: mem.list_nodes(p1.id, cursor=c, limit=n),
            lambda c, n: mem.list_nodes(p1.id, kind="fact", cursor=c, limit=n),
        ),
        (
            "memory.search_nodes",
            lambda c, n: mem.search_nodes(p1.id, "cat", cursor=c, limit=n),
            lambda c, n: mem.search_nodes(p1.id, "cat cat", cursor=c, limit=n),
        ),
        (
            "memory.list_edges",
            lambda c, n: mem.list_edges(p1.id, cursor=c, limit=n),
            lambda c, n: mem.list_edges(p1.id, kind="knows", cursor=c, limit=n),
        ),
        (
            "memory.list_paths",
            lambda c, n: mem.list_paths(p1.id, cursor=c, limit=n),
            lambda c, n: mem.list_paths("prof-2", cursor=c, limit=n),
        ),
        (
            "memory.list_activations",
            lambda c, n: mem.list_activations(p1.id, cursor=c, limit=n),
            lambda c, n: mem.list_activations(p1.id, path_id=path.id, cursor=c, limit=n),
        ),
        (
            "audit.list",
            lambda c, n: store.audit.list(cursor=c, limit=n),
            lambda c, n: store.audit.list(AuditQuery(after_seq=0), cursor=c, limit=n),
        ),
        (
            "context.list_external",
            lambda c, n: ctx.list_external(cursor=c, limit=n),
            lambda c, n: ctx.list_external(system="sys", cursor=c, limit=n),
        ),
        ("context.list_packages", lambda c, n: ctx.list_packages(cursor=c, limit=n), None),
    ]


async def _all_events(store: Store, query: EventQuery) -> list[Any]:
    return await collect(lambda c: store.events.list(query, cursor=c))


async def _first_cursor(name: str, fetch: Fetch) -> str:
    page = await fetch(None, 1)
    assert page.next_cursor is not None, f"{name}: the suite made two items, one page has one"
    return page.next_cursor


async def _invalid(what: str, call: Awaitable[Any]) -> None:
    try:
        error = await expect_error("invalid", call)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None
    assert "cursor" in error.message, (what, error.message)


class PagingConformance(ConformanceBase):
    """Cursors of every listing, and filters holding integers beyond 64 bits."""

    async def test_a_cursor_is_taken_only_by_its_listing_and_filter(self, store: Store) -> None:
        listings = await _listings(store)
        cursors = {name: await _first_cursor(name, fetch) for name, fetch, _ in listings}
        before = await fingerprint(store)
        for name, fetch, other in listings:
            # Its own listing takes it, whatever the page size.
            whole = await fetch(None, ALL)
            rest = await fetch(cursors[name], ALL)
            assert rest.items == whole.items[1:], name
            for foreign, cursor in cursors.items():
                if foreign != name:
                    await _invalid(f"{name} given a {foreign} cursor", fetch(cursor, 10))
            if other is not None:
                await _invalid(
                    f"{name} given its cursor with another filter", other(cursors[name], 10)
                )
        assert await fingerprint(store) == before, "a refused cursor changed the store"

    async def test_forged_and_stale_cursors_are_invalid(self, store: Store) -> None:
        listings = await _listings(store)
        before = await fingerprint(store)
        for name, fetch, _ in listings:
            for forged in FORGED:
                await _invalid(f"{name} given {forged[:40]!r}", fetch(forged, 10))
            for value in NOT_STRINGS:
                await _invalid(f"{name} given the cursor {value!r}", fetch(value, 10))
            version, binding, keyset = _opened(await _first_cursor(name, fetch))
            tampered: list[tuple[str, str]] = [
                ("a newer format", _token([version + 1, binding, keyset])),
                ("an older format", _token([version - 1, binding, keyset])),
                ("a format that is a string", _token([str(version), binding, keyset])),
                ("another binding", _token([version, binding[::-1], keyset])),
                ("a value more", _token([version, binding, [*keyset, keyset[-1]]])),
                ("a value less", _token([version, binding, keyset[:-1]])),
                ("padding", _token([version, binding, keyset]) + "=="),
                ("spaces", _token([version, binding, keyset], indent=1)),
            ]
            for i, value in enumerate(keyset):
                wrong = 1 if isinstance(value, str) else str(value)
                tampered.append(
                    (f"value {i} of another type", _retyped(version, binding, keyset, i, wrong))
                )
                for bad in BAD_VALUES:
                    tampered.append(
                        (f"value {i} = {bad!r}", _retyped(version, binding, keyset, i, bad))
                    )
            for what, forged in tampered:
                await _invalid(f"{name} given its cursor with {what}", fetch(forged, 10))
        assert await fingerprint(store) == before, "a refused cursor changed the store"

    async def test_a_well_formed_hand_made_cursor_is_a_position_in_its_listing(
        self, store: Store
    ) -> None:
        # Not a signature: a cursor rebuilt with well-typed values is a place
        # to resume from in the same listing, never a way out of its filter.
        await store.artifacts.create_collection("zeta", id="col-z")
        await store.artifacts.create_collection("alpha", id="col-a")
        await store.artifacts.create_collection("mid", id="col-m")
        page = await store.artifacts.list_collections(limit=1)
        assert page.next_cursor is not None
        version, binding, _ = _opened(page.next_cursor)
        moved = _token([version, binding, ["b", ""]])
        rest = await store.artifacts.list_collections(cursor=moved, limit=ALL)
        assert [c.name for c in rest.items] == ["mid", "zeta"]

    async def test_metadata_filters_on_integers_beyond_64_bits(self, store: Store) -> None:
        coll = await store.artifacts.create_collection("big")
        edges = {"top": 2**64 - 1, "signed": 2**63, "bottom": -(2**63)}
        art = await store.artifacts.create(coll.id, "edges", "x", metadata=edges)
        found = await store.artifacts.create(coll.id, "n", "x", metadata={"n": 1})

        async def ids(metadata: dict[str, Any]) -> list[str]:
            query = ArtifactQuery(metadata=metadata)
            return [a.id for a in await collect(lambda c: store.artifacts.query(query, cursor=c))]

        for key, value in edges.items():
            assert await ids({key: value}) == [art.id], (key, value)
        assert await ids({"n": 1}) == [found.id]
        for beyond in (2**64, -(2**63) - 1, 10**30):
            for metadata in ({"n": beyond}, {"top": beyond}, {"absent": beyond}):
                assert await ids(metadata) == [], metadata
            assert await ids({"n": 1, "top": beyond}) == []
            assert await ids({"n": [beyond]}) == [] and await ids({"n": {"x": beyond}}) == []
        # A cursor of such a listing works like any other.
        query = ArtifactQuery(metadata={"n": 2**64})
        first = await store.artifacts.query(ArtifactQuery(collection_id=coll.id), limit=1)
        assert first.next_cursor is not None
        await _invalid(
            "a filter's cursor under another filter",
            store.artifacts.query(query, cursor=first.next_cursor),
        )
        # Storing such a value is refused or round-trips; either way the filter agrees.
        stored: list[str] = []
        try:
            big = await store.artifacts.create(coll.id, "big", "x", metadata={"n": 2**64})
            assert big.metadata == {"n": 2**64}
            stored.append(big.id)
        except StorageError as exc:
            refusal = exc
            assert refusal.code == "invalid", refusal
        assert await ids({"n": 2**64}) == stored

    async def test_seq_bounds_beyond_64_bits(self, store: Store) -> None:
        run = await store.runs.create("r")
        await store.logs.write(run.id, "one")
        profile = await store.memory.create_profile("p")
        await store.memory.put_node(profile.id, "fact", content="x")
        events = await _all_events(store, EventQuery())
        assert events
        for beyond in (2**63 - 1, 2**63, 2**64, 10**30):
            after_audit = store.audit.list(AuditQuery(after_seq=beyond))
            assert (await after_audit).items == []
            assert (await store.events.list(EventQuery(after_seq=beyond))).items == []
            assert (await store.logs.read(run.id, LogQuery(after_seq=beyond))).items == []
            assert await _all_events(store, EventQuery(through_seq=beyond)) == events
