"""Conformance of :class:`keepstone.ports.ArtifactStore`: collections, revisions,
relationships, change records, tombstones, JSONL and queries."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given

from keepstone.schemas import ArtifactQuery, Provenance, sha256_digest
from keepstone.testing.base import (
    ALL,
    APPROVAL,
    BAD_IDS,
    PROPERTY,
    ConformanceBase,
    assert_audited,
    assert_listing_refuses_bad_paging,
    assert_paginates,
    audit_seq,
    collect,
    drain,
    expect_error,
    json_objects,
    refused,
)

if TYPE_CHECKING:
    from keepstone import Store
    from keepstone.schemas import Artifact, ChangeRecord, Collection


async def _collection(store: Store, name: str = "docs") -> Collection:
    return await store.artifacts.create_collection(name)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _changes(store: Store, artifact_id: str | None = None) -> list[ChangeRecord]:
    return await collect(
        lambda c: store.artifacts.changes(artifact_id=artifact_id, cursor=c, limit=ALL)
    )


async def _ids(store: Store, query: ArtifactQuery) -> list[str]:
    return [a.id for a in await collect(lambda c: store.artifacts.query(query, cursor=c))]


class ArtifactStoreConformance(ConformanceBase):
    """Tests of ``store.artifacts``."""

    # ------------------------------------------------------------------ collections

    async def test_create_collection_round_trips(self, store: Store) -> None:
        plain = await store.artifacts.create_collection("plain")
        empty = await store.artifacts.create_collection("empty", metadata={})
        full = await store.artifacts.create_collection("full", metadata={"a": None, "b": [1]})
        assert plain.metadata is None and empty.metadata == {}
        for coll in (plain, empty, full):
            assert await store.artifacts.get_collection(coll.id) == coll
            assert await store.artifacts.get_collection_by_name(coll.name) == coll
        assert (await store.artifacts.get_collection(full.id)).metadata == {"a": None, "b": [1]}

    async def test_create_collection_same_id_is_idempotent(self, store: Store) -> None:
        coll = await store.artifacts.create_collection("c", metadata={"x": 1}, id="col-1")
        assert coll.id == "col-1"
        assert await store.artifacts.create_collection("c", metadata={"x": 1}, id="col-1") == coll
        assert len((await store.artifacts.list_collections()).items) == 1

    async def test_create_collection_conflicts(self, store: Store) -> None:
        await store.artifacts.create_collection("c", id="col-1")
        taken = store.artifacts.create_collection("c")
        await refused(store, "conflict", taken)
        other = store.artifacts.create_collection("d", id="col-1")
        await refused(store, "conflict", other)
        meta = store.artifacts.create_collection("c", metadata={}, id="col-1")
        await refused(store, "conflict", meta)

    @pytest.mark.parametrize("bad_id", BAD_IDS)
    async def test_create_collection_malformed_id_invalid(self, store: Store, bad_id: str) -> None:
        await refused(store, "invalid", store.artifacts.create_collection("c", id=bad_id))

    async def test_create_collection_bad_input_invalid(self, store: Store) -> None:
        await refused(store, "invalid", store.artifacts.create_collection(""))
        nan = {"x": float("nan")}
        await refused(store, "invalid", store.artifacts.create_collection("c", metadata=nan))

    async def test_get_collection_unknown_not_found(self, store: Store) -> None:
        await expect_error("not_found", store.artifacts.get_collection("col-missing"))
        await expect_error("not_found", store.artifacts.get_collection_by_name("missing"))

    async def test_list_collections_by_name_paginates(self, store: Store) -> None:
        made = [await store.artifacts.create_collection(n) for n in "dbfagce"]
        await assert_paginates(
            lambda c, n: store.artifacts.list_collections(cursor=c, limit=n),
            key=lambda col: col.id,
            expected=sorted(made, key=lambda col: col.name),
        )
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.artifacts.list_collections(cursor=c, limit=n)
        )

    # ------------------------------------------------------------------ create / read

    async def test_create_text_bytes_and_stream(self, store: Store) -> None:
        coll = await _collection(store)
        text = await store.artifacts.create(coll.id, "t.txt", "héllo")
        raw = await store.artifacts.create(coll.id, "b.bin", b"\x00\x01")
        streamed = await store.artifacts.create(coll.id, "s.bin", _chunks(b"ab", b"", b"cd"))
        empty = await store.artifacts.create(coll.id, "e.bin", b"", media_type="x/empty")
        assert text.id.startswith("art_")
        assert text.media_type == "text/plain; charset=utf-8"
        assert raw.media_type == "application/octet-stream" and empty.media_type == "x/empty"
        for art, data in ((text, "héllo".encode()), (raw, b"\x00\x01"), (streamed, b"abcd")):
            assert (art.revision, art.digest, art.size) == (1, sha256_digest(data), len(data))
            assert art.collection_id == coll.id and art.type == "document"
            assert await store.artifacts.read(art.id) == data
            assert b"".join(await drain(store.artifacts.read_stream(art.id))) == data
            assert await store.artifacts.get(art.id) == art
            assert await store.artifacts.get_by_name(coll.id, art.name) == art
        assert await store.artifacts.read(empty.id) == b""

    async def test_create_keeps_none_and_empty_metadata(self, store: Store) -> None:
        coll = await _collection(store)
        none = await store.artifacts.create(coll.id, "a", "x")
        empty = await store.artifacts.create(coll.id, "b", "x", metadata={})
        assert (await store.artifacts.get(none.id)).metadata is None
        assert (await store.artifacts.get(empty.id)).metadata == {}
        revision = await store.artifacts.get_revision(empty.id, 1)
        assert revision.metadata == {} and revision.previous_digest is None

    @PROPERTY
    @given(metadata=json_objects)
    async def test_create_round_trips_any_json_metadata(
        self, store: Store, metadata: dict[str, Any]
    ) -> None:
        coll = await store.artifacts.create_collection(f"c-{next(self._scratch)}")
        art = await store.artifacts.create(coll.id, "a", b"x", metadata=metadata)
        assert (await store.artifacts.get(art.id)).metadata == metadata

    async def test_create_with_provenance_links_run(self, store: Store) -> None:
        run = await store.runs.create("job")
        coll = await _collection(store)
        prov = Provenance(run_id=run.id, step="parse", producer="parser/1")
        art = await store.artifacts.create(
            coll.id, "out", "x", type="phase_output", provenance=prov
        )
        assert art.run_id == run.id
        assert (await store.artifacts.get_revision(art.id, 1)).provenance == prov
        assert await _ids(store, ArtifactQuery(run_id=run.id)) == [art.id]

    async def test_create_refusals(self, store: Store) -> None:
        coll = await _collection(store)
        await store.artifacts.create(coll.id, "taken", "x", id="art-1")
        create = store.artifacts.create
        await refused(store, "not_found", create("col-missing", "a", "x"))
        await refused(store, "conflict", create(coll.id, "taken", "y"))
        await refused(store, "conflict", create(coll.id, "other", "x", id="art-1"))
        ghost = Provenance(run_id="run-missing")
        await refused(store, "integrity", create(coll.id, "a", "x", provenance=ghost))
        await refused(store, "invalid", create(coll.id, "", "x"))
        await refused(store, "invalid", create(coll.id, "a", "x", type="bogus"))  # type: ignore[arg-type]
        await refused(store, "invalid", create(coll.id, "a", "x", metadata={"n": float("nan")}))

    @pytest.mark.parametrize("bad_id", BAD_IDS)
    async def test_create_malformed_id_invalid(self, store: Store, bad_id: str) -> None:
        coll = await _collection(store)
        await refused(store, "invalid", store.artifacts.create(coll.id, "a", "x", id=bad_id))

    async def test_read_damaged_bytes_corrupt(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "a", b"original")
        await self.damage_blob(store, art.digest, b"tampered")
        await expect_error("corrupt", store.artifacts.read(art.id))
        await expect_error("corrupt", store.artifacts.read(art.id, revision=1))
        await expect_error("corrupt", drain(store.artifacts.read_stream(art.id)))
        assert await store.artifacts.read(art.id, verify=False) == b"tampered"

    async def test_read_refusals(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "a", "x")
        await expect_error("not_found", store.artifacts.read("art-missing"))
        await expect_error("not_found", store.artifacts.read(art.id, revision=2))
        await expect_error("not_found", drain(store.artifacts.read_stream("art-missing")))
        await expect_error("not_found", drain(store.artifacts.read_stream(art.id, revision=2)))
        await expect_error("not_found", store.artifacts.get("art-missing"))
        await expect_error("not_found", store.artifacts.get_by_name(coll.id, "missing"))

    # ------------------------------------------------------------------ update / revisions

    async def test_update_appends_revision(self, store: Store) -> None:
        coll = await _collection(store)
        first = await store.artifacts.create(coll.id, "a", "one", metadata={"v": 1})
        second = await store.artifacts.update(first.id, b"two", expected_revision=1)
        assert (second.revision, second.digest, second.size) == (2, sha256_digest(b"two"), 3)
        assert second.metadata == {"v": 1}, "update without metadata keeps it"
        assert second.created_at == first.created_at and second.updated_at > first.updated_at
        third = await store.artifacts.update(first.id, "three", metadata={})
        assert third.revision == 3 and third.metadata == {}
        assert await store.artifacts.read(first.id) == b"three"
        assert await store.artifacts.read(first.id, revision=1) == b"one"
        rev2 = await store.artifacts.get_revision(first.id, 2)
        assert rev2.previous_digest == first.digest and rev2.digest == second.digest
        revisions = await assert_paginates(
            lambda c, n: store.artifacts.revisions(first.id, cursor=c, limit=n),
            key=lambda r: r.number,
        )
        assert [(r.number, r.digest) for r in revisions] == [
            (1, first.digest), (2, second.digest), (3, third.digest)
        ]  # fmt: skip

    async def test_update_refusals(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "a", "x")
        await refused(store, "not_found", store.artifacts.update("art-missing", "y"))
        await refused(store, "conflict", store.artifacts.update(art.id, "y", expected_revision=2))
        ghost = Provenance(run_id="run-missing")
        await refused(store, "integrity", store.artifacts.update(art.id, "y", provenance=ghost))
        nan = {"n": float("nan")}
        await refused(store, "invalid", store.artifacts.update(art.id, "y", metadata=nan))
        await store.artifacts.delete(art.id)
        await refused(store, "conflict", store.artifacts.update(art.id, "y"))

    async def test_revisions_refusals(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "a", "x")
        await expect_error("not_found", store.artifacts.revisions("art-missing"))
        await expect_error("not_found", store.artifacts.get_revision(art.id, 2))
        await expect_error("not_found", store.artifacts.get_revision("art-missing", 1))
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.artifacts.revisions(art.id, cursor=c, limit=n)
        )

    async def test_purge_revision_with_approval(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "a", "only in rev 1")
        shared = await store.artifacts.create(coll.id, "b", "shared")
        await store.artifacts.update(art.id, "shared")
        await store.artifacts.update(art.id, "head")
        seq = await audit_seq(store)
        purged = await store.artifacts.purge_revision(art.id, 1, approval=APPROVAL)
        records = await assert_audited(store, seq, art.id)
        assert any(r.approval is not None for r in records)
        assert purged.purged and purged.number == 1 and purged.digest == art.digest
        assert (await store.artifacts.get_revision(art.id, 1)).purged
        await expect_error("not_found", store.artifacts.read(art.id, revision=1))
        assert not await store.blobs.exists(art.digest), "no other revision uses the bytes"
        change = (await _changes(store, art.id))[-1]
        assert (change.action, change.revision, change.old_digest) == ("purge", 1, art.digest)
        await store.artifacts.purge_revision(art.id, 2, approval=APPROVAL)
        assert await store.blobs.exists(shared.digest), "artifact b still uses the bytes"
        assert await store.artifacts.read(shared.id) == b"shared"
        assert await store.artifacts.read(art.id) == b"head"
        await store.artifacts.delete(art.id)
        head = await store.artifacts.purge_revision(art.id, 3, approval=APPROVAL)
        assert head.purged and head.number == 3

    async def test_purge_revision_refusals(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "a", "one")
        await store.artifacts.update(art.id, "two")
        purge = store.artifacts.purge_revision
        await refused(store, "review_required", purge(art.id, 1), audited=True)
        await refused(store, "conflict", purge(art.id, 2, approval=APPROVAL))
        await refused(store, "not_found", purge(art.id, 3, approval=APPROVAL))
        await refused(store, "not_found", purge("art-missing", 1, approval=APPROVAL))

    # ------------------------------------------------------------------ changes

    async def test_changes_record_old_and_new_digests(self, store: Store) -> None:
        coll = await _collection(store)
        a = await store.artifacts.create(coll.id, "a", "one")
        b = await store.artifacts.create(coll.id, "b", "bee")
        a2 = await store.artifacts.update(a.id, "two")
        rel = await store.artifacts.relate(a.id, b.id, "cites")
        await store.artifacts.unrelate(rel.id)
        await store.artifacts.delete(a.id)
        changes = await assert_paginates(
            lambda c, n: store.artifacts.changes(cursor=c, limit=n), key=lambda ch: ch.seq
        )
        seqs = [ch.seq for ch in changes]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert [ch.action for ch in changes] == [
            "create", "create", "update", "relate", "unrelate", "delete"
        ]  # fmt: skip
        create, _, update, relate, unrelate, delete = changes
        assert (create.artifact_id, create.old_digest, create.new_digest) == (a.id, None, a.digest)
        assert (update.old_digest, update.new_digest, update.revision) == (a.digest, a2.digest, 2)
        assert relate.relationship_id == unrelate.relationship_id == rel.id
        assert delete.artifact_id == a.id and delete.old_digest == a2.digest
        mine = await _changes(store, a.id)
        assert [ch.action for ch in mine if ch.relationship_id is None] == [
            "create", "update", "delete"
        ]  # fmt: skip
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.artifacts.changes(cursor=c, limit=n)
        )

    # ------------------------------------------------------------------ delete

    async def test_delete_leaves_readable_tombstone_and_frees_name(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "a", "keep me", metadata={"k": 1})
        gone = await store.artifacts.delete(art.id, expected_revision=1, reason="obsolete")
        assert gone.deleted_at is not None and gone.id == art.id
        assert (await store.artifacts.get(art.id)).deleted_at == gone.deleted_at
        await expect_error("not_found", store.artifacts.get_by_name(coll.id, "a"))
        assert await store.artifacts.read(art.id) == b"keep me"
        assert [r.number for r in (await store.artifacts.revisions(art.id)).items] == [1]
        assert await _ids(store, ArtifactQuery(metadata={"k": 1})) == []
        assert await _ids(store, ArtifactQuery(name="a", include_deleted=True)) == [art.id]
        again = await store.artifacts.create(coll.id, "a", "new")
        assert again.id != art.id and again.deleted_at is None
        assert await store.artifacts.get_by_name(coll.id, "a") == again
        assert await _ids(store, ArtifactQuery(name="a")) == [again.id]

    async def test_delete_removes_relationships_with_unrelate_changes(self, store: Store) -> None:
        coll = await _collection(store)
        a, b, c = [await store.artifacts.create(coll.id, n, n) for n in "abc"]
        out = await store.artifacts.relate(a.id, b.id, "cites")
        into = await store.artifacts.relate(c.id, a.id, "cites")
        keep = await store.artifacts.relate(b.id, c.id, "cites")
        before = len(await _changes(store))
        await store.artifacts.delete(a.id)
        for rel in (out, into):
            await expect_error("not_found", store.artifacts.get_relationship(rel.id))
        assert await store.artifacts.get_relationship(keep.id) == keep
        assert [r.id for r in (await store.artifacts.relationships(b.id)).items] == [keep.id]
        new = (await _changes(store))[before:]
        unrelated = {ch.relationship_id for ch in new if ch.action == "unrelate"}
        assert unrelated == {out.id, into.id}
        assert [ch.action for ch in new].count("delete") == 1
        assert await _ids(store, ArtifactQuery(related_to=b.id)) == [c.id]

    async def test_delete_refusals(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "a", "x")
        await refused(store, "not_found", store.artifacts.delete("art-missing"))
        await refused(store, "conflict", store.artifacts.delete(art.id, expected_revision=2))
        await store.artifacts.delete(art.id)
        await refused(store, "conflict", store.artifacts.delete(art.id))

    # ------------------------------------------------------------------ JSONL

    async def test_write_jsonl_streams_and_reads_back(self, store: Store) -> None:
        coll = await _collection(store)
        records: list[dict[str, Any]] = [
            {"i": i, "none": None, "empty": {}, "list": []} for i in range(40)
        ]

        async def generate() -> AsyncIterator[dict[str, Any]]:
            for record in records:
                yield record

        art = await store.artifacts.write_jsonl(coll.id, "rows", generate(), metadata={})
        assert art.type == "intermediate_jsonl" and art.revision == 1 and art.metadata == {}
        assert await drain(store.artifacts.read_jsonl(art.id)) == records
        lines = (await store.artifacts.read(art.id)).decode().splitlines()
        assert [json.loads(line) for line in lines] == records
        again = await store.artifacts.write_jsonl(coll.id, "rows", [{"x": 1}])
        assert again.id == art.id and again.revision == 2
        assert await drain(store.artifacts.read_jsonl(art.id)) == [{"x": 1}]
        assert await drain(store.artifacts.read_jsonl(art.id, revision=1)) == records
        empty = await store.artifacts.write_jsonl(coll.id, "none", [])
        assert empty.size == 0 and await drain(store.artifacts.read_jsonl(empty.id)) == []

    async def test_write_jsonl_refuses_non_objects(self, store: Store) -> None:
        coll = await _collection(store)

        async def bad() -> AsyncIterator[Any]:
            yield {"ok": 1}
            yield [1, 2]

        write = store.artifacts.write_jsonl
        await refused(store, "invalid", write(coll.id, "bad", bad()))
        await refused(store, "invalid", write(coll.id, "nan", [{"x": float("nan")}]))
        await refused(store, "not_found", write("col-missing", "rows", [{"x": 1}]))

    async def test_read_jsonl_malformed_line_corrupt(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "broken", '{"a": 1}\nnot json\n')
        error = await expect_error("corrupt", drain(store.artifacts.read_jsonl(art.id)))
        assert error.details["line"] == 2
        await expect_error("not_found", drain(store.artifacts.read_jsonl("art-missing")))

    # ------------------------------------------------------------------ relationships

    async def test_relate_round_trips_and_lists_by_direction(self, store: Store) -> None:
        coll = await _collection(store)
        a, b, c = [await store.artifacts.create(coll.id, n, n) for n in "abc"]
        ab = await store.artifacts.relate(a.id, b.id, "cites", id="rel-ab")
        ca = await store.artifacts.relate(c.id, a.id, "cites", metadata={})
        ac = await store.artifacts.relate(a.id, c.id, "derived_from", metadata={"w": 1})
        assert ab.id == "rel-ab" and ab.metadata is None and ca.metadata == {}
        for rel in (ab, ca, ac):
            assert await store.artifacts.get_relationship(rel.id) == rel

        async def rels(**kw: Any) -> set[str]:
            page = await store.artifacts.relationships(a.id, limit=ALL, **kw)
            return {r.id for r in page.items}

        assert await rels(direction="out") == {ab.id, ac.id}
        assert await rels(direction="in") == {ca.id}
        assert await rels() == {ab.id, ca.id, ac.id}
        assert await rels(kind="cites") == {ab.id, ca.id}
        assert await rels(direction="out", kind="cites") == {ab.id}
        await assert_paginates(
            lambda cur, n: store.artifacts.relationships(a.id, cursor=cur, limit=n),
            key=lambda r: r.id,
        )

    async def test_relate_refusals(self, store: Store) -> None:
        coll = await _collection(store)
        a, b, d = [await store.artifacts.create(coll.id, n, n) for n in "abd"]
        await store.artifacts.relate(a.id, b.id, "cites", id="rel-1")
        await store.artifacts.delete(d.id)
        relate = store.artifacts.relate
        await refused(store, "integrity", relate(a.id, "art-missing", "cites"))
        await refused(store, "integrity", relate("art-missing", a.id, "cites"))
        await refused(store, "integrity", relate(a.id, d.id, "cites"))
        await refused(store, "integrity", relate(d.id, a.id, "cites"))
        await refused(store, "conflict", relate(a.id, b.id, "cites"))
        await refused(store, "conflict", relate(b.id, a.id, "cites", id="rel-1"))
        await refused(store, "invalid", relate(a.id, b.id, ""))
        for bad_id in BAD_IDS:
            await refused(store, "invalid", relate(b.id, a.id, "x", id=bad_id))

    async def test_unrelate_removes_and_records(self, store: Store) -> None:
        coll = await _collection(store)
        a, b = [await store.artifacts.create(coll.id, n, n) for n in "ab"]
        rel = await store.artifacts.relate(a.id, b.id, "cites")
        await store.artifacts.unrelate(rel.id)
        await expect_error("not_found", store.artifacts.get_relationship(rel.id))
        assert (await store.artifacts.relationships(a.id)).items == []
        assert (await _changes(store))[-1].action == "unrelate"
        await refused(store, "not_found", store.artifacts.unrelate(rel.id))
        again = await store.artifacts.relate(a.id, b.id, "cites")
        assert again.id != rel.id

    async def test_relationships_refusals(self, store: Store) -> None:
        coll = await _collection(store)
        art = await store.artifacts.create(coll.id, "a", "x")
        await expect_error("not_found", store.artifacts.relationships("art-missing"))
        await expect_error("not_found", store.artifacts.get_relationship("rel-missing"))
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.artifacts.relationships(art.id, cursor=c, limit=n)
        )

    # ------------------------------------------------------------------ query

    async def test_query_filters_match_every_field(self, store: Store) -> None:
        docs, other = await _collection(store, "docs"), await _collection(store, "other")
        run = await store.runs.create("job")
        create = store.artifacts.create
        a = await create(docs.id, "a", "same", metadata={"lang": "en", "n": 1})
        b = await create(docs.id, "b", "same", type="qa_report", metadata={"lang": "en"})
        c = await create(other.id, "a", "diff", provenance=Provenance(run_id=run.id))
        await store.artifacts.relate(a.id, b.id, "cites")
        await store.artifacts.relate(c.id, a.id, "mentions")
        assert await _ids(store, ArtifactQuery()) == [a.id, b.id, c.id]
        assert await _ids(store, ArtifactQuery(collection_id=docs.id)) == [a.id, b.id]
        assert await _ids(store, ArtifactQuery(name="a")) == [a.id, c.id]
        assert await _ids(store, ArtifactQuery(name="a", collection_id=other.id)) == [c.id]
        assert await _ids(store, ArtifactQuery(type="qa_report")) == [b.id]
        assert await _ids(store, ArtifactQuery(digest=a.digest)) == [a.id, b.id]
        assert await _ids(store, ArtifactQuery(metadata={"lang": "en"})) == [a.id, b.id]
        assert await _ids(store, ArtifactQuery(metadata={"lang": "en", "n": 1})) == [a.id]
        assert await _ids(store, ArtifactQuery(metadata={"n": "1"})) == []
        assert await _ids(store, ArtifactQuery(run_id=run.id)) == [c.id]
        assert await _ids(store, ArtifactQuery(related_to=a.id)) == [b.id, c.id]
        related = ArtifactQuery(related_to=a.id, relationship_kind="mentions")
        assert await _ids(store, related) == [c.id]

    async def test_query_full_text_of_text_content(self, store: Store) -> None:
        coll = await _collection(store)
        fox = await store.artifacts.create(coll.id, "fox", "The quick brown fox jumps")
        dog = await store.artifacts.create(coll.id, "dog", "a lazy dog sleeps")
        assert await _ids(store, ArtifactQuery(text="quick fox")) == [fox.id]
        assert await _ids(store, ArtifactQuery(text="dog")) == [dog.id]
        assert await _ids(store, ArtifactQuery(text="quick dog")) == []
        assert await _ids(store, ArtifactQuery(text="fox", collection_id=coll.id)) == [fox.id]
        await store.artifacts.update(fox.id, "a slow turtle")
        assert await _ids(store, ArtifactQuery(text="turtle")) == [fox.id]
        assert await _ids(store, ArtifactQuery(text="quick")) == []
        await store.artifacts.delete(dog.id)
        assert await _ids(store, ArtifactQuery(text="dog")) == []

    async def test_query_full_text_folds_case_and_diacritics_alike(self, store: Store) -> None:
        # The words rule of keepstone.schemas.fulltext, the same on every backend.
        coll = await _collection(store)
        texts = {
            "cafe": unicodedata.normalize("NFD", "un café noir"),
            "istanbul": unicodedata.normalize("NFD", "İstanbul"),
            "greek": "η οδος",
            "german": "Die Straße",
            "ligature": "the \ufb01nal word",
            "tokyo": "東京都",
            "kana": "\uff8a\uff9f\uff9d",  # half-width パン
            "snake": "call snake_case here",
            "dotless": "ıstanbul",
        }
        ids = {
            name: (await store.artifacts.create(coll.id, name, text)).id
            for name, text in texts.items()
        }
        expected = {
            "cafe": ["cafe"],
            "CAFÉ": ["cafe"],
            unicodedata.normalize("NFC", "café"): ["cafe"],
            unicodedata.normalize("NFD", "Café NOIR"): ["cafe"],
            "İstanbul": ["istanbul"],
            "istanbul": ["istanbul"],
            "ISTANBUL": ["istanbul"],
            "οδοσ": ["greek"],
            "ΟΔΟΣ": ["greek"],
            "strasse": ["german"],
            "STRASSE die": ["german"],
            "final": ["ligature"],
            "東京都": ["tokyo"],
            "東京": [],
            "パン": ["kana"],
            "ハン": [],
            "snake_case": ["snake"],
            "snake": [],
            "ıstanbul": ["dotless"],
        }
        for query, names in expected.items():
            found = await _ids(store, ArtifactQuery(text=query))
            assert sorted(found) == sorted(ids[n] for n in names), query

    async def test_query_paginates_in_id_order(self, store: Store) -> None:
        coll = await _collection(store)
        made: list[Artifact] = []
        for i in range(7):
            made.append(await store.artifacts.create(coll.id, f"n{i}", f"x{i}", id=f"art-{i}"))
        await assert_paginates(
            lambda c, n: store.artifacts.query(
                ArtifactQuery(collection_id=coll.id), cursor=c, limit=n
            ),
            key=lambda art: art.id,
            expected=sorted(made, key=lambda art: art.id),
        )
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.artifacts.query(cursor=c, limit=n)
        )

    # ------------------------------------------------------------------ audit and durability

    async def test_mutations_are_audited(self, store: Store) -> None:
        seq = await audit_seq(store)
        coll = await _collection(store)
        await assert_audited(store, seq, coll.id)
        seq = await audit_seq(store)
        a = await store.artifacts.create(coll.id, "a", "x")
        await assert_audited(store, seq, a.id)
        b = await store.artifacts.create(coll.id, "b", "y")
        seq = await audit_seq(store)
        await store.artifacts.update(a.id, "z")
        await assert_audited(store, seq, a.id)
        seq = await audit_seq(store)
        rel = await store.artifacts.relate(a.id, b.id, "cites")
        await assert_audited(store, seq)
        seq = await audit_seq(store)
        await store.artifacts.unrelate(rel.id)
        await assert_audited(store, seq)
        seq = await audit_seq(store)
        await store.artifacts.write_jsonl(coll.id, "rows", [{"a": 1}])
        await assert_audited(store, seq)
        seq = await audit_seq(store)
        await store.artifacts.delete(a.id)
        await assert_audited(store, seq, a.id)

    async def test_artifacts_survive_reopen(self, store: Store) -> None:
        coll = await _collection(store)
        a = await store.artifacts.create(coll.id, "a", "one", metadata={})
        a = await store.artifacts.update(a.id, "two")
        b = await store.artifacts.create(coll.id, "b", "bee")
        rel = await store.artifacts.relate(a.id, b.id, "cites")
        changes = await _changes(store)
        reopened = await self.reopen(store)
        assert await reopened.artifacts.get(a.id) == a
        assert await reopened.artifacts.read(a.id, revision=1) == b"one"
        assert await reopened.artifacts.get_relationship(rel.id) == rel
        assert await _changes(reopened) == changes
        await refused(reopened, "conflict", reopened.artifacts.create(coll.id, "a", "x"))
