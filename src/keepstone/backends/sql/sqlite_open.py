"""Opening a SQLite store: the connection, its pragmas, the schema migrations.

The writer (:mod:`keepstone.backends.sql.sqlite_writer`) owns the one write
connection; this module makes it: the file is created owner-only, the journal
is WAL with ``synchronous=FULL``, and the shipped migrations are applied under
``BEGIN IMMEDIATE`` so two processes opening a new store do not race. A store
stamped with a newer schema is refused with ``unsupported_schema``.

A migration is a versioned SQL file (``migrations/sqlite/NNNN_name.sql``) and,
when SQL cannot express the change, a Python step registered in
:data:`PYTHON_STEPS` under the same version and run in the same transaction.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from keepstone.backends.sql.sqlite_blobs import BlobDirectory, fsync_dir
from keepstone.backends.sql.sqlite_errors import is_busy, storage_error, translate
from keepstone.backends.sql.sqlite_fts import rebuild_fts, words_rule
from keepstone.backends.sql.sqlite_schema import load_migrations
from keepstone.errors import StorageError
from keepstone.schemas.fulltext import WORDS_RULE

T = TypeVar("T")

BUSY_TIMEOUT = 30.0
"""Seconds SQLite's busy handler waits for a lock held by another connection."""

BUSY_GIVE_UP = 120.0
"""Seconds of retrying SQLITE_BUSY (beyond the busy handler) before ``unavailable``."""


def retry_busy(action: Callable[[], T], path: str, during: str) -> T:
    """Run ``action``, retrying while another connection holds the lock."""
    deadline = time.monotonic() + BUSY_GIVE_UP
    delay = 0.001
    while True:
        try:
            return action()
        except sqlite3.Error as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise storage_error(exc, path, during) from exc
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.05)


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit)."""
    with translate(path, "opening"):
        return sqlite3.connect(
            path,
            timeout=BUSY_TIMEOUT,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=512,
        )


def open_connection(path: str, blobs: BlobDirectory) -> sqlite3.Connection:
    """The writer's connection: created owner-only if new, WAL, ``synchronous=FULL``,
    migrated to the latest schema (under ``BEGIN IMMEDIATE``, so two processes
    opening a new store do not race)."""
    created = _create_owner_only(path)
    conn = connect(path)
    try:
        mode = retry_busy(
            lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone(), path, "opening"
        )
        if mode is None or str(mode[0]).lower() != "wal":
            raise StorageError(
                "config",
                f"SQLite cannot use WAL mode for {path} (got {mode!r}); "
                "keepstone needs a local filesystem that supports it",
                {"path": path},
            )
        with translate(path, "opening"):
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA journal_size_limit=67108864")
            conn.execute("PRAGMA cache_size=-16384")
            conn.execute("PRAGMA temp_store=MEMORY")
        migrate(conn, path)
        if created:
            fsync_dir(Path(path).parent)
        blobs.clean_temps()
    except OSError as exc:
        conn.close()
        raise StorageError(
            "unavailable",
            f"cannot make {path} durable: {exc.strerror or exc}",
            {"path": path, "errno": exc.errno},
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


PYTHON_STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {3: rebuild_fts}
"""Migration versions whose change needs Python, not just SQL: the step runs
right after that version's SQL statements, on the same connection, inside the
same ``BEGIN IMMEDIATE`` transaction (so a failure rolls back the version's
SQL too, and no other connection sees a half-migrated store). A step must be
idempotent and must not commit. Version 3 fills the FTS tables its SQL
recreated."""


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply the shipped migrations the store lacks; refuse a newer store;
    rebuild the full-text index when it was built with another words rule."""
    migrations = load_migrations()
    latest = migrations[-1].version if migrations else 0
    with translate(path, "reading the schema version"):
        if schema_version(conn, path) == latest and words_rule(conn) == WORDS_RULE:
            return
    retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"), path, "migrating")
    try:
        with translate(path, "migrating"):
            current = schema_version(conn, path)
            if current > latest:
                raise StorageError(
                    "unsupported_schema",
                    f"the store {path} has schema version {current}, newer than this "
                    f"keepstone supports ({latest}): upgrade keepstone to open it",
                    {"path": path, "schema_version": current, "supported": latest},
                )
            for migration in migrations[current:]:
                for statement in migration.statements:
                    conn.execute(statement)
                step = PYTHON_STEPS.get(migration.version)
                if step is not None:
                    step(conn)
                conn.execute(
                    "INSERT INTO keepstone_meta (name, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (migration.version,),
                )
            if words_rule(conn) != WORDS_RULE:
                rebuild_fts(conn)  # built by a keepstone with another rule or Unicode
            conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _create_owner_only(path: str) -> bool:
    """Create an empty database file readable by its owner only (SQLite gives its
    ``-wal`` and ``-shm`` files the same mode); ``False`` if it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError as exc:
        raise StorageError(
            "config", f"cannot create {path}: {exc.strerror or exc}", {"path": path}
        ) from exc
    os.close(fd)
    return True


def schema_version(conn: sqlite3.Connection, path: str) -> int:
    """The version stamped in ``keepstone_meta`` (0 for a new, empty database).

    Raises:
        StorageError: ``config`` when the database holds tables but is not a
            keepstone store.
    """
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    if "keepstone_meta" not in tables:
        if tables:
            raise StorageError(
                "config",
                f"{path} is a SQLite database but not a keepstone store",
                {"path": path, "tables": sorted(tables)[:10]},
            )
        return 0
    row = conn.execute("SELECT value FROM keepstone_meta WHERE name = 'schema_version'").fetchone()
    try:
        return int(row[0]) if row is not None else 0
    except (TypeError, ValueError) as exc:
        raise StorageError(
            "corrupt", f"the schema version stamped in {path} is unreadable", {"path": path}
        ) from exc
