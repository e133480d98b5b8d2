"""PostgreSQL specifics: migrations under an advisory lock, the schema stamp,
a store of a newer keepstone refused, the DDL matching the layouts, a lost
connection reported as ``unavailable`` (then recovered), deadlocks retried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import keepstone
from keepstone.backends.sql.postgres_migrate import LOCK_CLASS, latest_version
from keepstone.backends.sql.postgres_schema import LAYOUTS
from keepstone.errors import StorageError
from tests import postgres_support as pg


@pytest.fixture
async def schema(tmp_path: Path) -> AsyncIterator[str]:
    pg.require_postgres()
    name = pg.schema_for(tmp_path)
    try:
        yield name
    finally:
        await pg.drop_schemas([name])


async def test_new_schema_is_created_migrated_and_stamped(schema: str) -> None:
    async with keepstone.open(pg.url_for(schema)) as store:
        await store.runs.create("x")
    conn = await pg.connect()
    try:
        stamps = dict(await conn.fetch(f'SELECT name, value FROM "{schema}".keepstone_meta'))
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = $1",
            schema,
        )
    finally:
        await conn.close()
    assert stamps["schema_version"] == str(latest_version())
    assert "created_with" in stamps and "migrated_with" in stamps
    found: dict[str, set[str]] = {}
    for table, column in columns:
        found.setdefault(table, set()).add(column)
    for name, layout in LAYOUTS.items():
        assert found.get(name) == {c for c, _ in layout.columns()}, name


async def test_concurrent_opens_of_a_new_store_migrate_once(schema: str) -> None:
    url = pg.url_for(schema)
    stores = await asyncio.gather(*(keepstone.open(url) for _ in range(4)))
    try:
        runs = await asyncio.gather(*(s.runs.create(f"r{i}") for i, s in enumerate(stores)))
        listed = await stores[0].runs.list()
        assert sorted(r.id for r in listed.items) == sorted(r.id for r in runs)
    finally:
        for s in stores:
            await s.close()


async def test_migration_waits_for_the_advisory_lock(schema: str) -> None:
    holder = await pg.connect()
    try:
        await holder.execute("SELECT pg_advisory_lock($1, hashtext($2))", LOCK_CLASS, schema)
        opening = asyncio.ensure_future(keepstone.open(pg.url_for(schema)))
        await asyncio.sleep(0.5)
        assert not opening.done(), "the store opened while another process held the lock"
        await holder.execute("SELECT pg_advisory_unlock($1, hashtext($2))", LOCK_CLASS, schema)
        store = await asyncio.wait_for(opening, 30)
        await store.close()
    finally:
        await holder.close()


async def test_a_store_of_a_newer_keepstone_is_refused(schema: str) -> None:
    async with keepstone.open(pg.url_for(schema)):
        pass
    conn = await pg.connect()
    try:
        await conn.execute(
            f"UPDATE \"{schema}\".keepstone_meta SET value = '999' WHERE name = 'schema_version'"
        )
    finally:
        await conn.close()
    with pytest.raises(StorageError) as err:
        await keepstone.open(pg.url_for(schema))
    assert err.value.code == "unsupported_schema"
    assert err.value.details["schema_version"] == 999
    assert err.value.details["supported"] == latest_version()
    assert "upgrade keepstone" in err.value.message


async def test_a_schema_with_foreign_tables_is_not_taken_over(schema: str) -> None:
    conn = await pg.connect()
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".events (x int)')
    finally:
        await conn.close()
    with pytest.raises(StorageError) as err:
        await keepstone.open(pg.url_for(schema))
    assert err.value.code == "config" and "events" in err.value.message


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("schema=Bad-Name", "schema"),
        ("schema=ok&bogus=1", "bogus"),
        ("schema=ok&pool_size=0", "pool_size"),
        ("schema=ok&blobs=file:///tmp", "blobs"),
        ("schema=ok&s3_region=x", "s3_"),
    ],
)
async def test_bad_options_are_config_errors(query: str, fragment: str) -> None:
    with pytest.raises(StorageError) as err:
        await keepstone.open(f"postgresql://postgres@127.0.0.1:1/test?{query}")
    assert err.value.code == "config" and fragment in err.value.message


# --------------------------------------------------------------------------- lost connections


class Proxy:
    """A TCP proxy to the server that the test can cut and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server: asyncio.Server | None = None
        self.port = 0
        self.links: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.links += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for link in self.links:
            link.transport.abort()
        self.links.clear()
        await self.server.wait_closed()


