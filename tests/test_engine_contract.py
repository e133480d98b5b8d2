"""The RecordEngine SPI contract, run against the memory reference and SQLite.

Every test runs on both engines with the same expectations, so SQLite is held
to the reference semantics op by op: preconditions see earlier ops of the same
batch, refused batches leave nothing, seqs and the audit chain follow commit
order. The last test drives both with the same random history and compares
every query answer.
"""

from __future__ import annotations

import asyncio
import pathlib
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from keepstone.backends.memory.engine import MemoryEngine
from keepstone.backends.sql.sqlite import SQLiteEngine
from keepstone.engine.spi import (
    Append,
    BlobPut,
    Check,
    CheckNone,
    Cmp,
    Delete,
    In,
    Op,
    Put,
    RecordEngine,
    Restore,
    Table,
    WriteBatch,
)
from keepstone.engine.tables import (
    ARTIFACT_TEXT,
    ARTIFACTS,
    AUDIT,
    CHANGES,
    EVENTS,
    NODES,
    RUNS,
    SNAPSHOTS,
)
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from keepstone.schemas.audit import GENESIS_HASH, audit_hash


@pytest.fixture(params=["memory", "sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Any]:
    made: RecordEngine
    if request.param == "memory":
        made = MemoryEngine()
    else:
        made = await SQLiteEngine.open(tmp_path / "engine.db", blob_threshold=1024)
    try:
        yield made
    finally:
        await made.close()


def _rows(raw: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in raw]


def _ids(raw: list[bytes], field: str = "id") -> list[Any]:
    return [orjson.loads(r)[field] for r in raw]


def _draft(action: str, target: str = "t") -> dict[str, Any]:
    return {
        "schema_version": 1,
        "at": "2026-01-01T00:00:00.000000Z",
        "actor": "tester",
        "action": action,
        "target": target,
        "outcome": "applied",
        "approval": None,
        "details": None,
    }


def _event(i: int, kind: str = "custom", profile: str = "p1") -> dict[str, Any]:
    return {"id": f"evt_{i:04d}", "profile_id": profile, "path_id": None, "payload": {"kind": kind}}


async def _refused(engine: RecordEngine, batch: WriteBatch) -> StorageError:
    with pytest.raises(StorageError) as info:
        await engine.apply(batch)
    return info.value


class TestEngineContract:
    # ------------------------------------------------------------------ put

    async def test_put_any_inserts_and_replaces(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1", "name": "a"})]))
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1", "name": "b"})]))
        assert orjson.loads(await engine.get(RUNS, "r1") or b"") == {"id": "r1", "name": "b"}
        assert await engine.count(RUNS) == 1

    async def test_get_returns_canonical_json(self, engine: RecordEngine) -> None:
        await engine.apply(
            WriteBatch([Put(RUNS, {"name": "x", "id": "r1", "b": {"z": 1, "a": 2}})])
        )
        assert await engine.get(RUNS, "r1") == b'{"b":{"a":2,"z":1},"id":"r1","name":"x"}'
        assert await engine.get(RUNS, "nope") is None

    async def test_put_absent_refuses_existing_key(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1"}, expect="absent")]))
        err = await _refused(engine, WriteBatch([Put(RUNS, {"id": "r1", "x": 1}, expect="absent")]))
        assert (err.code, err.message, err.details) == (
            "conflict",
            "runs 'r1' already exists",
            {"table": "runs", "key": "r1"},
        )
        assert orjson.loads(await engine.get(RUNS, "r1") or b"") == {"id": "r1"}

    async def test_put_present_refuses_missing_key(self, engine: RecordEngine) -> None:
        err = await _refused(engine, WriteBatch([Put(NODES, _node("p", "n", "x"), "present")]))
        assert (err.code, err.message, err.details) == (
            "not_found",
            "nodes 'p:n' does not exist",
            {"table": "nodes", "key": "p:n"},
        )
        await engine.apply(WriteBatch([Put(NODES, _node("p", "n", "x"))]))
        await engine.apply(WriteBatch([Put(NODES, _node("p", "n", "y"), expect="present")]))
        assert orjson.loads(await engine.get(NODES, "p:n") or b"")["content"] == "y"

    async def test_put_absent_sees_earlier_put_of_same_batch(self, engine: RecordEngine) -> None:
        batch = WriteBatch([Put(RUNS, {"id": "r1"}), Put(RUNS, {"id": "r1"}, expect="absent")])
        assert (await _refused(engine, batch)).code == "conflict"
        assert await engine.get(RUNS, "r1") is None

    async def test_composite_key_is_the_joined_string(self, engine: RecordEngine) -> None:
        # Ids may hold ":", so ("a:b", "c") and ("a", "b:c") are the same key.
        await engine.apply(WriteBatch([Put(NODES, _node("a:b", "c", "x"))]))
        await engine.apply(WriteBatch([Put(NODES, _node("a", "b:c", "y"))]))
        assert orjson.loads(await engine.get(NODES, "a:b:c") or b"")["content"] == "y"
        assert await engine.count(NODES) == 1
        assert _ids(await engine.find(NODES, {"profile_id": "a"})) == ["b:c"]

    # ------------------------------------------------------------------ append

    async def test_append_assigns_increasing_seq(self, engine: RecordEngine) -> None:
        result = await engine.apply(WriteBatch([Append(EVENTS, _event(i)) for i in range(3)]))
        assert result.seqs == [1, 2, 3]
        result = await engine.apply(WriteBatch([Append(EVENTS, _event(3))]))
        assert result.seqs == [4]
        assert await engine.last_seq(EVENTS) == 4
        assert orjson.loads(await engine.get(EVENTS, "evt_0003") or b"")["seq"] == 4

    async def test_append_idempotent_same_content_is_a_noop(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Append(EVENTS, _event(0)), Append(EVENTS, _event(1))]))
        result = await engine.apply(WriteBatch([Append(EVENTS, _event(0), idempotent=True)]))
        assert result.seqs == [1]
        assert await engine.last_seq(EVENTS) == 2
        assert await engine.count(EVENTS) == 2

    async def test_append_idempotent_within_one_batch(self, engine: RecordEngine) -> None:
        batch = WriteBatch(
            [Append(EVENTS, _event(0), idempotent=True), Append(EVENTS, _event(0), idempotent=True)]
        )
        assert (await engine.apply(batch)).seqs == [1, 1]

    async def test_append_different_content_conflicts(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Append(EVENTS, _event(0))]))
        for idempotent in (True, False):
            changed = _event(0, kind="other")
            batch = WriteBatch([Append(EVENTS, changed, idempotent=idempotent)])
            err = await _refused(engine, batch)
            assert (err.code, err.message, err.details) == (
                "conflict",
                "events 'evt_0000' already exists with different content",
                {"table": "events", "key": "evt_0000"},
            )
        same = WriteBatch([Append(EVENTS, _event(0))])
        assert (await _refused(engine, same)).code == "conflict"
        assert await engine.last_seq(EVENTS) == 1

    async def test_append_to_seq_keyed_table(self, engine: RecordEngine) -> None:
        batch = WriteBatch([Append(CHANGES, {"artifact_id": f"a{i}"}) for i in range(3)])
        assert (await engine.apply(batch)).seqs == [1, 2, 3]
        assert orjson.loads(await engine.get(CHANGES, "2") or b"") == {
            "artifact_id": "a1",
            "seq": 2,
        }
        assert await engine.get(CHANGES, "02") is None
        assert await engine.get(CHANGES, "x") is None
        assert set(await engine.get_many(CHANGES, ["1", "3", "9", "z"])) == {"1", "3"}

    # ------------------------------------------------------------------ delete

    async def test_delete_removes_and_ignores_absent(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1", "labels": {"a": "1"}})]))
        await engine.apply(WriteBatch([Delete(RUNS, "r1"), Delete(RUNS, "never")]))
        assert await engine.get(RUNS, "r1") is None
        assert await engine.find(RUNS, tags={"a": "1"}) == []

    async def test_delete_then_check_in_one_batch(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1"})]))
        batch = WriteBatch([Delete(RUNS, "r1"), Check(RUNS, "r1", "not_found", "gone")])
        err = await _refused(engine, batch)
        assert (err.code, err.message) == ("not_found", "gone")
        assert await engine.get(RUNS, "r1") is not None

    # ------------------------------------------------------------------ checks

    async def test_check_exists_and_equals(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1", "revision": 2, "x": None})]))
        await engine.apply(WriteBatch([Check(RUNS, "r1", "conflict", "m", equals={"revision": 2})]))
        await engine.apply(WriteBatch([Check(RUNS, "r1", "conflict", "m", equals={"x": None})]))
        err = await _refused(
            engine,
            WriteBatch(
                [Check(RUNS, "r1", "conflict", "moved", equals={"revision": 1}, details={"r": 1})]
            ),
        )
        assert (err.code, err.message, err.details) == ("conflict", "moved", {"r": 1})
        err = await _refused(engine, WriteBatch([Check(RUNS, "r2", "integrity", "no run")]))
        assert (err.code, err.message) == ("integrity", "no run")

    async def test_check_absent(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Check(RUNS, "r1", "conflict", "taken", exists=False)]))
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1"})]))
        err = await _refused(engine, WriteBatch([Check(RUNS, "r1", "conflict", "taken", False)]))
        assert (err.code, err.message) == ("conflict", "taken")

    async def test_check_sees_earlier_ops_of_the_batch(self, engine: RecordEngine) -> None:
        batch = WriteBatch(
            [
                Put(RUNS, {"id": "r1", "revision": 1}),
                Check(RUNS, "r1", "not_found", "m", equals={"revision": 1}),
                Put(RUNS, {"id": "r1", "revision": 2}),
                Check(RUNS, "r1", "conflict", "m", equals={"revision": 2}),
            ]
        )
        await engine.apply(batch)
        assert orjson.loads(await engine.get(RUNS, "r1") or b"")["revision"] == 2

    async def test_check_none(self, engine: RecordEngine) -> None:
        where = {"collection_id": "c1", "name": "doc", "deleted_at": None}
        check = CheckNone(ARTIFACTS, where, "conflict", "name taken", {"name": "doc"})
        await engine.apply(WriteBatch([check]))
        await engine.apply(WriteBatch([Put(ARTIFACTS, _art("a1", "doc", deleted="2026"))]))
        await engine.apply(WriteBatch([check]))  # a deleted artifact does not hold the name
        batch = WriteBatch([Put(ARTIFACTS, _art("a2", "doc")), check])
        err = await _refused(engine, batch)  # sees the put earlier in the same batch
        assert (err.code, err.message, err.details) == ("conflict", "name taken", {"name": "doc"})
        assert await engine.get(ARTIFACTS, "a2") is None
        await engine.apply(WriteBatch([Put(ARTIFACTS, _art("a2", "doc"))]))
        assert (await _refused(engine, WriteBatch([check]))).code == "conflict"
        await engine.apply(WriteBatch([Delete(ARTIFACTS, "a2"), check]))

    async def test_check_none_with_range(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Append(EVENTS, _event(i)) for i in range(3)]))
        await engine.apply(WriteBatch([CheckNone(EVENTS, {"seq": Cmp(">", 3)}, "conflict", "m")]))
        batch = WriteBatch([CheckNone(EVENTS, {"seq": Cmp(">", 2)}, "conflict", "later")])
        assert (await _refused(engine, batch)).message == "later"

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

    # ------------------------------------------------------------------ refused batches

    async def test_refused_batch_leaves_nothing(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "keep"})], [_draft("first")]))
        blob_small, blob_large = b"s" * 10, b"L" * 5000
        batch = WriteBatch(
            [
                Put(RUNS, {"id": "r1", "labels": {"k": "v"}}),
                Append(EVENTS, _event(0)),
                Append(CHANGES, {"artifact_id": "a"}),
                Put(NODES, _node("p", "n", "findme")),
                Delete(RUNS, "keep"),
                BlobPut(sha256_digest(blob_small), blob_small),
                BlobPut(sha256_digest(blob_large), blob_large),
                Check(RUNS, "missing", "integrity", "no such run"),
            ],
            [_draft("second")],
        )
        assert (await _refused(engine, batch)).message == "no such run"
        assert await engine.get(RUNS, "r1") is None
        assert await engine.get(RUNS, "keep") is not None
        assert await engine.find(RUNS, tags={"k": "v"}) == []
        assert await engine.find(NODES, text="findme") == []
        assert (await engine.last_seq(EVENTS), await engine.last_seq(CHANGES)) == (0, 0)
        assert await engine.last_seq(AUDIT) == 1
        for data in (blob_small, blob_large):
            assert await engine.blob_size(sha256_digest(data)) is None
        result = await engine.apply(WriteBatch([Append(EVENTS, _event(1))], [_draft("third")]))
        assert (result.seqs, result.audit_seqs) == ([1], [2])
        await _assert_chain(engine, 2)

    # ------------------------------------------------------------------ find

    async def test_find_where_equality_null_and_in(self, engine: RecordEngine) -> None:
        await _artifacts(engine)
        assert _ids(await engine.find(ARTIFACTS, {"collection_id": "c1"})) == ["a1", "a2", "a3"]
        assert _ids(await engine.find(ARTIFACTS, {"deleted_at": None})) == ["a1", "a2", "a4"]
        assert _ids(await engine.find(ARTIFACTS, {"type": In(("qa", "export"))})) == ["a2", "a4"]
        assert _ids(await engine.find(ARTIFACTS, {"type": In(())})) == []
        assert _ids(await engine.find(ARTIFACTS, {"run_id": In(("r1", None))})) == [
            "a1",
            "a3",
            "a4",
        ]
        assert _ids(await engine.find(ARTIFACTS, {"id": In(("a4", "a1", "zz"))})) == ["a1", "a4"]
        many = (*(f"x{i}" for i in range(2000)), "a3")
        assert _ids(await engine.find(ARTIFACTS, {"id": In(many)})) == ["a3"]
        both = {"collection_id": "c1", "deleted_at": None, "type": "document"}
        assert _ids(await engine.find(ARTIFACTS, both)) == ["a1"]
        assert await engine.count(ARTIFACTS, {"deleted_at": None}) == 3
        assert await engine.count(ARTIFACTS) == 4

    async def test_find_comparisons_and_ranges(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Append(EVENTS, _event(i)) for i in range(10)]))
        seqs = await engine.find(EVENTS, {"seq": Cmp(">", 7)}, order=("seq",))
        assert _ids(seqs, "seq") == [8, 9, 10]
        ranged = {"seq": (Cmp(">=", 3), Cmp("<", 6))}
        assert _ids(await engine.find(EVENTS, ranged, order=("seq",)), "seq") == [3, 4, 5]
        assert await engine.count(EVENTS, {"seq": (Cmp(">", 2), Cmp("<=", 4))}) == 2
        await engine.apply(
            WriteBatch([Put(RUNS, _run(f"r{i}", f"2026-01-0{i}")) for i in range(1, 6)])
        )
        window = {"created_at": (Cmp(">", "2026-01-02"), Cmp("<", "2026-01-05"))}
        assert _ids(await engine.find(RUNS, window, order=("created_at",))) == ["r3", "r4"]

    async def test_find_dotted_column(self, engine: RecordEngine) -> None:
        kinds = ["custom", "node.put", "custom", "edge.put"]
        await engine.apply(WriteBatch([Append(EVENTS, _event(i, k)) for i, k in enumerate(kinds)]))
        found = await engine.find(EVENTS, {"payload.kind": In(("node.put", "edge.put"))})
        assert _ids(found) == ["evt_0001", "evt_0003"]
        assert await engine.count(EVENTS, {"payload.kind": "custom"}) == 2

    async def test_find_on_fields_without_a_column(self, engine: RecordEngine) -> None:
        rows = [
            {"id": "r1", "revision": 1, "params": {"lr": 0.1, "tag": "a"}},
            {"id": "r2", "revision": 2, "params": {"lr": 0.2, "tag": "b"}},
            {"id": "r3", "revision": 2, "params": None},
        ]
        await engine.apply(WriteBatch([Put(RUNS, r) for r in rows]))
        assert _ids(await engine.find(RUNS, {"revision": 2})) == ["r2", "r3"]
        assert _ids(await engine.find(RUNS, {"params.tag": "a"})) == ["r1"]
        assert _ids(await engine.find(RUNS, {"params.lr": Cmp(">", 0.15)})) == ["r2"]
        assert _ids(await engine.find(RUNS, {"params.tag": None})) == ["r3"]
        assert await engine.count(RUNS, {"revision": In((1, 3))}) == 1

    async def test_find_order_after_desc_limit(self, engine: RecordEngine) -> None:
        # Equal order values tie-break on the key, both ways.
        dates = {"r1": "2026-01-02", "r2": "2026-01-01", "r3": "2026-01-02", "r4": "2026-01-03"}
        await engine.apply(WriteBatch([Put(RUNS, _run(k, v)) for k, v in dates.items()]))
        ordered = _ids(await engine.find(RUNS, order=("created_at",)))
        assert ordered == ["r2", "r1", "r3", "r4"]
        assert _ids(await engine.find(RUNS, order=("created_at",), desc=True)) == ordered[::-1]
        after = ("2026-01-02", "r1")
        assert _ids(await engine.find(RUNS, order=("created_at",), after=after)) == ["r3", "r4"]
        back = await engine.find(RUNS, order=("created_at",), after=after, desc=True)
        assert _ids(back) == ["r2"]
        assert _ids(await engine.find(RUNS, order=("created_at",), limit=2)) == ["r2", "r1"]
        assert _ids(await engine.find(RUNS, after=("r2",), limit=1)) == ["r3"]
        assert _ids(await engine.find(RUNS, desc=True, limit=1)) == ["r4"]

    async def test_find_pages_over_seq_keyed_table(self, engine: RecordEngine) -> None:
        for i in range(12):
            await engine.apply(WriteBatch([], [_draft("a" if i % 2 else "b")]))
        page = await engine.find(AUDIT, {"action": "a"}, order=("seq",), limit=3)
        assert _ids(page, "seq") == [2, 4, 6]
        rest = await engine.find(AUDIT, {"action": "a"}, order=("seq",), after=(6, "6"))
        assert _ids(rest, "seq") == [8, 10, 12]
        last = await engine.find(AUDIT, order=("seq",), desc=True, limit=1)
        assert _ids(last, "seq") == [12]
        assert _ids(await engine.find(CHANGES), "seq") == []

    async def test_find_composite_key_order(self, engine: RecordEngine) -> None:
        rows = [{"run_id": "r1", "number": n} for n in (1, 2, 10, 9)]
        rows.append({"run_id": "r2", "number": 5})
        await engine.apply(WriteBatch([Put(SNAPSHOTS, r) for r in rows]))
        found = await engine.find(SNAPSHOTS, {"run_id": "r1"}, order=("number",), desc=True)
        assert _ids(found, "number") == [10, 9, 2, 1]
        after = await engine.find(SNAPSHOTS, {"run_id": "r1"}, order=("number",), after=(2, "r1:2"))
        assert _ids(after, "number") == [9, 10]
        unordered = await engine.find(SNAPSHOTS, {"run_id": "r1"})  # key order: "r1:10" < "r1:2"
        assert _ids(unordered, "number") == [1, 10, 2, 9]

    async def test_find_tags(self, engine: RecordEngine) -> None:
        runs: list[dict[str, Any]] = [
            {"id": "r1", "labels": {"team": "a", "tier": 1}},
            {"id": "r2", "labels": {"team": "a", "tier": "1"}},
            {"id": "r3", "labels": {"team": "b", "deep": {"x": [1, 2]}}},
            {"id": "r4", "labels": None},
            {"id": "r5"},
        ]
        await engine.apply(WriteBatch([Put(RUNS, r) for r in runs]))
        assert _ids(await engine.find(RUNS, tags={"team": "a"})) == ["r1", "r2"]
        assert _ids(await engine.find(RUNS, tags={"team": "a", "tier": 1})) == ["r1"]
        assert _ids(await engine.find(RUNS, tags={"tier": "1"})) == ["r2"]
        assert _ids(await engine.find(RUNS, tags={"deep": {"x": [1, 2]}})) == ["r3"]
        assert _ids(await engine.find(RUNS, tags={"team": None})) == []
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1", "labels": {"team": "b"}})]))
        assert _ids(await engine.find(RUNS, tags={"team": "a"})) == ["r2"]
        assert _ids(await engine.find(RUNS, tags={"team": "b"}, limit=1)) == ["r1"]

    async def test_find_text(self, engine: RecordEngine) -> None:
        texts = {
            "t1": "The quick brown fox",
            "t2": "quick thinking, QUICK results",
            "t3": "snake_case words and café",
            "t4": 'weird "quotes" OR NEAR(x) *stars*',
        }
        await engine.apply(
            WriteBatch([Put(ARTIFACT_TEXT, {"id": k, "text": v}) for k, v in texts.items()])
        )
        assert _ids(await engine.find(ARTIFACT_TEXT, text="quick")) == ["t1", "t2"]
        assert _ids(await engine.find(ARTIFACT_TEXT, text="QUICK fox")) == ["t1"]
        assert _ids(await engine.find(ARTIFACT_TEXT, text="qui")) == []
        assert _ids(await engine.find(ARTIFACT_TEXT, text="snake_case")) == ["t3"]
        assert _ids(await engine.find(ARTIFACT_TEXT, text="snake")) == []
        assert _ids(await engine.find(ARTIFACT_TEXT, text="café")) == ["t3"]
        assert _ids(await engine.find(ARTIFACT_TEXT, text="CAFE")) == ["t3"]  # diacritics fold
        assert _ids(await engine.find(ARTIFACT_TEXT, text='"quotes" OR')) == ["t4"]
        assert _ids(await engine.find(ARTIFACT_TEXT, text="NEAR(x) *stars*")) == ["t4"]
        assert _ids(await engine.find(ARTIFACT_TEXT, text="fox OR snake")) == []
        assert await engine.find(ARTIFACT_TEXT, text="  ...  ") == []
        await engine.apply(WriteBatch([Put(ARTIFACT_TEXT, {"id": "t1", "text": "slow"})]))
        await engine.apply(WriteBatch([Delete(ARTIFACT_TEXT, "t2")]))
        assert _ids(await engine.find(ARTIFACT_TEXT, text="quick")) == []
        assert _ids(await engine.find(ARTIFACT_TEXT, text="slow")) == ["t1"]

    async def test_find_text_with_where_and_paging(self, engine: RecordEngine) -> None:
        nodes = [_node("p1", f"n{i}", f"alpha {'beta' if i % 2 else 'gamma'}") for i in range(6)]
        nodes.append(_node("p2", "n9", "alpha beta"))
        await engine.apply(WriteBatch([Put(NODES, n) for n in nodes]))
        where = {"profile_id": "p1"}
        found = await engine.find(NODES, where, order=("id",), text="beta", limit=2)
        assert _ids(found) == ["n1", "n3"]
        more = await engine.find(NODES, where, order=("id",), text="beta", after=("n3", "p1:n3"))
        assert _ids(more) == ["n5"]

    # ------------------------------------------------------------------ audit

    async def test_audit_drafts_are_chained_in_commit_order(self, engine: RecordEngine) -> None:
        first = await engine.apply(WriteBatch([], [_draft("a"), _draft("b")]))
        second = await engine.apply(WriteBatch([Put(RUNS, {"id": "r"})], [_draft("c")]))
        assert (first.audit_seqs, second.audit_seqs) == ([1, 2], [3])
        assert await engine.last_seq(AUDIT) == 3
        records = await _assert_chain(engine, 3)
        assert [r["action"] for r in records] == ["a", "b", "c"]
        assert records[0]["prev_hash"] == GENESIS_HASH
        assert _ids(await engine.find(AUDIT, {"action": "b"}), "seq") == [2]

    async def test_restore_keeps_seqs_and_moves_counters_and_head(
        self, engine: RecordEngine
    ) -> None:
        source = MemoryEngine()
        await source.apply(WriteBatch([Append(EVENTS, _event(i)) for i in range(3)]))
        for action in ("a", "b", "c"):
            await source.apply(WriteBatch([], [_draft(action)]))
        events = _rows(await source.find(EVENTS, order=("seq",)))
        audit = _rows(await source.find(AUDIT, order=("seq",)))
        events[1]["seq"] = 7  # a gap survives a restore
        ops: list[Op] = [Restore(EVENTS, e) for e in events]
        ops += [Restore(AUDIT, a) for a in audit]
        assert (await engine.apply(WriteBatch(ops))).seqs == [None] * 6
        assert _ids(await engine.find(EVENTS, order=("seq",)), "seq") == [1, 3, 7]
        assert await engine.last_seq(EVENTS) == 7
        assert (await engine.apply(WriteBatch([Append(EVENTS, _event(9))]))).seqs == [8]
        result = await engine.apply(WriteBatch([], [_draft("after")]))
        assert result.audit_seqs == [4]
        await _assert_chain(engine, 4)

    # ------------------------------------------------------------------ concurrency

    async def test_concurrent_apply_from_50_tasks(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r0", "revision": 0})]))

        async def one(i: int) -> Any:
            ops: list[Any] = [Append(EVENTS, _event(i)), Put(RUNS, {"id": f"r{i + 1}"})]
            if i % 5 == 4:  # every fifth batch is refused; its neighbours must commit
                ops.append(Check(RUNS, "r0", "conflict", f"refused {i}", equals={"revision": 9}))
            return await engine.apply(WriteBatch(ops, [_draft(f"task{i}")]))

        results = await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, StorageError)]
        applied = [r for r in results if not isinstance(r, BaseException)]
        assert len(refused) == 10 and {e.code for e in refused} == {"conflict"}
        assert len(applied) == 40
        assert sorted(r.seqs[0] for r in applied) == list(range(1, 41))
        assert sorted(r.audit_seqs[0] for r in applied) == list(range(1, 41))
        assert await engine.count(EVENTS) == 40 and await engine.count(RUNS) == 41
        for i, r in enumerate(results):
            if i % 5 == 4:
                assert await engine.get(EVENTS, f"evt_{i:04d}") is None
            else:
                stored = orjson.loads(await engine.get(EVENTS, f"evt_{i:04d}") or b"")
                assert not isinstance(r, BaseException) and stored["seq"] == r.seqs[0]
        await _assert_chain(engine, 40)

    async def test_closed_engine_is_unavailable(self, engine: RecordEngine) -> None:
        await engine.close()
        for call in (
            engine.get(RUNS, "r"),
            engine.find(RUNS),
            engine.apply(WriteBatch([Put(RUNS, {"id": "r"})])),
            engine.last_seq(EVENTS),
            engine.blob_size("sha256:" + "0" * 64),
        ):
            with pytest.raises(StorageError) as info:
                await call
            assert info.value.code == "unavailable"


