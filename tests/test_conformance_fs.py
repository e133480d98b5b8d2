"""The conformance suite against the filesystem backend (a workspace on disk, reopened).

The damage hooks edit the workspace's files behind keepstone's back, the way a
person or a failing disk would: the store must notice, not serve stale data.
"""

from __future__ import annotations

import pathlib
from typing import Any

import orjson

import keepstone
from keepstone.schemas import AuditRecord
from keepstone.schemas._base import dumps
from keepstone.testing import StoreConformance


def _root(store: keepstone.Store) -> pathlib.Path:
    return store.backend.engine.root  # type: ignore[attr-defined,no-any-return]


class TestFsStore(StoreConformance):
    async def make_store(self, location: pathlib.Path, **options: Any) -> keepstone.Store:
        return await keepstone.open(f"file://{location / 'ws'}", **options)

    async def damage_blob(self, store: keepstone.Store, digest: str, data: bytes) -> None:
        hexdigest = digest.partition(":")[2]
        path = _root(store) / "blobs" / "sha256" / hexdigest[:2] / hexdigest[2:4] / hexdigest
        path.write_bytes(data)

    async def tamper_audit(self, store: keepstone.Store, record: AuditRecord) -> None:
        path = _root(store) / "audit.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        for i, line in enumerate(lines):
            if orjson.loads(line)["seq"] == record.seq:
                lines[i] = dumps(record.model_dump(mode="json")) + b"\n"
        path.write_bytes(b"".join(lines))

    async def tamper_row(
        self, store: keepstone.Store, table: str, key: str, body: bytes | None
    ) -> None:
        from keepstone.backends.fs.layout import record_path, stream_path
        from keepstone.engine.tables import ALL_TABLES

        found = {t.name: t for t in ALL_TABLES}[table]
        engine = store.backend.engine  # type: ignore[attr-defined]
        old = await engine.get(found, key)
        row = orjson.loads(body if body is not None else old)
        root = _root(store)
        if not found.seq:
            path = root / record_path(found, row)
            if body is None:
                path.unlink()
            else:
                path.write_bytes(body + b"\n")
            return
        path = root / stream_path(found, row)
        lines = path.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines if found.key_of(orjson.loads(line)) != key]
        if body is not None:
            at = next((i for i, line in enumerate(lines) if line not in kept), len(kept))
            kept.insert(at, body + b"\n")
        path.write_bytes(b"".join(kept))
