"""The conformance suite against PostgreSQL (a real server; one schema per store).

Each store lives in a schema named from its test directory, so reopening the
same location reopens the same data; every schema a test made is dropped when
the test ends. The damage hooks edit rows with a direct asyncpg connection,
behind keepstone's back.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

import keepstone
from keepstone.schemas import AuditRecord
from keepstone.schemas._base import dumps
from keepstone.testing import StoreConformance
from tests import postgres_support as pg


class PostgresConformance(StoreConformance):
    """The suite over ``postgresql://`` with the options of :meth:`url_options`."""

    _schemas: set[str]

    def url_options(self) -> dict[str, str]:
        """Extra URL options; ``{schema}`` in a value becomes the store's schema."""
        return {}

    @pytest.fixture(autouse=True)
    def _own_schemas(self) -> Iterator[None]:
        pg.require_postgres()
        self._schemas = set()
        yield
        pg.drop_schemas_now(self._schemas)

    async def make_store(self, location: pathlib.Path, **options: Any) -> keepstone.Store:
        schema = pg.schema_for(location)
        self._schemas.add(schema)
        extra = {k: v.replace("{schema}", schema) for k, v in self.url_options().items()}
        return await keepstone.open(pg.url_for(schema, **extra), **options)

    async def damage_blob(self, store: keepstone.Store, digest: str, data: bytes) -> None:
        engine = store.backend.engine  # type: ignore[attr-defined]
        conn = await pg.connect()
        try:
            place = await conn.fetchval(
                f'SELECT place FROM "{engine.schema}".blobs WHERE digest = $1', digest
            )
            if place == "s3":
                await engine.s3.write_raw(digest, data)
            elif place == "chunks":
                await conn.execute(
                    f'DELETE FROM "{engine.schema}".blob_chunks WHERE digest = $1', digest
                )
                await conn.execute(
                    f'INSERT INTO "{engine.schema}".blob_chunks VALUES ($1, 0, $2)', digest, data
                )
            else:
                await conn.execute(
                    f'UPDATE "{engine.schema}".blobs SET data = $2 WHERE digest = $1', digest, data
                )
        finally:
            await conn.close()

    async def tamper_audit(self, store: keepstone.Store, record: AuditRecord) -> None:
        engine = store.backend.engine  # type: ignore[attr-defined]
        body = dumps(record.model_dump(mode="json"))
        conn = await pg.connect()
        try:
            await conn.execute(
                f'UPDATE "{engine.schema}".audit SET body = $2 WHERE seq = $1', record.seq, body
            )
        finally:
            await conn.close()

    async def tamper_row(
        self, store: keepstone.Store, table: str, key: str, body: bytes | None
    ) -> None:
        from keepstone.backends.sql.postgres_schema import LAYOUTS

        engine = store.backend.engine  # type: ignore[attr-defined]
        layout = LAYOUTS[table]
        name = f'"{engine.schema}"."{table}"'
        column = f'"{layout.key_column}"'
        param = layout.key_param(key)
        conn = await pg.connect()
        try:
            if body is None:
                await conn.execute(f"DELETE FROM {name} WHERE {column} = $1", param)
            else:
                done = await conn.execute(
                    f"UPDATE {name} SET body = $2 WHERE {column} = $1", param, body
                )
                if done == "UPDATE 0":
                    await conn.execute(
                        f"INSERT INTO {name} ({column}, body) VALUES ($1, $2)", param, body
                    )
        finally:
            await conn.close()


class TestPostgresStore(PostgresConformance):
    """Blobs in PostgreSQL (bytea, chunked above 1 MiB)."""
