"""Shared fixtures: every service test runs on every backend that has landed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import keepstone
from tests import postgres_support

DURABLE_BACKENDS = ["sqlite", "file", "postgres"]
BACKENDS = ["memory", *DURABLE_BACKENDS]


def store_url(backend: str, location: Path) -> str:
    """The URL of a store of ``backend`` kept under ``location``."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{location / 'store.db'}"
    if backend == "file":
        return f"file://{location / 'workspace'}"
    if backend == "postgres":
        # One schema per location, dropped when the test ends (see _drop_postgres_schemas).
        postgres_support.require_postgres()
        schema = postgres_support.schema_for(location)
        _POSTGRES_SCHEMAS.add(schema)
        return postgres_support.url_for(schema)
    raise ValueError(backend)


_POSTGRES_SCHEMAS: set[str] = set()


@pytest.fixture(autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    """Drop the PostgreSQL schemas a test's store URLs named, after the test."""
    yield
    if _POSTGRES_SCHEMAS:
        names = sorted(_POSTGRES_SCHEMAS)
        _POSTGRES_SCHEMAS.clear()
        postgres_support.drop_schemas_now(names)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_store(backend: str, tmp_path: Path) -> Callable[..., Any]:
    """``await open_store(**options)`` opens (or reopens) this test's store."""

    def opener(**options: Any) -> Any:
        return keepstone.open(store_url(backend, tmp_path), **options)

    return opener


@pytest.fixture
async def store(open_store: Callable[..., Any]) -> AsyncIterator[keepstone.Store]:
    async with open_store(clock=keepstone.FixedClock(), ids=keepstone.SequentialIds()) as s:
        yield s


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Reclaim the catalog rows the dropped test schemas left (see vacuum_catalogs)."""
    if postgres_support.schemas_were_dropped():
        postgres_support.vacuum_catalogs()
