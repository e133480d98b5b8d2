"""The RecordEngine SPI contract on PostgreSQL: every test of the memory/SQLite
contract, a differential random history against the memory reference, and
group commit (concurrent batches share transactions, a refused one fails alone).
"""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

import tests.test_engine_contract as contract
from keepstone.backends.memory.engine import MemoryEngine
from keepstone.backends.sql.postgres import PostgresEngine, Settings
from keepstone.engine.spi import (
    Append,
    BlobPut,
    Check,
    CheckNone,
    Cmp,
    Delete,
    In,
    Put,
    Table,
    WriteBatch,
)
from keepstone.engine.tables import ARTIFACT_TEXT, AUDIT, EVENTS, NODES, RUNS
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from tests import postgres_support as pg


async def open_engine(location: pathlib.Path, **options: Any) -> PostgresEngine:
    schema = pg.schema_for(location)
    return await PostgresEngine.open(Settings(pg.url_for(schema), options))


@pytest.fixture
async def engine(tmp_path: pathlib.Path) -> AsyncIterator[PostgresEngine]:
    pg.require_postgres()
    made = await open_engine(tmp_path)
    try:
        yield made
    finally:
        await made.close()
        await pg.drop_schemas([made.schema])


class TestPostgresEngineContract(contract.TestEngineContract):
    """The shared SPI contract, with the ``engine`` fixture above (writes try
    the optimistic two-round-trip path first)."""


class TestPostgresLockedEngineContract(contract.TestEngineContract):
    """The shared SPI contract again, every write under the table lock."""

    @pytest.fixture
    async def engine(self, tmp_path: pathlib.Path) -> AsyncIterator[PostgresEngine]:
        pg.require_postgres()
        made = await open_engine(tmp_path)
        made._writer.optimistic = False
        try:
            yield made
        finally:
            await made.close()
            await pg.drop_schemas([made.schema])


async def test_two_writers_on_one_schema_interleave_in_commit_order(
    tmp_path: pathlib.Path,
) -> None:
    """Two engines (as two processes would) append at once: the optimistic
    writes that lose a race are staged again, and seqs stay contiguous."""
    pg.require_postgres()
    first = await open_engine(tmp_path)
    second = await open_engine(tmp_path)
    try:

        async def writer(engine: PostgresEngine, prefix: str) -> None:
            for i in range(60):
                await engine.apply(
                    WriteBatch(
                        [Append(EVENTS, {"id": f"{prefix}{i:03d}", "profile_id": prefix})],
                        [contract._draft(prefix)],
                    )
                )

        await asyncio.gather(writer(first, "a"), writer(second, "b"))
        rows = [orjson.loads(r) for r in await first.find(EVENTS, order=("seq",))]
        assert [r["seq"] for r in rows] == list(range(1, 121))
        for prefix in "ab":
            mine = [r["id"] for r in rows if r["profile_id"] == prefix]
            assert mine == [f"{prefix}{i:03d}" for i in range(60)]
        audit = [orjson.loads(r) for r in await first.find(AUDIT, order=("seq",))]
        assert [a["seq"] for a in audit] == list(range(1, 121))
        assert all(n["prev_hash"] == p["hash"] for p, n in itertools.pairwise(audit))
    finally:
        await first.close()
        await second.close()
        await pg.drop_schemas([first.schema])


