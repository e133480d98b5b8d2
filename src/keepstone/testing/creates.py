"""Conformance of creates with a caller-chosen id, under concurrency.

Every create that takes ``id=`` is idempotent: the same id with the same
caller-given content returns the record already stored, whoever created it
first, and writes nothing (no second record, event or audit record); the same
id with other content is a ``conflict``, and so is another id claiming a
unique name. "Content" is what the caller passed (names, metadata, bytes,
references), never the timestamps the store assigns. These tests race 20
identical creates, through two handles on one store when it declares
``"multi_process"`` (as two processes would), then race two contents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from keepstone.errors import StorageError
from keepstone.schemas import ActivationItem, ArtifactQuery, ContextReference
from keepstone.testing.base import (
    ALL,
    ConformanceBase,
    audit_seq,
    audit_since,
    dump,
    refused,
)

if TYPE_CHECKING:
    from keepstone import Store

RACERS = 20
"""Concurrent creates per race."""


async def _ids(page: Awaitable[Any]) -> list[str]:
    got = await page
    assert got.next_cursor is None
    return sorted(item.id for item in got.items)


async def _nothing(store: Store) -> None:
    return None


async def _collection(store: Store) -> None:
    await store.artifacts.create_collection("base", id="col-base")


async def _two_artifacts(store: Store) -> None:
    await _collection(store)
    for name in ("a", "b"):
        await store.artifacts.create("col-base", name, name, id=f"art-{name}")


async def _profile(store: Store) -> None:
    await store.memory.create_profile("base", id="prf-base")


async def _profile_and_node(store: Store) -> None:
    await _profile(store)
    await store.memory.put_node("prf-base", "fact", content="n", id="node-1")


@dataclass(frozen=True)
class CreateKind:
    """One create with a caller-chosen id, as the suite drives it.

    ``create(store, ident, variant)`` creates the record with id ``ident``
    (its unique name, if the kind has one, derives from ``ident``); variants
    ``"a"`` and ``"b"`` differ in caller-given content only. ``clash(store,
    ident)`` claims the unique name of ``ident`` under another id, for kinds
    that have a unique name. ``events`` is how many memory events one create
    appends.
    """

    prefix: str
    action: str
    create: Callable[[Store, str, str], Awaitable[Any]]
    listed: Callable[[Store], Awaitable[list[str]]]
    setup: Callable[[Store], Awaitable[None]] = _nothing
    clash: Callable[[Store, str], Awaitable[Any]] | None = None
    events: int = 0


KINDS: dict[str, CreateKind] = {
    "collection": CreateKind(
        "col",
        "collection.create",
        lambda s, i, v: s.artifacts.create_collection(i, metadata={"v": v}, id=i),
        lambda s: _ids(s.artifacts.list_collections(limit=ALL)),
        clash=lambda s, i: s.artifacts.create_collection(i, metadata={"v": "a"}, id=f"{i}-2"),
    ),
    "run": CreateKind(
        "run",
        "run.create",
        lambda s, i, v: s.runs.create("nightly", params={"v": v}, labels={"l": "x"}, id=i),
        lambda s: _ids(s.runs.list(limit=ALL)),
    ),
    "artifact": CreateKind(
        "art",
        "artifact.create",
        lambda s, i, v: s.artifacts.create("col-base", i, f"text {v}", id=i),
        lambda s: _ids(s.artifacts.query(ArtifactQuery(collection_id="col-base"), limit=ALL)),
        setup=_collection,
        clash=lambda s, i: s.artifacts.create("col-base", i, "text a", id=f"{i}-2"),
    ),
    "relationship": CreateKind(
        "rel",
        "artifact.relate",
        lambda s, i, v: s.artifacts.relate("art-a", "art-b", i, metadata={"v": v}, id=i),
        lambda s: _ids(s.artifacts.relationships("art-a", limit=ALL)),
        setup=_two_artifacts,
        clash=lambda s, i: s.artifacts.relate(
            "art-a", "art-b", i, metadata={"v": "a"}, id=f"{i}-2"
        ),
    ),
    "external": CreateKind(
        "ext",
        "context.put_external",
        lambda s, i, v: s.context.put_external("mem0", "m/1", provenance={"v": v}, id=i),
        lambda s: _ids(s.context.list_external(limit=ALL)),
    ),
    "package": CreateKind(
        "pkg",
        "context.create_package",
        lambda s, i, v: s.context.create_package(
            "ctx", [ContextReference(kind="run", id="run-x", note=v)], metadata={"v": v}, id=i
        ),
        lambda s: _ids(s.context.list_packages(limit=ALL)),
    ),
    "profile": CreateKind(
        "prf",
        "memory.create_profile",
        lambda s, i, v: s.memory.create_profile("agent", attributes={"v": v}, id=i),
        lambda s: _ids(s.memory.list_profiles(limit=ALL)),
        events=1,
    ),
    "path": CreateKind(
        "path",
        "memory.create_path",
        lambda s, i, v: s.memory.create_path("prf-base", name=v, id=i),
        lambda s: _ids(s.memory.list_paths("prf-base", limit=ALL)),
        setup=_profile,
        events=1,
    ),
    "activation": CreateKind(
        "act",
        "memory.record_activation",
        lambda s, i, v: s.memory.record_activation(
            "prf-base", [ActivationItem(node_id="node-1", reason=v)], planner=v, id=i
        ),
        lambda s: _ids(s.memory.list_activations("prf-base", limit=ALL)),
        setup=_profile_and_node,
    ),
}
"""Every create that takes ``id=``, by name."""


async def setup_all(store: Store) -> None:
    """The prerequisites of every kind in :data:`KINDS`, each made once."""
    await _two_artifacts(store)
    await _profile_and_node(store)


class CreateConformance(ConformanceBase):
    """Tests that creates with a caller-chosen id are idempotent under concurrency."""

    @pytest.mark.parametrize("kind", sorted(KINDS))
    async def test_racing_creates_with_one_id_make_one_record(
        self, store: Store, kind: str
    ) -> None:
        spec = KINDS[kind]
        await spec.setup(store)
        # Two engines on one store when it can (as two processes), else one.
        handles = [store, await self.another_handle(store)]

        # 20 identical creates: every one returns the record, one is written.
        ident = f"{spec.prefix}-same"
        listed = await spec.listed(store)
        seq, events = await audit_seq(store), await store.events.last_seq()
        racers = [spec.create(handles[i % 2], ident, "a") for i in range(RACERS)]
        results = await asyncio.gather(*racers, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, f"{len(failed)} of {RACERS} identical creates failed: {failed[0]!r}"
        first = results[0]
        assert all(dump(r) == dump(first) for r in results), "creates returned different records"
        assert getattr(first, "id", None) == ident
        assert await spec.listed(store) == sorted([*listed, ident])
        assert [r.action for r in await audit_since(store, seq)] == [spec.action], (
            "the losers of the race must write no audit record"
        )
        assert await store.events.last_seq() == events + spec.events
        # Afterwards: the same content again is a no-op; other content, or
        # another id claiming the name, is a conflict.
        assert dump(await spec.create(store, ident, "a")) == dump(first)
        await refused(store, "conflict", spec.create(store, ident, "b"))
        if spec.clash is not None:
            await refused(store, "conflict", spec.clash(store, ident))

        # 10 + 10 creates of two contents under one id: one content wins.
        ident = f"{spec.prefix}-mixed"
        seq = await audit_seq(store)
        variants = ["a", "b"] * (RACERS // 2)
        racers = [spec.create(handles[i // 2 % 2], ident, v) for i, v in enumerate(variants)]
        results = await asyncio.gather(*racers, return_exceptions=True)
        outcomes = list(zip(variants, results, strict=True))
        won = {v for v, r in outcomes if not isinstance(r, BaseException)}
        assert len(won) == 1, f"not exactly one content accepted for one id: {results!r}"
        for variant, result in outcomes:
            if variant in won:
                assert getattr(result, "id", None) == ident, repr(result)
            else:
                assert isinstance(result, StorageError), repr(result)
                assert result.code == "conflict", repr(result)
        assert [r.action for r in await audit_since(store, seq)] == [spec.action]
        assert (await store.audit.verify()).ok
