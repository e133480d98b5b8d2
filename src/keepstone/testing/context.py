"""Conformance of :class:`keepstone.ports.ContextStore`: packages and external references."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from keepstone.schemas import ContextReference
from keepstone.testing.base import (
    BAD_IDS,
    ConformanceBase,
    assert_audited,
    assert_listing_refuses_bad_paging,
    assert_paginates,
    audit_seq,
    expect_error,
    refused,
)

if TYPE_CHECKING:
    from keepstone import Store


def ref(kind: str, ident: str, revision: int | None = None) -> ContextReference:
    """A context reference."""
    return ContextReference.model_validate({"kind": kind, "id": ident, "revision": revision})


class ContextStoreConformance(ConformanceBase):
    """Tests of ``store.context``."""

    # ------------------------------------------------------------------ external references

    async def test_put_external_round_trips(self, store: Store) -> None:
        plain = await store.context.put_external("mem0", "m/1", provenance={})
        full = await store.context.put_external(
            "zep", "z:2", provenance={"by": "agent", "n": None}, metadata={}
        )
        assert (plain.system, plain.ref, plain.provenance, plain.metadata) == (
            "mem0", "m/1", {}, None
        )  # fmt: skip
        assert full.metadata == {} and full.provenance == {"by": "agent", "n": None}
        for made in (plain, full):
            assert await store.context.get_external(made.id) == made

    async def test_put_external_same_id(self, store: Store) -> None:
        put = store.context.put_external
        made = await put("mem0", "m/1", provenance={"a": 1}, id="ext-1")
        assert made.id == "ext-1"
        assert await put("mem0", "m/1", provenance={"a": 1}, id="ext-1") == made
        await refused(store, "conflict", put("mem0", "m/2", provenance={"a": 1}, id="ext-1"))
        await refused(store, "conflict", put("mem0", "m/1", provenance={"a": 2}, id="ext-1"))
        assert len((await store.context.list_external()).items) == 1

    async def test_put_external_invalid(self, store: Store) -> None:
        put = store.context.put_external
        await refused(store, "invalid", put("", "r", provenance={}))
        await refused(store, "invalid", put("s", "", provenance={}))
        await refused(store, "invalid", put("s", "r", provenance={"x": float("nan")}))
        await refused(store, "invalid", put("s", "r", provenance={}, metadata={"x": float("inf")}))
        for bad_id in BAD_IDS:
            await refused(store, "invalid", put("s", "r", provenance={}, id=bad_id))

    async def test_list_external_filters_and_paginates(self, store: Store) -> None:
        made = [
            await store.context.put_external(
                "a" if i % 2 else "b", f"r{i}", provenance={}, id=f"ext-{c}"
            )
            for i, c in enumerate("dbfagce")
        ]
        await assert_paginates(
            lambda c, n: store.context.list_external(cursor=c, limit=n),
            key=lambda x: x.id,
            expected=sorted(made, key=lambda x: x.id),
        )
        await assert_paginates(
            lambda c, n: store.context.list_external(system="a", cursor=c, limit=n),
            key=lambda x: x.id,
            expected=sorted((x for x in made if x.system == "a"), key=lambda x: x.id),
        )
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.context.list_external(cursor=c, limit=n)
        )
        await expect_error("not_found", store.context.get_external("ext-missing"))

    # ------------------------------------------------------------------ packages

    async def test_create_package_round_trips(self, store: Store) -> None:
        refs = [ref("run", "run-missing"), ref("artifact", "art-missing"), ref("external", "x")]
        pkg = await store.context.create_package("ctx", refs)
        assert pkg.references == refs and pkg.metadata is None
        empty = await store.context.create_package("empty", [], metadata={})
        assert empty.references == [] and empty.metadata == {}
        for made in (pkg, empty):
            assert await store.context.get_package(made.id) == made

    async def test_create_package_same_id(self, store: Store) -> None:
        create = store.context.create_package
        refs = [ref("run", "r1")]
        made = await create("ctx", refs, id="pkg-1")
        assert await create("ctx", refs, id="pkg-1") == made
        await refused(store, "conflict", create("ctx", [ref("run", "r2")], id="pkg-1"))
        await refused(store, "conflict", create("other", refs, id="pkg-1"))

    @pytest.mark.parametrize("bad_id", BAD_IDS)
    async def test_create_package_malformed_id_invalid(self, store: Store, bad_id: str) -> None:
        await refused(store, "invalid", store.context.create_package("ctx", [], id=bad_id))

    async def test_create_package_invalid(self, store: Store) -> None:
        create = store.context.create_package
        await refused(store, "invalid", create("", []))
        await refused(store, "invalid", create("ctx", [], metadata={"x": float("nan")}))

    async def test_list_packages_paginates(self, store: Store) -> None:
        made = [
            await store.context.create_package(f"p{i}", [], id=f"pkg-{c}")
            for i, c in enumerate("dbfagce")
        ]
        await assert_paginates(
            lambda c, n: store.context.list_packages(cursor=c, limit=n),
            key=lambda x: x.id,
            expected=sorted(made, key=lambda x: x.id),
        )
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.context.list_packages(cursor=c, limit=n)
        )
        await expect_error("not_found", store.context.get_package("pkg-missing"))

    async def test_resolve_splits_found_and_dangling(self, store: Store) -> None:
        run = await store.runs.create("job")
        coll = await store.artifacts.create_collection("c")
        a = await store.artifacts.create(coll.id, "a", "x")
        b = await store.artifacts.create(coll.id, "b", "y")
        rel = await store.artifacts.relate(a.id, b.id, "cites")
        gone = await store.artifacts.relate(b.id, a.id, "cites")
        ext = await store.context.put_external("mem0", "m/1", provenance={})
        found = [
            ref("run", run.id),
            ref("artifact", a.id),
            ref("revision", a.id, 1),
            ref("relationship", rel.id),
            ref("external", ext.id),
        ]
        dangling = [
            ref("run", "run-missing"),
            ref("artifact", "art-missing"),
            ref("revision", a.id, 2),
            ref("relationship", gone.id),
            ref("external", "ext-missing"),
        ]
        mixed = [x for pair in zip(found, dangling, strict=True) for x in pair]
        pkg = await store.context.create_package("ctx", mixed)
        await store.artifacts.unrelate(gone.id)
        resolved = await store.context.resolve(pkg.id)
        assert resolved.package == pkg
        assert resolved.found == found and resolved.dangling == dangling
        await expect_error("not_found", store.context.resolve("pkg-missing"))

    async def test_mutations_are_audited(self, store: Store) -> None:
        seq = await audit_seq(store)
        ext = await store.context.put_external("mem0", "m/1", provenance={})
        await assert_audited(store, seq, ext.id)
        seq = await audit_seq(store)
        pkg = await store.context.create_package("ctx", [ref("external", ext.id)])
        await assert_audited(store, seq, pkg.id)

    async def test_context_survives_reopen(self, store: Store) -> None:
        ext = await store.context.put_external("mem0", "m/1", provenance={"a": None})
        pkg = await store.context.create_package("ctx", [ref("external", ext.id)], metadata={})
        reopened = await self.reopen(store)
        assert await reopened.context.get_external(ext.id) == ext
        assert await reopened.context.get_package(pkg.id) == pkg
        assert (await reopened.context.resolve(pkg.id)).found == pkg.references