async def test_a_lost_connection_is_unavailable_then_recovers(schema: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(pg.server_url())
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    await proxy.start()
    user = f"{parts.username}@" if parts.username else ""
    url = f"postgresql://{user}127.0.0.1:{proxy.port}{parts.path}?schema={schema}&connect_timeout=2"
    store = await keepstone.open(url)
    try:
        run = await store.runs.create("before")
        await proxy.cut()
        for call in (store.runs.get(run.id), store.runs.create("during")):
            with pytest.raises(StorageError) as err:
                await call
            assert err.value.code == "unavailable", err.value
        await proxy.start()  # same port: the server is back
        assert (await store.runs.get(run.id)).name == "before"
        after = await store.runs.create("after")
        assert (await store.runs.get(after.id)).name == "after"
        assert (await store.audit.verify()).ok
    finally:
        await store.close()
        with contextlib.suppress(Exception):
            await proxy.cut()


async def test_a_deadlock_is_retried_inside_the_writer(schema: str) -> None:
    store = await keepstone.open(pg.url_for(schema))
    side = await pg.connect()
    try:
        engine = store.backend.engine  # type: ignore[attr-defined]
        from keepstone.engine.spi import Put, WriteBatch
        from keepstone.engine.tables import RUNS

        await side.execute(f'SET search_path TO "{schema}"; BEGIN')
        await side.execute("INSERT INTO runs (id, body) VALUES ('x', '{\"id\":\"x\"}')")
        # The writer locks the counters, then waits for row 'x' held by `side`...
        write = asyncio.ensure_future(
            engine.apply(WriteBatch([Put(RUNS, {"id": "x", "name": "mine"})]))
        )
        await asyncio.sleep(0.3)
        # ...while `side` waits for the counters: a deadlock PostgreSQL breaks.
        await side.execute("LOCK TABLE keepstone_counters IN EXCLUSIVE MODE")
        await side.execute("COMMIT")
        await asyncio.wait_for(write, 30)
        assert engine.retries >= 1, "the writer should have been the deadlock victim and retried"
        body = await engine.get(RUNS, "x")
        assert body == b'{"id":"x","name":"mine"}'
    finally:
        await side.close()
        await store.close()


async def test_a_damaged_counter_table_fails_writes_without_hanging(schema: str) -> None:
    store = await keepstone.open(pg.url_for(schema))
    try:
        conn = await pg.connect()
        try:
            await conn.execute(
                f"DELETE FROM \"{schema}\".keepstone_counters WHERE name = 'generation'"
            )
        finally:
            await conn.close()
        with pytest.raises(StorageError) as err:
            await asyncio.wait_for(store.runs.create("x"), 30)
        assert err.value.code == "corrupt" and "generation" in err.value.message
    finally:
        await store.close()


async def test_tables_are_analyzed_as_they_grow_when_autovacuum_is_off(schema: str) -> None:
    """On a server that never gathers statistics, the writer analyzes the
    tables it writes once they have grown, so that statements planned while a
    table was small are planned again (a stale plan made 100-event appends
    50x slower in bench row 9c)."""
    from datetime import UTC, datetime

    from keepstone.schemas.memory import CustomEvent, MemoryEvent

    conn = await pg.connect()
    try:
        autovacuum = await conn.fetchval("SHOW autovacuum")
    finally:
        await conn.close()
    async with keepstone.open(pg.url_for(schema)) as store:
        writer = store.backend.engine._writer  # type: ignore[attr-defined]
        assert writer.analyze is (autovacuum != "on")
        profile = await store.memory.create_profile("p")
        for batch in range(3):
            await store.events.append(
                [
                    MemoryEvent(
                        id=f"evt_{batch}_{i}",
                        profile_id=profile.id,
                        at=datetime.now(UTC),
                        payload=CustomEvent(name="x", data={"i": i}),
                    )
                    for i in range(40)
                ]
            )
        if not writer.analyze:
            pytest.skip("the server runs autovacuum: it gathers statistics itself")
        assert writer.analyzed >= 1
    conn = await pg.connect()
    try:
        analyzed = await conn.fetchval(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE schemaname = $1 AND relname = 'events'",
            schema,
        )
    finally:
        await conn.close()
    assert analyzed
