"""Part of the conformance suite through the sync API (``keepstone.connect``).

The async test bodies of the runs, artifacts, logs and events suites drive a
:class:`keepstone.SyncStore` through :class:`tests.sync_support.AsyncOverSync`,
which calls each sync method from a worker thread: every call goes through
the sync proxy and keepstone's private loop thread, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator
from typing import Any, cast

import pytest

import keepstone
from keepstone.testing import (
    ArtifactStoreConformance,
    EventLogConformance,
    LogStoreConformance,
    RunStoreConformance,
)
from tests import postgres_support as pg
from tests.sync_support import AsyncOverSync
from tests.test_conformance_sqlite import damage_sqlite_blob


class SyncConformance(
    RunStoreConformance, ArtifactStoreConformance, LogStoreConformance, EventLogConformance
):
    """The suites above, with the store opened by ``keepstone.connect``."""

    durable = True

    def url(self, location: pathlib.Path) -> str:
        raise NotImplementedError

    async def make_store(self, location: pathlib.Path, **options: Any) -> keepstone.Store:
        sync = await asyncio.to_thread(keepstone.connect, self.url(location), **options)
        return cast(keepstone.Store, AsyncOverSync(sync))


class TestSyncSQLite(SyncConformance):
    def url(self, location: pathlib.Path) -> str:
        return f"sqlite:///{location / 'store.db'}"

    async def damage_blob(self, store: keepstone.Store, digest: str, data: bytes) -> None:
        damage_sqlite_blob(pathlib.Path(store.url.removeprefix("sqlite:///")), digest, data)


POSTGRES_PART = {
    "test_create_returns_pending_run",
    "test_history_keeps_every_attempt_with_its_outcome",
    "test_reopen_refusals",
    "test_save_snapshot_numbers_and_round_trips",
    "test_create_text_bytes_and_stream",
    "test_write_jsonl_streams_and_reads_back",
    "test_query_full_text_of_text_content",
    "test_follow_yields_new_lines_and_ends_after_seal",
    "test_line_numbers_hold_with_concurrent_writers",
    "test_read_filters_and_paginates",
    "test_iterate_matches_list",
    "test_append_invalid_is_all_or_nothing",
}
"""The part that runs on PostgreSQL (every test there makes and drops a schema,
about a second each): each kind of call the proxy makes, and the streams."""


class TestSyncPostgres(SyncConformance):
    _schemas: set[str]

    @pytest.fixture(autouse=True)
    def _own_schemas(self) -> Iterator[None]:
        pg.require_postgres()
        self._schemas = set()
        yield
        pg.drop_schemas_now(self._schemas)

    def url(self, location: pathlib.Path) -> str:
        schema = pg.schema_for(location)
        self._schemas.add(schema)
        return pg.url_for(schema)


for _name in dir(SyncConformance):
    if _name.startswith("test_") and _name not in POSTGRES_PART:
        setattr(TestSyncPostgres, _name, None)  # not collected
