"""Create and upgrade a keepstone schema in PostgreSQL, safely under concurrency.

:func:`migrate` runs when a store is opened:

1. fast path: the schema's ``keepstone_meta`` already says the latest version;
2. otherwise take ``pg_advisory_lock`` (a key derived from the schema name),
   so that two processes opening a new store do not both create it; read the
   version again, refuse a store stamped by a newer keepstone
   (``unsupported_schema``), refuse a schema holding keepstone's table names
   without its stamp (``config``: not a keepstone store), then apply every
   pending migration and the stamp in ONE transaction, and unlock.

The stamp is ``keepstone_meta``: ``schema_version`` (the migration version),
``created_with`` (the keepstone version that created the store) and
``migrated_with`` (the last one that migrated it).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import asyncpg

from keepstone.backends.sql.common import quote, read_migrations
from keepstone.backends.sql.postgres_errors import translate
from keepstone.engine.tables import ALL_TABLES
from keepstone.errors import StorageError

LOCK_CLASS = 0x6B737470
"""First key of the migration advisory lock (``'kstp'``); the second is
``hashtext(schema)``."""


def keepstone_version() -> str:
    try:
        return version("keepstone")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def latest_version() -> int:
    """The newest schema version this keepstone ships."""
    migrations = read_migrations("postgres")
    return migrations[-1].version if migrations else 0


async def schema_version(conn: asyncpg.Connection, schema: str) -> int | None:
    """The version stamped in ``schema`` (``None`` when there is no stamp).

    Raises:
        StorageError: ``corrupt`` when the stamp is unreadable.
    """
    exists = await conn.fetchval(
        "SELECT to_regclass(format('%I.keepstone_meta', $1::text)) IS NOT NULL", schema
    )
    if not exists:
        return None
    raw = await conn.fetchval(
        f"SELECT value FROM {quote(schema)}.keepstone_meta WHERE name = 'schema_version'"
    )
    try:
        return int(raw) if raw is not None else 0
    except (TypeError, ValueError) as exc:
        raise StorageError(
            "corrupt",
            f"the schema version stamped in PostgreSQL schema {schema!r} is unreadable",
            {"schema": schema, "value": str(raw)},
        ) from exc


async def migrate(conn: asyncpg.Connection, schema: str, where: str) -> int:
    """Bring ``schema`` to the latest version; return that version.

    Raises:
        StorageError: ``unsupported_schema`` for a store stamped by a newer
            keepstone; ``config`` when the schema holds tables keepstone did
            not create; ``unavailable``/``config`` for driver failures.
    """
    migrations = read_migrations("postgres")
    latest = migrations[-1].version if migrations else 0
    with translate(where, "reading the schema version"):
        current = await schema_version(conn, schema)
    if current is not None and current == latest:
        return latest
    if current is not None and current > latest:
        raise _too_new(schema, where, current, latest)
    with translate(where, "migrating"):
        await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", LOCK_CLASS, schema)
        try:
            current = await schema_version(conn, schema)
            if current is not None and current > latest:
                raise _too_new(schema, where, current, latest)
            if current is None:
                await _refuse_foreign_tables(conn, schema, where)
            start = current or 0
            if start < latest:
                async with conn.transaction():
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
                    await conn.execute(f"SET LOCAL search_path TO {quote(schema)}")
                    for migration in migrations[start:]:
                        await conn.execute(migration.script)
                    stamps = {"schema_version": str(latest), "migrated_with": keepstone_version()}
                    if start == 0:
                        stamps["created_with"] = keepstone_version()
                    for name, value in stamps.items():
                        await conn.execute(
                            "INSERT INTO keepstone_meta (name, value) VALUES ($1, $2) "
                            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                            name,
                            value,
                        )
        finally:
            if not conn.is_closed():
                await conn.execute(
                    "SELECT pg_advisory_unlock($1, hashtext($2))", LOCK_CLASS, schema
                )
    return latest


async def _refuse_foreign_tables(conn: asyncpg.Connection, schema: str, where: str) -> None:
    names = [t.name for t in ALL_TABLES] + ["blobs", "blob_chunks", "keepstone_counters"]
    clash = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename = ANY($2::text[]) "
        "ORDER BY tablename",
        schema,
        names,
    )
    if clash:
        found = [r[0] for r in clash]
        raise StorageError(
            "config",
            f"PostgreSQL schema {schema!r} at {where} already holds tables keepstone did not "
            f"create ({', '.join(found[:5])}); open the store in its own schema with ?schema=",
            {"schema": schema, "tables": found},
        )


def _too_new(schema: str, where: str, current: int, latest: int) -> StorageError:
    return StorageError(
        "unsupported_schema",
        f"the keepstone store in PostgreSQL schema {schema!r} at {where} has schema version "
        f"{current}, newer than this keepstone supports ({latest}): upgrade keepstone to open it",
        {"schema": schema, "schema_version": current, "supported": latest},
    )
