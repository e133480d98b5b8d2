"""The conformance suite against the SQLite backend (files on disk, reopened)."""

from __future__ import annotations

import pathlib
import sqlite3
from typing import Any

import keepstone
from keepstone.schemas import AuditRecord
from keepstone.schemas._base import dumps
from keepstone.testing import StoreConformance


def _db(store: keepstone.Store) -> pathlib.Path:
    return store.backend.engine.path  # type: ignore[attr-defined,no-any-return]


def damage_sqlite_blob(path: pathlib.Path, digest: str, data: bytes) -> None:
    """Replace the bytes of blob ``digest`` in the SQLite store at ``path``."""
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if row is not None and row[0] is not None:
            conn.execute("UPDATE blobs SET data = ? WHERE digest = ?", (data, digest))
            return
    hexdigest = digest.partition(":")[2]
    blob = path.with_name(path.name + ".blobs") / hexdigest[:2] / hexdigest[2:4] / hexdigest
    blob.write_bytes(data)


class TestSQLiteStore(StoreConformance):
    async def make_store(self, location: pathlib.Path, **options: Any) -> keepstone.Store:
        return await keepstone.open(f"sqlite:///{location}/store.db", **options)

    async def damage_blob(self, store: keepstone.Store, digest: str, data: bytes) -> None:
        damage_sqlite_blob(_db(store), digest, data)

    async def tamper_audit(self, store: keepstone.Store, record: AuditRecord) -> None:
        body = dumps(record.model_dump(mode="json"))
        with sqlite3.connect(_db(store)) as conn:
            conn.execute("UPDATE audit SET body = ? WHERE seq = ?", (body, record.seq))

    async def tamper_row(
        self, store: keepstone.Store, table: str, key: str, body: bytes | None
    ) -> None:
        from keepstone.backends.sql.sqlite_schema import LAYOUTS

        layout = LAYOUTS[table]
        column = layout.key_column
        param = layout.key_param(key)
        with sqlite3.connect(_db(store)) as conn:
            if body is None:
                conn.execute(f'DELETE FROM "{table}" WHERE "{column}" = ?', (param,))
            elif (
                conn.execute(
                    f'UPDATE "{table}" SET body = ? WHERE "{column}" = ?', (body, param)
                ).rowcount
                == 0
            ):
                conn.execute(
                    f'INSERT INTO "{table}" ("{column}", body) VALUES (?, ?)', (param, body)
                )