# --------------------------------------------------------------------------- differential


async def test_sqlite_answers_like_memory_on_a_random_history(tmp_path: pathlib.Path) -> None:
    """Same random batches into both engines; every query must answer the same."""
    rng = random.Random(20260101)
    memory = MemoryEngine()
    sqlite = await SQLiteEngine.open(tmp_path / "diff.db")
    names, statuses, teams = ["etl", "train", "eval"], ["pending", "running", "failed"], "abc"
    try:
        for step in range(150):
            ops: list[Any] = []
            for _ in range(rng.randint(1, 4)):
                rid = f"r{rng.randint(0, 30)}"
                choice = rng.random()
                if choice < 0.6:
                    row = {
                        "id": rid,
                        "name": rng.choice(names),
                        "status": rng.choice([*statuses, None]),
                        "created_at": f"2026-01-{rng.randint(1, 28):02d}",
                        "labels": {"team": rng.choice(teams), "n": rng.randint(0, 2)},
                    }
                    ops.append(Put(RUNS, row, expect=rng.choice(["any", "any", "absent"])))
                elif choice < 0.75:
                    ops.append(Delete(RUNS, rid))
                elif choice < 0.9:
                    ops.append(Append(EVENTS, _event(step * 10 + len(ops), rng.choice(names))))
                else:
                    ops.append(
                        CheckNone(RUNS, {"name": "etl", "status": "failed"}, "conflict", "m")
                    )
            batch = WriteBatch(ops, [_draft(f"step{step}")])
            outcomes = []
            for eng in (memory, sqlite):
                try:
                    outcomes.append(await eng.apply(batch))
                except StorageError as exc:
                    outcomes.append(exc.to_dict())  # type: ignore[arg-type]
            assert outcomes[0] == outcomes[1], step
        queries: list[tuple[Table, dict[str, Any]]] = [
            (RUNS, {"order": ("created_at",)}),
            (RUNS, {"order": ("created_at",), "desc": True, "limit": 7}),
            (RUNS, {"where": {"status": None}, "order": ("created_at",)}),
            (RUNS, {"where": {"name": "etl", "status": In(("failed", None))}}),
            (RUNS, {"where": {"created_at": (Cmp(">=", "2026-01-05"), Cmp("<", "2026-01-20"))}}),
            (RUNS, {"tags": {"team": "a"}, "order": ("created_at",)}),
            (RUNS, {"tags": {"team": "b", "n": 1}}),
            (RUNS, {"order": ("name", "created_at"), "after": ("etl", "2026-01-10", "r5")}),
            (EVENTS, {"order": ("seq",), "where": {"payload.kind": "train"}}),
            (EVENTS, {"order": ("seq",), "desc": True, "after": (20, "x"), "limit": 5}),
            (AUDIT, {"order": ("seq",), "where": {"seq": Cmp(">", 100)}}),
        ]
        for table, kwargs in queries:
            where = kwargs.pop("where", None)
            expected = await memory.find(table, where, **kwargs)
            assert await sqlite.find(table, where, **kwargs) == expected, (table.name, kwargs)
            assert await sqlite.count(table, where) == await memory.count(table, where)
        for table in (RUNS, EVENTS, AUDIT):
            assert await sqlite.last_seq(table) == await memory.last_seq(table)
    finally:
        await memory.close()
        await sqlite.close()


