"""The engine conformance suite against PostgreSQL (a real server; one schema
per location), with its writer's two paths, and what only PostgreSQL has:
transactions shared by concurrent batches, values the server cannot hold,
blobs in 1 MiB chunks.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from keepstone.backends.sql.postgres import PostgresEngine, Settings
from keepstone.engine.spi import Append, BlobPut, Put, RecordEngine, WriteBatch
from keepstone.engine.tables import EVENTS, RUNS, SNAPSHOTS
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from keepstone.testing import EngineConformance
from keepstone.testing.engine import (
    EngineConformanceBase,
    EngineWriteConformance,
    assert_audit_chain,
    audit_draft,
    event_row,
)
from tests import postgres_support as pg


async def open_engine(location: pathlib.Path) -> PostgresEngine:
    return await PostgresEngine.open(Settings(pg.url_for(pg.schema_for(location)), {}))


class PostgresEngines(EngineConformanceBase):
    """Opens PostgreSQL engines, one schema per location, dropped after the test."""

    optimistic = True
    _schemas: set[str]

    @pytest.fixture(autouse=True)
    async def _own_schemas(self) -> AsyncIterator[None]:
        pg.require_postgres()
        self._schemas = set()
        yield
        await pg.drop_schemas(self._schemas)

    async def make_engine(self, location: pathlib.Path) -> RecordEngine:
        made = await open_engine(location)
        self._schemas.add(made.schema)
        made._writer.optimistic = self.optimistic
        return made


class TestPostgresEngine(PostgresEngines, EngineConformance):
    """The whole suite. Writes try the optimistic path first (reads in
    autocommit, then one short transaction) and take the table lock when
    another writer committed in between."""


class TestPostgresLockedEngine(PostgresEngines, EngineWriteConformance):
    """The write rules again, every write under the table lock."""

    optimistic = False


# --------------------------------------------------------------------------- PostgreSQL only


@pytest.fixture
async def engine(tmp_path: pathlib.Path) -> AsyncIterator[PostgresEngine]:
    pg.require_postgres()
    made = await open_engine(tmp_path)
    try:
        yield made
    finally:
        await made.close()
        await pg.drop_schemas([made.schema])


async def test_concurrent_batches_share_transactions(engine: PostgresEngine) -> None:
    await engine.apply(WriteBatch([Put(RUNS, {"id": "taken", "name": "x"})]))
    before = engine.transactions

    async def one(i: int) -> Any:
        ops: list[Any] = [Append(EVENTS, event_row(i))]
        if i % 7 == 3:  # refused: its event must not land, its neighbours' must
            ops.append(Put(RUNS, {"id": "taken"}, expect="absent"))
        try:
            return await engine.apply(WriteBatch(ops, [audit_draft(f"b{i}")]))
        except StorageError as exc:
            return exc.code

    results = await asyncio.gather(*(one(i) for i in range(64)))
    refused = [i for i in range(64) if i % 7 == 3]
    assert [i for i, r in enumerate(results) if r == "conflict"] == refused
    assert engine.transactions - before < 64, "concurrent batches should share transactions"
    await assert_audit_chain(engine, 64 - len(refused))


async def test_a_value_postgres_cannot_hold_fails_only_its_batch(engine: PostgresEngine) -> None:
    async def put(op: Put) -> str:
        try:
            await engine.apply(WriteBatch([op]))
        except StorageError as exc:
            return exc.code
        return "ok"

    too_big = Put(SNAPSHOTS, {"run_id": "b", "number": 2**63})  # past bigint
    nul = Put(RUNS, {"id": "c", "name": "nul\x00byte"})  # stored, escaped in its column
    results = await asyncio.gather(
        put(Put(RUNS, {"id": "a", "name": "fine"})), put(too_big), put(nul)
    )
    assert list(results) == ["ok", "invalid", "ok"]
    assert sorted(orjson.loads(r)["id"] for r in await engine.find(RUNS)) == ["a", "c"]
    assert await engine.find(SNAPSHOTS) == []
    assert [orjson.loads(r)["id"] for r in await engine.find(RUNS, {"name": "nul\x00byte"})] == [
        "c"
    ]


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
