"""The conformance suite against the in-memory reference backend."""

from __future__ import annotations

import pathlib
from typing import Any

import keepstone
from keepstone.engine.tables import AUDIT
from keepstone.schemas import AuditRecord
from keepstone.testing import StoreConformance


class TestMemoryStore(StoreConformance):
    durable = False

    async def make_store(self, location: pathlib.Path, **options: Any) -> keepstone.Store:
        return await keepstone.open("memory://", **options)

    async def damage_blob(self, store: keepstone.Store, digest: str, data: bytes) -> None:
        store.backend.engine.tamper_blob(digest, data)  # type: ignore[attr-defined]

    async def tamper_audit(self, store: keepstone.Store, record: AuditRecord) -> None:
        row = record.model_dump(mode="json")
        store.backend.engine.tamper(AUDIT, str(record.seq), row)  # type: ignore[attr-defined]

    async def tamper_row(
        self, store: keepstone.Store, table: str, key: str, body: bytes | None
    ) -> None:
        import orjson

        data = store.backend.engine._tables[table]  # type: ignore[attr-defined]
        data.store(key, None if body is None else (orjson.loads(body), body))