# --------------------------------------------------------------------------- helpers


def _node(profile: str, node: str, content: str) -> dict[str, Any]:
    return {"profile_id": profile, "id": node, "kind": "fact", "content": content}


def _run(run_id: str, created: str) -> dict[str, Any]:
    return {"id": run_id, "name": "n", "status": "pending", "created_at": created}


def _art(art_id: str, name: str, *, deleted: str | None = None, **more: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": art_id, "collection_id": "c1", "name": name, "type": "document"}
    row.update({"deleted_at": deleted, "run_id": None, **more})
    return row


async def _artifacts(engine: RecordEngine) -> None:
    rows = [
        _art("a1", "one", run_id="r1"),
        _art("a2", "two", type="qa", run_id="r2"),
        _art("a3", "three", deleted="2026-01-01", run_id="r1"),
        {**_art("a4", "four", type="export"), "collection_id": "c2"},
    ]
    await engine.apply(WriteBatch([Put(ARTIFACTS, r) for r in rows]))


async def _assert_chain(engine: RecordEngine, count: int) -> list[dict[str, Any]]:
    records = _rows(await engine.find(AUDIT, order=("seq",)))
    assert [r["seq"] for r in records] == list(range(1, count + 1))
    prev = GENESIS_HASH
    for record in records:
        assert record["prev_hash"] == prev
        assert audit_hash(record) == record["hash"]
        prev = record["hash"]
    return records