async def test_concurrent_batches_share_transactions_and_fail_alone(
    engine: PostgresEngine,
) -> None:
    await engine.apply(WriteBatch([Put(RUNS, {"id": "taken", "name": "x"})]))
    before = engine.transactions

    async def one(i: int) -> Any:
        ops: list[Any] = [Append(EVENTS, contract._event(i))]
        if i % 7 == 3:  # refused: its event must not land, its neighbours' must
            ops.append(Put(RUNS, {"id": "taken"}, expect="absent"))
        try:
            return await engine.apply(WriteBatch(ops, [contract._draft(f"b{i}")]))
        except StorageError as exc:
            return exc.code

    results = await asyncio.gather(*(one(i) for i in range(64)))
    refused = [i for i, r in enumerate(results) if r == "conflict"]
    assert refused == [i for i in range(64) if i % 7 == 3]
    stored = [orjson.loads(r)["id"] for r in await engine.find(EVENTS, order=("seq",))]
    assert stored == [f"evt_{i:04d}" for i in range(64) if i not in refused]
    seqs = [r.seqs[0] for r in results if not isinstance(r, str)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert engine.transactions - before < 64, "concurrent batches should share transactions"
    audit = [orjson.loads(r) for r in await engine.find(AUDIT, order=("seq",))]
    assert [a["seq"] for a in audit] == list(range(1, len(audit) + 1))
    for prev, nxt in itertools.pairwise(audit):
        assert nxt["prev_hash"] == prev["hash"]


async def test_a_value_postgres_cannot_hold_fails_only_its_batch(engine: PostgresEngine) -> None:
    async def put(run_id: str, name: str) -> str:
        try:
            await engine.apply(WriteBatch([Put(RUNS, {"id": run_id, "name": name})]))
        except StorageError as exc:
            return exc.code
        return "ok"

    results = await asyncio.gather(put("a", "fine"), put("b", "nul\x00byte"), put("c", "fine"))
    assert results == ["ok", "invalid", "ok"]
    assert sorted(orjson.loads(r)["id"] for r in await engine.find(RUNS)) == ["a", "c"]
    assert await engine.find(RUNS, {"name": "nul\x00byte"}) == []


async def test_full_text_matches_whole_words_like_the_reference(engine: PostgresEngine) -> None:
    memory = MemoryEngine()
    texts = {
        "t1": "The quick-brown fox_jumps over 3.14 lazy dogs",
        "t2": "Ünïcödé wörds and l'apostrophe, e-mail a@b.c",
        "t3": "x" * 3000 + " tail",
        "t4": "QUICK quick Quick",
    }
    batch = WriteBatch([Put(ARTIFACT_TEXT, {"id": k, "text": v}) for k, v in texts.items()])
    for eng in (engine, memory):
        await eng.apply(batch)
    for query in [
        "quick",
        "quick brown",
        "fox_jumps",
        "fox",
        "14",
        "3 14",
        "ünïcödé",
        "WÖRDS",
        "apostrophe l",
        "e mail",
        "b c a",
        "x" * 3000,
        "tail",
        "quick missing",
        "",
        "!!!",
    ]:
        expected = await memory.find(ARTIFACT_TEXT, text=query)
        assert await engine.find(ARTIFACT_TEXT, text=query) == expected, query


async def test_blobs_inline_and_chunked(engine: PostgresEngine) -> None:
    small, big = b"s" * 100, bytes(range(256)) * 9000  # big: 2.2 chunks of 1 MiB
    await engine.apply(
        WriteBatch([BlobPut(sha256_digest(small), small), BlobPut(sha256_digest(big), big)])
    )
    assert await engine.blob_get(sha256_digest(big)) == big
    pieces = [c async for c in engine.blob_stream(sha256_digest(big), 100_000)]
    assert b"".join(pieces) == big and max(len(p) for p in pieces) == 100_000

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(30):
            yield b"q" * 100_000

    info = await engine.blob_put_stream(chunks())
    assert info.size == 3_000_000
    assert await engine.blob_get(info.digest) == b"q" * 3_000_000
    again = await engine.blob_put_stream(chunks())
    assert again == info
    assert len(await engine.blob_list(None, 10)) == 3
    await engine.blob_delete(info.digest)
    assert await engine.blob_size(info.digest) is None


async def test_postgres_answers_like_memory_on_a_random_history(engine: PostgresEngine) -> None:
    """Same random batches into both engines; every query must answer the same."""
    rng = random.Random(20260102)
    memory = MemoryEngine()
    names, statuses, teams = ["etl", "train", "eval"], ["pending", "running", "failed"], "abc"
    for step in range(120):
        ops: list[Any] = []
        for _ in range(rng.randint(1, 4)):
            rid = f"r{rng.randint(0, 30)}"
            choice = rng.random()
            if choice < 0.5:
                row = {
                    "id": rid,
                    "name": rng.choice(names),
                    "status": rng.choice([*statuses, None]),
                    "created_at": f"2026-01-{rng.randint(1, 28):02d}",
                    "labels": {"team": rng.choice(teams), "n": rng.choice([0, 1, 1.0, [1]])},
                }
                ops.append(Put(RUNS, row, expect=rng.choice(["any", "any", "absent"])))
            elif choice < 0.6:
                ops.append(Delete(RUNS, rid))
            elif choice < 0.7:
                ops.append(Check(RUNS, rid, "not_found", "gone", equals={"name": "etl"}))
            elif choice < 0.85:
                ops.append(Append(EVENTS, contract._event(step * 10 + len(ops), rng.choice(names))))
            elif choice < 0.93:
                node = {"profile_id": "p", "id": rid, "kind": "k", "content": rng.choice(names)}
                ops.append(Put(NODES, node))
            else:
                ops.append(CheckNone(RUNS, {"name": "etl", "status": "failed"}, "conflict", "m"))
        batch = WriteBatch(ops, [contract._draft(f"step{step}")])
        outcomes = []
        for eng in (memory, engine):
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
        (RUNS, {"tags": {"n": 1.0}}),
        (RUNS, {"tags": {"n": [1]}}),
        (RUNS, {"order": ("name", "created_at"), "after": ("etl", "2026-01-10", "r5")}),
        (EVENTS, {"order": ("seq",), "where": {"payload.kind": "train"}}),
        (EVENTS, {"order": ("seq",), "desc": True, "after": (20, "x"), "limit": 5}),
        (AUDIT, {"order": ("seq",), "where": {"seq": Cmp(">", 100)}}),
        (NODES, {"where": {"profile_id": "p"}, "order": ("id",)}),
        (NODES, {"text": "etl"}),
    ]
    for table, kwargs in queries:
        where = kwargs.pop("where", None)
        expected = await memory.find(table, where, **kwargs)
        assert await engine.find(table, where, **kwargs) == expected, (table.name, kwargs)
        assert await engine.count(table, where) == await memory.count(table, where)
    for table in (RUNS, EVENTS, AUDIT):
        assert await engine.last_seq(table) == await memory.last_seq(table)
