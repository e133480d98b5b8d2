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
``created_with`` (the keepstone version that created the store),
``migrated_with`` (the last one that migrated it) and ``words_rule`` (the
:data:`~keepstone.schemas.fulltext.WORDS_RULE` the full-text columns were
built with).

A migration is a versioned SQL file (``migrations/postgres/NNNN_name.sql``)
and, when SQL cannot express the change, a Python step registered in
:data:`PYTHON_STEPS` under the same version; the step runs right after that
version's SQL, in the same transaction, under the same advisory lock.
Version 3 recomputes the full-text columns (:func:`rebuild_words`), which is
also what opening does when the stamped words rule differs from this
keepstone's (another rule, or another Unicode version).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version

import asyncpg
import orjson

from keepstone.backends.sql.common import quote, read_migrations
from keepstone.backends.sql.postgres_errors import translate
from keepstone.backends.sql.postgres_schema import LAYOUTS
from keepstone.engine.tables import ALL_TABLES
from keepstone.errors import StorageError
from keepstone.schemas.fulltext import WORDS_RULE

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


_REBUILD_BATCH = 1000


async def rebuild_words(conn: asyncpg.Connection) -> None:
    """Recompute the ``tsv`` and ``words`` columns of every row with text from
    its stored body, and stamp ``words_rule`` (inside the caller's transaction,
    with ``search_path`` set to the store's schema)."""
    for layout in LAYOUTS.values():
        if not layout.has_text:
            continue
        t, k = quote(layout.name), quote(layout.key_column)
        async for batch in _batches(conn, f"SELECT {k}, body FROM {t}"):
            keys, tsvs, arrays = [], [], []
            for key, body in batch:
                try:
                    row = orjson.loads(body)
                except orjson.JSONDecodeError:
                    row = {}  # damaged: not indexed (the doctor reports it)
                tsv, words = layout.text_values(row if isinstance(row, dict) else {})
                keys.append(key)
                tsvs.append(tsv)
                arrays.append(words)
            await conn.execute(
                f"UPDATE {t} SET tsv = u.tsv::tsvector, words = u.words::text[] "
                f"FROM unnest($1::{layout.key_type}[], $2::text[], $3::text[]) "
                f"AS u(k, tsv, words) WHERE {t}.{k} = u.k",
                keys,
                tsvs,
                arrays,
            )
    await conn.execute(
        "INSERT INTO keepstone_meta (name, value) VALUES ('words_rule', $1) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        WORDS_RULE,
    )


async def _batches(conn: asyncpg.Connection, query: str) -> AsyncIterator[list[asyncpg.Record]]:
    cursor = await conn.cursor(query)
    while batch := await cursor.fetch(_REBUILD_BATCH):
        yield batch


PYTHON_STEPS: dict[int, Callable[[asyncpg.Connection], Awaitable[None]]] = {3: rebuild_words}
"""Migration versions with a Python step (see the module docstring). A step
must be idempotent and must not commit."""


async def stamps(conn: asyncpg.Connection, schema: str) -> dict[str, str] | None:
    """The ``keepstone_meta`` rows of ``schema`` (``None`` when there is none)."""
    exists = await conn.fetchval(
        "SELECT to_regclass(format('%I.keepstone_meta', $1::text)) IS NOT NULL", schema
    )
    if not exists:
        return None
    rows = await conn.fetch(f"SELECT name, value FROM {quote(schema)}.keepstone_meta")
    return {str(r[0]): r[1] for r in rows}


async def schema_version(conn: asyncpg.Connection, schema: str) -> int | None:
    """The version stamped in ``schema`` (``None`` when there is no stamp).

    Raises:
        StorageError: ``corrupt`` when the stamp is unreadable.
    """
    found = await stamps(conn, schema)
    return None if found is None else _version_of(found, schema)


def _version_of(found: dict[str, str], schema: str) -> int:
    raw = found.get("schema_version")
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
        found = await stamps(conn, schema)
        current = None if found is None else _version_of(found, schema)
    if current == latest and found is not None and found.get("words_rule") == WORDS_RULE:
        return latest
    if current is not None and current > latest:
        raise _too_new(schema, where, current, latest)
    with translate(where, "migrating"):
        await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", LOCK_CLASS, schema)
        try:
            found = await stamps(conn, schema)
            current = None if found is None else _version_of(found, schema)
            if current is not None and current > latest:
                raise _too_new(schema, where, current, latest)
            if current is None:
                await _refuse_foreign_tables(conn, schema, where)
            start = current or 0
            if start < latest or (found or {}).get("words_rule") != WORDS_RULE:
                async with conn.transaction():
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
                    await conn.execute(f"SET LOCAL search_path TO {quote(schema)}")
                    for migration in migrations[start:]:
                        await conn.execute(migration.script)
                        step = PYTHON_STEPS.get(migration.version)
                        if step is not None:
                            await step(conn)
                    if start == latest:
                        await rebuild_words(conn)  # another words rule or Unicode version
                    marks = {"schema_version": str(latest), "migrated_with": keepstone_version()}
                    if start == 0:
                        marks["created_with"] = keepstone_version()
                    for name, value in marks.items():
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
