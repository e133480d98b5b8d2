"""What the PostgreSQL tests share: the server URL, per-test schemas, skipping.

``KEEPSTONE_TEST_POSTGRES_URL`` names the server (default
``postgresql://postgres@127.0.0.1:5432/test``). Every store a test opens lives
in its own schema, named from the test's directory, and is dropped when the
test ends, so concurrent runs never collide and leave nothing behind. When the
server cannot be reached the tests skip with the reason, unless
``KEEPSTONE_REQUIRE_POSTGRES=1`` (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
SCHEMA_PREFIX = "ks_test_"


def server_url() -> str:
    return os.environ.get("KEEPSTONE_TEST_POSTGRES_URL") or DEFAULT_URL


def required() -> bool:
    return os.environ.get("KEEPSTONE_REQUIRE_POSTGRES", "") not in ("", "0")


def _in_thread(coro_fn: object) -> object:
    """Run a coroutine function to completion in a fresh loop on another thread
    (callable from sync code whether or not a loop is running here)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_fn()).result()  # type: ignore[operator]


@functools.cache
def unreachable_reason() -> str | None:
    """Why the test server cannot be used, or ``None`` when it can."""
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - asyncpg is a dev dependency
        return f"asyncpg is not installed ({exc})"

    async def probe() -> None:
        conn = await asyncpg.connect(server_url(), timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    try:
        _in_thread(probe)
    except Exception as exc:
        safe = urlsplit(server_url())._replace(netloc=urlsplit(server_url()).hostname or "")
        return f"PostgreSQL at {safe.geturl()} is unreachable ({type(exc).__name__}: {exc})"
    return None


def require_postgres() -> None:
    """Skip (or fail, with KEEPSTONE_REQUIRE_POSTGRES=1) when the server is unreachable."""
    reason = unreachable_reason()
    if reason is None:
        return
    if required():
        pytest.fail(f"KEEPSTONE_REQUIRE_POSTGRES is set but {reason}")
    pytest.skip(reason)


def schema_for(location: Path | str) -> str:
    """The schema of the store kept "at" ``location`` (stable, so reopening
    the same location reopens the same schema)."""
    digest = hashlib.sha256(str(Path(location).absolute()).encode()).hexdigest()
    return SCHEMA_PREFIX + digest[:24]


def url_for(schema: str, **options: str) -> str:
    base = server_url()
    query = "&".join([f"schema={schema}", *(f"{k}={v}" for k, v in options.items())])
    return base + ("&" if "?" in base else "?") + query


_DROPPED = False


def schemas_were_dropped() -> bool:
    """Whether this process dropped any test schema."""
    return _DROPPED


async def drop_schemas(names: Iterable[str]) -> None:
    import asyncpg

    global _DROPPED
    names = sorted(set(names))
    if not names:
        return
    _DROPPED = True
    conn = await asyncpg.connect(server_url(), timeout=10)
    try:
        for name in names:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def drop_schemas_now(names: Iterable[str]) -> None:
    """:func:`drop_schemas` from sync code."""
    names = sorted(set(names))
    if names:
        _in_thread(lambda: drop_schemas(names))


async def connect():  # type: ignore[no-untyped-def]
    """A direct asyncpg connection to the test server (to act behind keepstone's back)."""
    import asyncpg

    return await asyncpg.connect(server_url(), timeout=10)


CATALOGS = (
    "pg_catalog.pg_attribute",
    "pg_catalog.pg_class",
    "pg_catalog.pg_type",
    "pg_catalog.pg_depend",
    "pg_catalog.pg_index",
    "pg_catalog.pg_constraint",
    "pg_catalog.pg_attrdef",
)
"""The system catalogs every created and dropped test schema leaves dead rows in."""


def vacuum_catalogs() -> None:
    """Best effort: reclaim the dead catalog rows this run's schemas left behind.

    Each test schema creates and drops a few hundred catalog rows; on a server
    with autovacuum off (as some test servers are) they pile up and make every
    later DDL statement and catalog lookup slower. Needs a superuser; any
    failure is ignored (it is housekeeping, not a test).
    """
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(server_url(), timeout=5)
        try:
            if await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
                await conn.execute(f"VACUUM {', '.join(CATALOGS)}")
        finally:
            await conn.close()

    with contextlib.suppress(Exception):  # housekeeping only
        _in_thread(run)
