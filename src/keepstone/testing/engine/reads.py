"""The reads of the engine SPI: ``find`` filters, orders, pages, tags and full
text; blobs stored, streamed, listed and deleted."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keepstone.backends.memory.engine import MemoryEngine
from keepstone.engine.spi import Append, BlobPut, Cmp, Delete, In, Op, Put, RecordEngine, WriteBatch
from keepstone.engine.tables import (
    ARTIFACT_TEXT,
    ARTIFACTS,
    AUDIT,
    CHANGES,
    EVENTS,
    NODES,
    PROFILES,
    RUNS,
    SNAPSHOTS,
)
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from keepstone.testing.engine.base import (
    EngineConformanceBase,
    audit_draft,
    event_row,
    ids_of,
    node_row,
    put_artifacts,
    requires,
    run_row,
)


class EngineReadConformance(EngineConformanceBase):
    """What ``find``, ``count`` and the blob calls answer."""

    # ------------------------------------------------------------------ find

    async def test_find_where_equality_null_and_in(self, engine: RecordEngine) -> None:
        await put_artifacts(engine)
        assert ids_of(await engine.find(ARTIFACTS, {"collection_id": "c1"})) == ["a1", "a2", "a3"]
        assert ids_of(await engine.find(ARTIFACTS, {"deleted_at": None})) == ["a1", "a2", "a4"]
        assert ids_of(await engine.find(ARTIFACTS, {"type": In(("qa", "export"))})) == ["a2", "a4"]
        assert ids_of(await engine.find(ARTIFACTS, {"type": In(())})) == []
        assert ids_of(await engine.find(ARTIFACTS, {"run_id": In(("r1", None))})) == [
            "a1",
            "a3",
            "a4",
        ]
        assert ids_of(await engine.find(ARTIFACTS, {"id": In(("a4", "a1", "zz"))})) == ["a1", "a4"]
        many = (*(f"x{i}" for i in range(2000)), "a3")
        assert ids_of(await engine.find(ARTIFACTS, {"id": In(many)})) == ["a3"]
        both = {"collection_id": "c1", "deleted_at": None, "type": "document"}
        assert ids_of(await engine.find(ARTIFACTS, both)) == ["a1"]
        assert await engine.count(ARTIFACTS, {"deleted_at": None}) == 3
        assert await engine.count(ARTIFACTS) == 4

    async def test_find_comparisons_and_ranges(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Append(EVENTS, event_row(i)) for i in range(10)]))
        seqs = await engine.find(EVENTS, {"seq": Cmp(">", 7)}, order=("seq",))
        assert ids_of(seqs, "seq") == [8, 9, 10]
        ranged = {"seq": (Cmp(">=", 3), Cmp("<", 6))}
        assert ids_of(await engine.find(EVENTS, ranged, order=("seq",)), "seq") == [3, 4, 5]
        assert await engine.count(EVENTS, {"seq": (Cmp(">", 2), Cmp("<=", 4))}) == 2
        await engine.apply(
            WriteBatch([Put(RUNS, run_row(f"r{i}", f"2026-01-0{i}")) for i in range(1, 6)])
        )
        window = {"created_at": (Cmp(">", "2026-01-02"), Cmp("<", "2026-01-05"))}
        assert ids_of(await engine.find(RUNS, window, order=("created_at",))) == ["r3", "r4"]

    async def test_find_dotted_column(self, engine: RecordEngine) -> None:
        kinds = ["custom", "node.put", "custom", "edge.put"]
        await engine.apply(
            WriteBatch([Append(EVENTS, event_row(i, k)) for i, k in enumerate(kinds)])
        )
        found = await engine.find(EVENTS, {"payload.kind": In(("node.put", "edge.put"))})
        assert ids_of(found) == ["evt_0001", "evt_0003"]
        assert await engine.count(EVENTS, {"payload.kind": "custom"}) == 2

    async def test_find_on_fields_without_a_column(self, engine: RecordEngine) -> None:
        rows = [
            {"id": "r1", "revision": 1, "params": {"lr": 0.1, "tag": "a"}},
            {"id": "r2", "revision": 2, "params": {"lr": 0.2, "tag": "b"}},
            {"id": "r3", "revision": 2, "params": None},
        ]
        await engine.apply(WriteBatch([Put(RUNS, r) for r in rows]))
        assert ids_of(await engine.find(RUNS, {"revision": 2})) == ["r2", "r3"]
        assert ids_of(await engine.find(RUNS, {"params.tag": "a"})) == ["r1"]
        assert ids_of(await engine.find(RUNS, {"params.lr": Cmp(">", 0.15)})) == ["r2"]
        assert ids_of(await engine.find(RUNS, {"params.tag": None})) == ["r3"]
        assert await engine.count(RUNS, {"revision": In((1, 3))}) == 1

    async def test_find_order_after_desc_limit(self, engine: RecordEngine) -> None:
        # Equal order values tie-break on the key, both ways.
        dates = {"r1": "2026-01-02", "r2": "2026-01-01", "r3": "2026-01-02", "r4": "2026-01-03"}
        await engine.apply(WriteBatch([Put(RUNS, run_row(k, v)) for k, v in dates.items()]))
        ordered = ids_of(await engine.find(RUNS, order=("created_at",)))
        assert ordered == ["r2", "r1", "r3", "r4"]
        assert ids_of(await engine.find(RUNS, order=("created_at",), desc=True)) == ordered[::-1]
        after = ("2026-01-02", "r1")
        assert ids_of(await engine.find(RUNS, order=("created_at",), after=after)) == ["r3", "r4"]
        back = await engine.find(RUNS, order=("created_at",), after=after, desc=True)
        assert ids_of(back) == ["r2"]
        assert ids_of(await engine.find(RUNS, order=("created_at",), limit=2)) == ["r2", "r1"]
        assert ids_of(await engine.find(RUNS, after=("r2",), limit=1)) == ["r3"]
        assert ids_of(await engine.find(RUNS, desc=True, limit=1)) == ["r4"]

    async def test_find_pages_over_seq_keyed_table(self, engine: RecordEngine) -> None:
        for i in range(12):
            await engine.apply(WriteBatch([], [audit_draft("a" if i % 2 else "b")]))
        page = await engine.find(AUDIT, {"action": "a"}, order=("seq",), limit=3)
        assert ids_of(page, "seq") == [2, 4, 6]
        rest = await engine.find(AUDIT, {"action": "a"}, order=("seq",), after=(6, "6"))
        assert ids_of(rest, "seq") == [8, 10, 12]
        last = await engine.find(AUDIT, order=("seq",), desc=True, limit=1)
        assert ids_of(last, "seq") == [12]
        assert ids_of(await engine.find(CHANGES), "seq") == []

    async def test_find_composite_key_order(self, engine: RecordEngine) -> None:
        rows = [{"run_id": "r1", "number": n} for n in (1, 2, 10, 9)]
        rows.append({"run_id": "r2", "number": 5})
        await engine.apply(WriteBatch([Put(SNAPSHOTS, r) for r in rows]))
        found = await engine.find(SNAPSHOTS, {"run_id": "r1"}, order=("number",), desc=True)
        assert ids_of(found, "number") == [10, 9, 2, 1]
        after = await engine.find(SNAPSHOTS, {"run_id": "r1"}, order=("number",), after=(2, "r1:2"))
        assert ids_of(after, "number") == [9, 10]
        unordered = await engine.find(SNAPSHOTS, {"run_id": "r1"})  # key order: "r1:10" < "r1:2"
        assert ids_of(unordered, "number") == [1, 10, 2, 9]

    async def test_find_tags(self, engine: RecordEngine) -> None:
        runs: list[dict[str, Any]] = [
            {"id": "r1", "labels": {"team": "a", "tier": 1}},
            {"id": "r2", "labels": {"team": "a", "tier": "1"}},
            {"id": "r3", "labels": {"team": "b", "deep": {"x": [1, 2]}}},
            {"id": "r4", "labels": None},
            {"id": "r5"},
        ]
        await engine.apply(WriteBatch([Put(RUNS, r) for r in runs]))
        assert ids_of(await engine.find(RUNS, tags={"team": "a"})) == ["r1", "r2"]
        assert ids_of(await engine.find(RUNS, tags={"team": "a", "tier": 1})) == ["r1"]
        assert ids_of(await engine.find(RUNS, tags={"tier": "1"})) == ["r2"]
        assert ids_of(await engine.find(RUNS, tags={"deep": {"x": [1, 2]}})) == ["r3"]
        assert ids_of(await engine.find(RUNS, tags={"team": None})) == []
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1", "labels": {"team": "b"}})]))
        assert ids_of(await engine.find(RUNS, tags={"team": "a"})) == ["r2"]
        assert ids_of(await engine.find(RUNS, tags={"team": "b"}, limit=1)) == ["r1"]

    async def test_find_tags_beyond_64_bits_match_nothing(self, engine: RecordEngine) -> None:
        # Tags compare as canonical JSON; an integer beyond 64 bits has none
        # (no row can hold one), so a filter on it matches no row.
        runs: list[dict[str, Any]] = [
            {"id": "r1", "labels": {"n": 2**64 - 1}},
            {"id": "r2", "labels": {"n": -(2**63), "m": 1}},
        ]
        await engine.apply(WriteBatch([Put(RUNS, r) for r in runs]))
        assert ids_of(await engine.find(RUNS, tags={"n": 2**64 - 1})) == ["r1"]
        assert ids_of(await engine.find(RUNS, tags={"n": -(2**63)})) == ["r2"]
        for beyond in (2**64, -(2**63) - 1):
            assert await engine.find(RUNS, tags={"n": beyond}) == []
            assert await engine.find(RUNS, tags={"m": 1, "absent": [beyond]}) == []
            assert await engine.find(RUNS, tags={"n": beyond}, order=("created_at",)) == []
        # A table without a tags field: no row has the tag.
        await engine.apply(WriteBatch([Put(PROFILES, {"id": "p1"})]))
        assert await engine.find(PROFILES, tags={"n": 1}) == []

    async def test_find_after_a_text_value_holding_nul(self, engine: RecordEngine) -> None:
        # A keyset may hold a value no row holds (a hand-made cursor); a NUL in
        # it sorts below every other character, on every engine.
        dates = {"r1": "2026-01-01", "r2": "2026-01-02", "r3": "2026-01-02"}
        await engine.apply(WriteBatch([Put(RUNS, run_row(k, v)) for k, v in dates.items()]))

        async def after(values: tuple[str, str], desc: bool = False) -> list[Any]:
            found = await engine.find(RUNS, order=("created_at",), after=values, desc=desc)
            return ids_of(found)

        assert await after(("2026-01-02", "r2\x00")) == ["r3"]
        assert await after(("2026-01-02", "r2\x00"), desc=True) == ["r2", "r1"]
        assert await after(("2026-01-01\x00", "")) == ["r2", "r3"]
        assert await after(("2026-01-01\x00", ""), desc=True) == ["r1"]
        assert await after(("2026-01-02\x00x", "r0")) == []
        assert await after(("2026-01-02\x00x", "r0"), desc=True) == ["r3", "r2", "r1"]
        assert ids_of(await engine.find(RUNS, after=("r1\x00",))) == ["r2", "r3"]
        assert ids_of(await engine.find(RUNS, after=("r2\x00",), desc=True)) == ["r2", "r1"]

    async def test_find_text(self, engine: RecordEngine) -> None:
        requires(engine, "fts")
        texts = {
            "t1": "The quick brown fox",
            "t2": "quick thinking, QUICK results",
            "t3": "snake_case words and café",
            "t4": 'weird "quotes" OR NEAR(x) *stars*',
        }
        await engine.apply(
            WriteBatch([Put(ARTIFACT_TEXT, {"id": k, "text": v}) for k, v in texts.items()])
        )
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="quick")) == ["t1", "t2"]
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="QUICK fox")) == ["t1"]
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="qui")) == []
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="snake_case")) == ["t3"]
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="snake")) == []
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="café")) == ["t3"]
        # accents and case fold alike (keepstone.schemas.fulltext)
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="CAFE")) == ["t3"]
        assert ids_of(await engine.find(ARTIFACT_TEXT, text='"quotes" OR')) == ["t4"]
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="NEAR(x) *stars*")) == ["t4"]
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="fox OR snake")) == []
        assert await engine.find(ARTIFACT_TEXT, text="  ...  ") == []
        await engine.apply(WriteBatch([Put(ARTIFACT_TEXT, {"id": "t1", "text": "slow"})]))
        await engine.apply(WriteBatch([Delete(ARTIFACT_TEXT, "t2")]))
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="quick")) == []
        assert ids_of(await engine.find(ARTIFACT_TEXT, text="slow")) == ["t1"]

    async def test_find_text_with_where_and_paging(self, engine: RecordEngine) -> None:
        requires(engine, "fts")
        nodes = [node_row("p1", f"n{i}", f"alpha {'beta' if i % 2 else 'gamma'}") for i in range(6)]
        nodes.append(node_row("p2", "n9", "alpha beta"))
        await engine.apply(WriteBatch([Put(NODES, n) for n in nodes]))
        where = {"profile_id": "p1"}
        found = await engine.find(NODES, where, order=("id",), text="beta", limit=2)
        assert ids_of(found) == ["n1", "n3"]
        more = await engine.find(NODES, where, order=("id",), text="beta", after=("n3", "p1:n3"))
        assert ids_of(more) == ["n5"]

    async def test_find_text_splits_words_like_the_reference(self, engine: RecordEngine) -> None:
        requires(engine, "fts")
        texts = {
            "t1": "The quick-brown fox_jumps over 3.14 lazy dogs",
            "t2": "Ünïcödé wörds and l'apostrophe, e-mail a@b.c",
            "t3": "x" * 3000 + " tail",
            "t4": "QUICK quick Quick",
        }
        batch = WriteBatch([Put(ARTIFACT_TEXT, {"id": k, "text": v}) for k, v in texts.items()])
        reference = MemoryEngine()
        await reference.apply(batch)
        await engine.apply(batch)
        queries = ["quick", "quick brown", "fox_jumps", "fox", "14", "3 14", "ünïcödé", "WÖRDS"]
        queries += ["apostrophe l", "e mail", "b c a", "x" * 3000, "tail", "quick missing", "!!!"]
        for query in queries:
            expected = await reference.find(ARTIFACT_TEXT, text=query)
            assert await engine.find(ARTIFACT_TEXT, text=query) == expected, query

    # ------------------------------------------------------------------ blobs

    async def test_blob_put_in_batch(self, engine: RecordEngine) -> None:
        small, large = b"small", bytes(range(256)) * 20
        puts: list[Op] = [BlobPut(sha256_digest(d), d) for d in (small, large)]
        await engine.apply(WriteBatch(puts))
        await engine.apply(WriteBatch(puts))  # idempotent
        for data in (small, large):
            digest = sha256_digest(data)
            assert await engine.blob_get(digest) == data
            assert await engine.blob_size(digest) == len(data)
            chunks = [c async for c in engine.blob_stream(digest, 1000)]
            assert b"".join(chunks) == data
            assert all(len(c) <= 1000 for c in chunks)
        listed = await engine.blob_list(None, 10)
        assert [b.digest for b in listed] == sorted(sha256_digest(d) for d in (small, large))
        assert await engine.blob_list(listed[0].digest, 10) == listed[1:]
        await engine.blob_delete(sha256_digest(large))
        assert await engine.blob_get(sha256_digest(large)) is None

    async def test_blob_get_many(self, engine: RecordEngine) -> None:
        datas = [b"one", b"two", bytes(range(256)) * 300]
        await engine.apply(WriteBatch([BlobPut(sha256_digest(d), d) for d in datas]))
        missing = "sha256:" + "0" * 64
        wanted = [sha256_digest(d) for d in datas] + [missing, sha256_digest(datas[0])]
        found = await engine.blob_get_many(wanted)
        assert found == {sha256_digest(d): d for d in datas}
        assert await engine.blob_get_many([]) == {}
        assert await engine.blob_get_many([missing]) == {}

    async def test_blob_stream_missing(self, engine: RecordEngine) -> None:
        with pytest.raises(StorageError) as info:
            async for _ in engine.blob_stream("sha256:" + "0" * 64, 10):
                pass
        assert info.value.code == "not_found"

    async def test_blob_put_stream(self, engine: RecordEngine) -> None:
        for size in (0, 10, 5000):
            data = random.Random(size).randbytes(size)

            async def chunks(data: bytes = data) -> AsyncIterator[bytes]:
                for start in range(0, len(data), 333):
                    yield data[start : start + 333]

            info = await engine.blob_put_stream(chunks())
            assert (info.digest, info.size) == (sha256_digest(data), size)
            assert await engine.blob_get(info.digest) == data
