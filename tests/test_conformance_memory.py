"""The conformance suite against the in-memory reference backend.

The damage hooks reach into the engine's dicts from here, behind keepstone's
back (the memory engine has no files an outsider could edit).
"""

from __future__ import annotations

import pathlib
from typing import Any

import keepstone
from keepstone.backends.memory.engine import MemoryEngine
from keepstone.engine.tables import AUDIT
from keepstone.schemas import AuditRecord
from keepstone.schemas._base import dumps
from keepstone.testing import StoreConformance


def _engine(store: keepstone.Store) -> MemoryEngine:
    engine: Any = store.backend.engine  # type: ignore[attr-defined]
    assert isinstance(engine, MemoryEngine)
    return engine


class TestMemoryStore(StoreConformance):
    async def make_store(self, location: pathlib.Path, **options: Any) -> keepstone.Store:
        return await keepstone.open("memory://", **options)

    async def damage_blob(self, store: keepstone.Store, digest: str, data: bytes) -> None:
        _engine(store)._blobs[digest] = data

    async def tamper_audit(self, store: keepstone.Store, record: AuditRecord) -> None:
        # The row keeps its seq, so the engine's seq index stays as it was.
        row = record.model_dump(mode="json")
        _engine(store)._tables[AUDIT.name].rows[str(record.seq)] = (row, dumps(row))

    async def tamper_row(
        self, store: keepstone.Store, table: str, key: str, body: bytes | None
    ) -> None:
        import orjson

        data = _engine(store)._tables[table]
        data.store(key, None if body is None else (orjson.loads(body), body))
