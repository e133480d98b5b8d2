"""The lifecycle of an engine: what it declares, close, reopen (``"durable"``),
and two engines on one location (``"multi_process"``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from keepstone.engine.spi import (
    Append,
    BlobPut,
    Check,
    Cmp,
    Delete,
    Op,
    Put,
    RecordEngine,
    Restore,
    WriteBatch,
)
from keepstone.engine.tables import AUDIT, CHANGES, EVENTS, LOG_LINES, NODES, RUNS
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from keepstone.testing.engine.base import (
    CAPABILITIES,
    EngineConformanceBase,
    assert_audit_chain,
    audit_draft,
    event_row,
    line_row,
    node_row,
    refusal,
    requires,
    rows_of,
    run_row,
)


class EngineLifecycleConformance(EngineConformanceBase):
    """Declarations, close, reopen and sharing a location."""

    # ------------------------------------------------------------------ declarations

    async def test_declares_only_known_capabilities(self, engine: RecordEngine) -> None:
        assert isinstance(engine.name, str) and engine.name
        assert isinstance(engine.capabilities, frozenset)
        unknown = sorted(engine.capabilities - CAPABILITIES.keys())
        assert unknown == [], f"unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}"

    # ------------------------------------------------------------------ lifecycle

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

    async def test_reopen_keeps_rows_seqs_counters_and_the_audit_head(
        self, engine: RecordEngine
    ) -> None:
        requires(engine, "durable")
        small, large = b"small blob", bytes(range(256)) * 40
        ops: list[Op] = [Append(EVENTS, event_row(i)) for i in range(3)]
        ops += [Append(LOG_LINES, line_row(i)) for i in range(5)]
        ops += [Put(RUNS, run_row("r1", "2026-01-02")), Put(RUNS, run_row("r2", "2026-01-01"))]
        ops += [
            Put(NODES, node_row("p", "n", "findme words")),
            Append(CHANGES, {"artifact_id": "a"}),
        ]
        ops += [BlobPut(sha256_digest(d), d) for d in (small, large)]
        await engine.apply(WriteBatch(ops, [audit_draft("a"), audit_draft("b")]))
        deletes: list[Op] = [Delete(RUNS, "r2"), Delete(LOG_LINES, "4"), Delete(LOG_LINES, "5")]
        await engine.apply(WriteBatch(deletes, [audit_draft("c")]))
        doomed = WriteBatch([Put(RUNS, {"id": "r9"}), Check(RUNS, "x", "integrity", "no")])
        await refusal(engine, doomed)
        await engine.apply(WriteBatch([Restore(EVENTS, {**event_row(7), "seq": 10})]))
        before = await _state(engine)
        assert before["last_seq"] == {"events": 10, "log_lines": 5, "changes": 1, "audit": 3}

        reopened = await self.reopen(engine)
        assert await _state(reopened) == before
        again = await reopened.apply(WriteBatch([Append(EVENTS, event_row(0), idempotent=True)]))
        assert again.seqs == [1]
        more: list[Op] = [Append(EVENTS, event_row(11)), Append(LOG_LINES, line_row(6))]
        result = await reopened.apply(WriteBatch(more, [audit_draft("d")]))
        assert (result.seqs, result.audit_seqs) == ([11, 6], [4])
        await assert_audit_chain(reopened, 4)

    async def test_two_engines_on_one_location_take_turns(self, engine: RecordEngine) -> None:
        """Two engines on one location (as two processes would) commit at once:
        one seq order, one audit chain, each sees the other's rows."""
        requires(engine, "multi_process")
        second = await self.open_engine()

        async def writer(eng: RecordEngine, prefix: str) -> None:
            for i in range(30):
                row = {"id": f"{prefix}{i:03d}", "profile_id": prefix}
                await eng.apply(WriteBatch([Append(EVENTS, row)], [audit_draft(prefix)]))

        await asyncio.gather(writer(engine, "a"), writer(second, "b"))
        for eng in (engine, second):
            rows = rows_of(await eng.find(EVENTS, order=("seq",)))
            assert [r["seq"] for r in rows] == list(range(1, 61))
            for prefix in "ab":
                mine = [r["id"] for r in rows if r["profile_id"] == prefix]
                assert mine == [f"{prefix}{i:03d}" for i in range(30)]
            assert await eng.last_seq(EVENTS) == 60
            await assert_audit_chain(eng, 60)
        result = await second.apply(WriteBatch([Append(EVENTS, event_row(1))]))
        assert result.seqs == [61]
        assert await engine.get(EVENTS, "evt_0001") is not None


async def _state(engine: RecordEngine) -> dict[str, Any]:
    """Everything the reopen test compares: rows, counters, blobs, indexes."""
    state: dict[str, Any] = {}
    for table in (RUNS, EVENTS, LOG_LINES, CHANGES, NODES, AUDIT):
        state[table.name] = await engine.find(table)
        state[f"{table.name} count"] = await engine.count(table)
    for table in (EVENTS, LOG_LINES, CHANGES, AUDIT):
        state[f"{table.name} newest first"] = await engine.find(table, order=("seq",), desc=True)
    state["last_seq"] = {
        t.name: await engine.last_seq(t) for t in (EVENTS, LOG_LINES, CHANGES, AUDIT)
    }
    state["runs by date"] = await engine.find(RUNS, order=("created_at",))
    state["events of p1"] = await engine.find(EVENTS, {"profile_id": "p1", "seq": Cmp(">", 1)})
    if "fts" in engine.capabilities:
        state["text"] = await engine.find(NODES, text="findme")
    blobs = await engine.blob_list(None, 100)
    state["blobs"] = [(b.digest, b.size, await engine.blob_get(b.digest)) for b in blobs]
    return state
