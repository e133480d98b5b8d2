"""The BaseStore conformance suite (keepstone.testing.langgraph_store): on
LangGraph's InMemoryStore itself (the reference must pass its own suite),
and on KeepstoneMemoryStore over every keepstone backend."""

from __future__ import annotations

import pathlib

from langgraph.store.base import BaseStore, IndexConfig
from langgraph.store.memory import InMemoryStore

import keepstone
from keepstone.langgraph import KeepstoneMemoryStore
from keepstone.testing.langgraph_store import BaseStoreConformance
from tests.conftest import store_url


class TestInMemoryStoreReference(BaseStoreConformance):
    async def make_store(
        self, location: pathlib.Path, *, index: IndexConfig | None = None
    ) -> BaseStore:
        return InMemoryStore(index=index)


class KeepstoneStoreSuite(BaseStoreConformance):
    backend = "memory"

    async def make_store(
        self, location: pathlib.Path, *, index: IndexConfig | None = None
    ) -> BaseStore:
        store = await keepstone.open(store_url(self.backend, location))
        return KeepstoneMemoryStore(store, index=index)

    async def close_store(self, store: BaseStore) -> None:
        assert isinstance(store, KeepstoneMemoryStore)
        await store.store.close()


class TestKeepstoneMemory(KeepstoneStoreSuite):
    backend = "memory"


class TestKeepstoneSQLite(KeepstoneStoreSuite):
    backend = "sqlite"


class TestKeepstoneFile(KeepstoneStoreSuite):
    backend = "file"


class TestKeepstonePostgres(KeepstoneStoreSuite):
    backend = "postgres"
