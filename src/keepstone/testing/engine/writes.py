"""The write rules of the engine SPI: ops in order, preconditions, seqs,
the audit chain, refused batches, group commit, and the reference's answers."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson

from keepstone.backends.memory.engine import MemoryEngine
from keepstone.engine.spi import (
    Append,
    BatchResult,
    BlobPut,
    Check,
    CheckNone,
    Cmp,
    Delete,
    Op,
    Put,
    RecordEngine,
    Restore,
    SetCounter,
    WriteBatch,
)
from keepstone.engine.tables import ARTIFACTS, AUDIT, CHANGES, EVENTS, LOG_LINES, NODES, RUNS
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from keepstone.schemas.audit import GENESIS_HASH
from keepstone.testing.engine.base import (
    EngineConformanceBase,
    artifact_row,
    assert_audit_chain,
    audit_draft,
    event_row,
    ids_of,
    line_row,
    node_row,
    refusal,
    rows_of,
)
from keepstone.testing.engine.history import assert_same_answers, random_history


class EngineWriteConformance(EngineConformanceBase):
    """How ``apply`` turns batches into committed state."""

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
        err = await refusal(engine, WriteBatch([Put(RUNS, {"id": "r1", "x": 1}, expect="absent")]))
        assert (err.code, err.message, err.details) == (
            "conflict",
            "runs 'r1' already exists",
            {"table": "runs", "key": "r1"},
        )
        assert orjson.loads(await engine.get(RUNS, "r1") or b"") == {"id": "r1"}

    async def test_put_present_refuses_missing_key(self, engine: RecordEngine) -> None:
        err = await refusal(engine, WriteBatch([Put(NODES, node_row("p", "n", "x"), "present")]))
        assert (err.code, err.message, err.details) == (
            "not_found",
            "nodes 'p:n' does not exist",
            {"table": "nodes", "key": "p:n"},
        )
        await engine.apply(WriteBatch([Put(NODES, node_row("p", "n", "x"))]))
        await engine.apply(WriteBatch([Put(NODES, node_row("p", "n", "y"), expect="present")]))
        assert orjson.loads(await engine.get(NODES, "p:n") or b"")["content"] == "y"

    async def test_put_absent_sees_earlier_put_of_same_batch(self, engine: RecordEngine) -> None:
        batch = WriteBatch([Put(RUNS, {"id": "r1"}), Put(RUNS, {"id": "r1"}, expect="absent")])
        assert (await refusal(engine, batch)).code == "conflict"
        assert await engine.get(RUNS, "r1") is None

    async def test_composite_key_is_the_joined_string(self, engine: RecordEngine) -> None:
        # Ids may hold ":", so ("a:b", "c") and ("a", "b:c") are the same key.
        await engine.apply(WriteBatch([Put(NODES, node_row("a:b", "c", "x"))]))
        await engine.apply(WriteBatch([Put(NODES, node_row("a", "b:c", "y"))]))
        assert orjson.loads(await engine.get(NODES, "a:b:c") or b"")["content"] == "y"
        assert await engine.count(NODES) == 1
        assert ids_of(await engine.find(NODES, {"profile_id": "a"})) == ["b:c"]

    async def test_a_row_that_is_not_json_or_too_long_is_invalid(
        self, engine: RecordEngine
    ) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "keep"})], [audit_draft("first")]))
        not_json = WriteBatch([Put(RUNS, {"id": "r1"}), Put(RUNS, {"id": "r2", "v": {1, 2}})])
        err = await refusal(engine, not_json)
        assert err.code == "invalid" and "runs record is not valid JSON" in err.message
        long = {"id": "r3", "text": "x" * 200}
        size = len(orjson.dumps(long, option=orjson.OPT_SORT_KEYS))
        too_long = WriteBatch(
            [Delete(RUNS, "keep"), Put(RUNS, long)], [audit_draft("second")], max_record_bytes=100
        )
        err = await refusal(engine, too_long)
        assert (err.code, err.details) == ("invalid", {"size": size, "limit": 100})
        assert ids_of(await engine.find(RUNS)) == ["keep"]
        assert await engine.last_seq(AUDIT) == 1
        fits = WriteBatch([Put(RUNS, long)], max_record_bytes=size)
        await engine.apply(fits)
        assert ids_of(await engine.find(RUNS)) == ["keep", "r3"]

    async def test_rows_are_stored_as_they_were_when_applied(self, engine: RecordEngine) -> None:
        """A caller may reuse the dicts it put in a batch: changing them after
        ``apply`` returns changes nothing stored, read or matched."""
        run: dict[str, Any] = {"id": "r1", "name": "a", "labels": {"team": "x"}}
        event = event_row(0)
        await engine.apply(WriteBatch([Put(RUNS, run), Append(EVENTS, event)]))
        run["name"], run["labels"]["team"], event["payload"]["kind"] = "b", "y", "changed"
        assert orjson.loads(await engine.get(RUNS, "r1") or b"")["name"] == "a"
        assert ids_of(await engine.find(RUNS, {"name": "a"})) == ["r1"]
        assert await engine.find(RUNS, {"name": "b"}) == []
        assert ids_of(await engine.find(RUNS, tags={"team": "x"})) == ["r1"]
        assert await engine.count(EVENTS, {"payload.kind": "custom"}) == 1
        again = WriteBatch([Append(EVENTS, event_row(0), idempotent=True)])
        assert (await engine.apply(again)).seqs == [1]

    # ------------------------------------------------------------------ append

    async def test_append_assigns_increasing_seq(self, engine: RecordEngine) -> None:
        result = await engine.apply(WriteBatch([Append(EVENTS, event_row(i)) for i in range(3)]))
        assert result.seqs == [1, 2, 3]
        result = await engine.apply(WriteBatch([Append(EVENTS, event_row(3))]))
        assert result.seqs == [4]
        assert await engine.last_seq(EVENTS) == 4
        assert orjson.loads(await engine.get(EVENTS, "evt_0003") or b"")["seq"] == 4

    async def test_append_idempotent_same_content_is_a_noop(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Append(EVENTS, event_row(0)), Append(EVENTS, event_row(1))]))
        result = await engine.apply(WriteBatch([Append(EVENTS, event_row(0), idempotent=True)]))
        assert result.seqs == [1]
        assert await engine.last_seq(EVENTS) == 2
        assert await engine.count(EVENTS) == 2

    async def test_append_idempotent_within_one_batch(self, engine: RecordEngine) -> None:
        again = Append(EVENTS, event_row(0), idempotent=True)
        batch = WriteBatch([Append(EVENTS, event_row(0), idempotent=True), again])
        assert (await engine.apply(batch)).seqs == [1, 1]

    async def test_append_different_content_conflicts(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Append(EVENTS, event_row(0))]))
        for idempotent in (True, False):
            changed = event_row(0, kind="other")
            batch = WriteBatch([Append(EVENTS, changed, idempotent=idempotent)])
            err = await refusal(engine, batch)
            assert (err.code, err.message, err.details) == (
                "conflict",
                "events 'evt_0000' already exists with different content",
                {"table": "events", "key": "evt_0000"},
            )
        same = WriteBatch([Append(EVENTS, event_row(0))])
        assert (await refusal(engine, same)).code == "conflict"
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

    async def test_only_changes_audits_an_idempotent_repeat_once(
        self, engine: RecordEngine
    ) -> None:
        def batch() -> WriteBatch:
            ops: list[Op] = [Append(EVENTS, event_row(0), idempotent=True)]
            return WriteBatch(ops, [audit_draft("append")], audit_only_changes=True)

        first = await engine.apply(batch())
        again = await engine.apply(batch())
        assert (first.seqs, first.audit_seqs) == ([1], [1])
        assert (again.seqs, again.audit_seqs) == ([1], [])
        assert await engine.last_seq(AUDIT) == 1
        # Without the flag, the repeat is audited.
        plain = WriteBatch([Append(EVENTS, event_row(0), idempotent=True)], [audit_draft("x")])
        assert (await engine.apply(plain)).audit_seqs == [2]

    # ------------------------------------------------------------------ delete

    async def test_delete_removes_and_ignores_absent(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1", "labels": {"a": "1"}})]))
        await engine.apply(WriteBatch([Delete(RUNS, "r1"), Delete(RUNS, "never")]))
        assert await engine.get(RUNS, "r1") is None
        assert await engine.find(RUNS, tags={"a": "1"}) == []

    async def test_delete_then_check_in_one_batch(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1"})]))
        batch = WriteBatch([Delete(RUNS, "r1"), Check(RUNS, "r1", "not_found", "gone")])
        err = await refusal(engine, batch)
        assert (err.code, err.message) == ("not_found", "gone")
        assert await engine.get(RUNS, "r1") is not None

    async def test_deleting_the_last_rows_keeps_the_counter(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Append(LOG_LINES, line_row(i)) for i in range(4)]))
        await engine.apply(WriteBatch([Delete(LOG_LINES, "3"), Delete(LOG_LINES, "4")]))
        assert await engine.last_seq(LOG_LINES) == 4
        assert (await engine.apply(WriteBatch([Append(LOG_LINES, line_row(9))]))).seqs == [5]
        assert ids_of(await engine.find(LOG_LINES, order=("seq",)), "seq") == [1, 2, 5]

    # ------------------------------------------------------------------ checks

    async def test_check_exists_and_equals(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1", "revision": 2, "x": None})]))
        await engine.apply(WriteBatch([Check(RUNS, "r1", "conflict", "m", equals={"revision": 2})]))
        await engine.apply(WriteBatch([Check(RUNS, "r1", "conflict", "m", equals={"x": None})]))
        err = await refusal(
            engine,
            WriteBatch(
                [Check(RUNS, "r1", "conflict", "moved", equals={"revision": 1}, details={"r": 1})]
            ),
        )
        assert (err.code, err.message, err.details) == ("conflict", "moved", {"r": 1})
        err = await refusal(engine, WriteBatch([Check(RUNS, "r2", "integrity", "no run")]))
        assert (err.code, err.message) == ("integrity", "no run")

    async def test_check_absent(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Check(RUNS, "r1", "conflict", "taken", exists=False)]))
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r1"})]))
        err = await refusal(engine, WriteBatch([Check(RUNS, "r1", "conflict", "taken", False)]))
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
        await engine.apply(WriteBatch([Put(ARTIFACTS, artifact_row("a1", "doc", deleted="2026"))]))
        await engine.apply(WriteBatch([check]))  # a deleted artifact does not hold the name
        batch = WriteBatch([Put(ARTIFACTS, artifact_row("a2", "doc")), check])
        err = await refusal(engine, batch)  # sees the put earlier in the same batch
        assert (err.code, err.message, err.details) == ("conflict", "name taken", {"name": "doc"})
        assert await engine.get(ARTIFACTS, "a2") is None
        await engine.apply(WriteBatch([Put(ARTIFACTS, artifact_row("a2", "doc"))]))
        assert (await refusal(engine, WriteBatch([check]))).code == "conflict"
        await engine.apply(WriteBatch([Delete(ARTIFACTS, "a2"), check]))

    async def test_check_none_with_range(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Append(EVENTS, event_row(i)) for i in range(3)]))
        await engine.apply(WriteBatch([CheckNone(EVENTS, {"seq": Cmp(">", 3)}, "conflict", "m")]))
        batch = WriteBatch([CheckNone(EVENTS, {"seq": Cmp(">", 2)}, "conflict", "later")])
        assert (await refusal(engine, batch)).message == "later"

    # ------------------------------------------------------------------ refused batches

    async def test_refused_batch_leaves_nothing(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "keep"})], [audit_draft("first")]))
        blob_small, blob_large = b"s" * 10, b"L" * 5000
        batch = WriteBatch(
            [
                Put(RUNS, {"id": "r1", "labels": {"k": "v"}}),
                Append(EVENTS, event_row(0)),
                Append(CHANGES, {"artifact_id": "a"}),
                Put(NODES, node_row("p", "n", "findme")),
                Delete(RUNS, "keep"),
                BlobPut(sha256_digest(blob_small), blob_small),
                BlobPut(sha256_digest(blob_large), blob_large),
                Check(RUNS, "missing", "integrity", "no such run"),
            ],
            [audit_draft("second")],
        )
        assert (await refusal(engine, batch)).message == "no such run"
        assert await engine.get(RUNS, "r1") is None
        assert await engine.get(RUNS, "keep") is not None
        assert await engine.find(RUNS, tags={"k": "v"}) == []
        if "fts" in engine.capabilities:
            assert await engine.find(NODES, text="findme") == []
        assert await engine.get(NODES, "p:n") is None
        assert (await engine.last_seq(EVENTS), await engine.last_seq(CHANGES)) == (0, 0)
        assert await engine.last_seq(AUDIT) == 1
        for data in (blob_small, blob_large):
            assert await engine.blob_size(sha256_digest(data)) is None
        result = await engine.apply(WriteBatch([Append(EVENTS, event_row(1))], [audit_draft("c")]))
        assert (result.seqs, result.audit_seqs) == ([1], [2])
        await assert_audit_chain(engine, 2)

    # ------------------------------------------------------------------ audit

    async def test_audit_drafts_are_chained_in_commit_order(self, engine: RecordEngine) -> None:
        first = await engine.apply(WriteBatch([], [audit_draft("a"), audit_draft("b")]))
        second = await engine.apply(WriteBatch([Put(RUNS, {"id": "r"})], [audit_draft("c")]))
        assert (first.audit_seqs, second.audit_seqs) == ([1, 2], [3])
        assert await engine.last_seq(AUDIT) == 3
        records = await assert_audit_chain(engine, 3)
        assert [r["action"] for r in records] == ["a", "b", "c"]
        assert records[0]["prev_hash"] == GENESIS_HASH
        assert ids_of(await engine.find(AUDIT, {"action": "b"}), "seq") == [2]

    async def test_restore_keeps_seqs_and_moves_counters_and_head(
        self, engine: RecordEngine
    ) -> None:
        source = MemoryEngine()
        await source.apply(WriteBatch([Append(EVENTS, event_row(i)) for i in range(3)]))
        for action in ("a", "b", "c"):
            await source.apply(WriteBatch([], [audit_draft(action)]))
        events = rows_of(await source.find(EVENTS, order=("seq",)))
        audit = rows_of(await source.find(AUDIT, order=("seq",)))
        events[1]["seq"] = 7  # a gap survives a restore
        ops: list[Op] = [Restore(EVENTS, e) for e in events]
        ops += [Restore(AUDIT, a) for a in audit]
        assert (await engine.apply(WriteBatch(ops))).seqs == [None] * 6
        assert ids_of(await engine.find(EVENTS, order=("seq",)), "seq") == [1, 3, 7]
        assert await engine.last_seq(EVENTS) == 7
        assert (await engine.apply(WriteBatch([Append(EVENTS, event_row(9))]))).seqs == [8]
        result = await engine.apply(WriteBatch([], [audit_draft("after")]))
        assert result.audit_seqs == [4]
        await assert_audit_chain(engine, 4)

    async def test_set_counter_moves_counters_down_and_up(self, engine: RecordEngine) -> None:
        first: list[Op] = [Append(EVENTS, event_row(i)) for i in range(3)]
        await engine.apply(WriteBatch(first, [audit_draft("a")]))
        # up past the highest row (a purged tail): appends go on from there
        await engine.apply(WriteBatch([SetCounter(EVENTS, 9)]))
        assert await engine.last_seq(EVENTS) == 9
        assert (await engine.apply(WriteBatch([Append(EVENTS, event_row(3))]))).seqs == [10]
        # down to zero, the audit head back at genesis, once the rows are gone
        gone: list[Op] = [Delete(EVENTS, f"evt_{i:04d}") for i in range(4)]
        await engine.apply(WriteBatch([*gone, Delete(AUDIT, "1")]))
        await engine.apply(WriteBatch([SetCounter(EVENTS, 0), SetCounter(AUDIT, 0)]))
        assert (await engine.last_seq(EVENTS), await engine.last_seq(AUDIT)) == (0, 0)
        if "durable" in engine.capabilities:
            engine = await self.reopen(engine)
            assert (await engine.last_seq(EVENTS), await engine.last_seq(AUDIT)) == (0, 0)
        result = await engine.apply(WriteBatch([Append(EVENTS, event_row(5))], [audit_draft("b")]))
        assert (result.seqs, result.audit_seqs) == ([1], [1])
        await assert_audit_chain(engine, 1)
        for bad in (SetCounter(RUNS, 1), SetCounter(EVENTS, -1), SetCounter(EVENTS, 1, "x")):
            assert (await refusal(engine, WriteBatch([bad]))).code == "invalid"
        assert await engine.last_seq(EVENTS) == 1

    # ------------------------------------------------------------------ group commit

    async def test_concurrent_apply_from_50_tasks(self, engine: RecordEngine) -> None:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r0", "revision": 0})]))

        async def one(i: int) -> BatchResult:
            ops: list[Op] = [Append(EVENTS, event_row(i)), Put(RUNS, {"id": f"r{i + 1}"})]
            if i % 5 == 4:  # every fifth batch is refused; its neighbours must commit
                ops.append(Check(RUNS, "r0", "conflict", f"refused {i}", equals={"revision": 9}))
            return await engine.apply(WriteBatch(ops, [audit_draft(f"task{i}")]))

        results = await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, StorageError)]
        applied = [r for r in results if isinstance(r, BatchResult)]
        assert len(refused) == 10 and {e.code for e in refused} == {"conflict"}
        assert len(applied) == 40
        assert sorted(r.seqs[0] or 0 for r in applied) == list(range(1, 41))
        assert sorted(r.audit_seqs[0] for r in applied) == list(range(1, 41))
        assert await engine.count(EVENTS) == 40 and await engine.count(RUNS) == 41
        for i, r in enumerate(results):
            if i % 5 == 4:
                assert await engine.get(EVENTS, f"evt_{i:04d}") is None
            else:
                stored = orjson.loads(await engine.get(EVENTS, f"evt_{i:04d}") or b"")
                assert isinstance(r, BatchResult) and stored["seq"] == r.seqs[0]
        await assert_audit_chain(engine, 40)

    async def test_refused_batches_among_concurrent_ones_fail_alone(
        self, engine: RecordEngine
    ) -> None:
        """Each way a batch can be refused, inside groups of concurrent batches:
        only the refused batch is lost, and seqs stay in commit order."""
        await engine.apply(WriteBatch([Put(RUNS, {"id": "taken"}), Append(EVENTS, event_row(999))]))
        reasons: dict[int, str] = {
            3: "conflict",  # put expect=absent on an existing key
            5: "conflict",  # idempotent append of a stored id with other content
            6: "not_found",  # a check on a row an earlier op of the batch deleted
            7: "invalid",  # a row over the batch's max_record_bytes
        }

        async def one(i: int) -> BatchResult | str:
            ops: list[Op] = [Append(EVENTS, event_row(i)), Put(RUNS, {"id": f"r{i}"})]
            kind = i % 8
            if kind == 3:
                ops.append(Put(RUNS, {"id": "taken"}, expect="absent"))
            elif kind == 5:
                ops.append(Append(EVENTS, event_row(999, kind="other"), idempotent=True))
            elif kind == 6:
                ops += [Delete(RUNS, f"r{i}"), Check(RUNS, f"r{i}", "not_found", "gone")]
            elif kind == 7:
                ops.append(Put(RUNS, {"id": f"big{i}", "text": "x" * 600}))
            batch = WriteBatch(ops, [audit_draft(f"b{i}")], max_record_bytes=500)
            try:
                return await engine.apply(batch)
            except StorageError as exc:
                return exc.code

        results = await asyncio.gather(*(one(i) for i in range(64)))
        assert [r for r in results if isinstance(r, str)] == [
            reasons[i % 8] for i in range(64) if i % 8 in reasons
        ]
        kept = [i for i in range(64) if i % 8 not in reasons]
        events = rows_of(await engine.find(EVENTS, order=("seq",)))
        assert sorted(e["id"] for e in events) == sorted(
            ["evt_0999", *(f"evt_{i:04d}" for i in kept)]
        )
        assert [e["seq"] for e in events] == list(range(1, len(kept) + 2))
        applied = {i: r for i, r in enumerate(results) if isinstance(r, BatchResult)}
        for i, result in applied.items():
            stored = orjson.loads(await engine.get(EVENTS, f"evt_{i:04d}") or b"")
            assert result.seqs[0] == stored["seq"]
        assert sorted(ids_of(await engine.find(RUNS))) == sorted(
            ["taken", *(f"r{i}" for i in kept)]
        )
        audit = await assert_audit_chain(engine, len(kept))
        # Commit order is one order: the audit chain lists batches as seqs do.
        by_seq = sorted(applied, key=lambda i: applied[i].seqs[0] or 0)
        by_audit = sorted(applied, key=lambda i: applied[i].audit_seqs[0])
        assert by_seq == by_audit
        assert [a["action"] for a in audit] == [f"b{i}" for i in by_audit]

    async def test_concurrent_idempotent_appends_share_one_seq(self, engine: RecordEngine) -> None:
        async def one(i: int) -> BatchResult:
            ops: list[Op] = [Append(EVENTS, event_row(0), idempotent=True)]
            return await engine.apply(
                WriteBatch(ops, [audit_draft(f"try{i}")], audit_only_changes=True)
            )

        results = await asyncio.gather(*(one(i) for i in range(20)))
        assert {tuple(r.seqs) for r in results} == {(1,)}
        assert sorted(s for r in results for s in r.audit_seqs) == [1]
        assert (await engine.count(EVENTS), await engine.last_seq(EVENTS)) == (1, 1)
        await assert_audit_chain(engine, 1)

    # ------------------------------------------------------------------ differential

    async def test_answers_like_the_reference_on_a_random_history(
        self, engine: RecordEngine
    ) -> None:
        """The same random batches into the engine and the reference: every
        outcome and every query answer must be the same."""
        reference = MemoryEngine()
        await random_history(random.Random(20260101), [reference, engine], steps=120)
        await assert_same_answers(reference, engine, text="fts" in engine.capabilities)
