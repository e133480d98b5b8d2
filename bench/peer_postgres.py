"""The PostgreSQL peers, each in a schema of its own that the run drops after:
eventsourcing's ``eventsourcing.postgres`` persistence (an ``Application``
whose aggregates record events, the way its docs show it) and langgraph's
``AsyncPostgresSaver``. Also the server URL and the schema helpers the
keepstone side uses.

``KEEPSTONE_BENCH_POSTGRES_URL`` (else ``KEEPSTONE_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/test``) names the server.

Importing this module raises ImportError when asyncpg is missing; each peer
is imported when used, so a missing peer only skips its rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import asyncpg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return (
        os.environ.get("KEEPSTONE_BENCH_POSTGRES_URL")
        or os.environ.get("KEEPSTONE_TEST_POSTGRES_URL")
        or DEFAULT_URL
    )


async def unreachable() -> str | None:
    """Why the server cannot be used, or ``None``."""
    try:
        conn = await asyncpg.connect(server_url(), timeout=5)
        await conn.close()
    except Exception as exc:
        return f"PostgreSQL unreachable ({type(exc).__name__})"
    return None


def new_schema(tag: str) -> str:
    return f"ks_bench_{tag}_{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def own_schema(tag: str) -> AsyncIterator[str]:
    """A fresh schema, dropped (with everything in it) when the block ends."""
    name = new_schema(tag)
    conn = await asyncpg.connect(server_url(), timeout=10)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
        yield name
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        await conn.close()


def keepstone_url(schema: str, application_name: str | None = None) -> str:
    """keepstone's URL for a store in ``schema``; ``application_name`` names its
    sessions in ``pg_stat_activity`` (see :mod:`bench.pg_probe`)."""
    base = server_url()
    url = f"{base}{'&' if '?' in base else '?'}schema={schema}"
    return f"{url}&application_name={application_name}" if application_name else url


# --------------------------------------------------------------------------- eventsourcing


def eventsourcing_app(schema: str) -> Any:
    """An eventsourcing application persisted in ``schema`` (tables created)."""
    from eventsourcing.application import Application

    from bench.peer_eventsourcing import BenchApplication

    parts = urlsplit(server_url())
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_SCHEMA": schema,
        "POSTGRES_POOL_SIZE": "8",
        "CREATE_TABLE": "y",
    }
    app: Application = BenchApplication(env=env)
    return app


# --------------------------------------------------------------------------- langgraph


@asynccontextmanager
async def async_postgres_saver(schema: str) -> AsyncIterator[Any]:
    """langgraph's AsyncPostgresSaver on a connection whose search_path is ``schema``."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    base = server_url()
    options = quote(f"-c search_path={schema}")
    conninfo = f"{base}{'&' if '?' in base else '?'}options={options}"
    async with AsyncPostgresSaver.from_conn_string(conninfo) as saver:
        await saver.setup()
        yield saver
