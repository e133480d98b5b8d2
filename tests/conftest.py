"""Shared fixtures: every service test runs on every backend that has landed."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import keepstone

DURABLE_BACKENDS = ["sqlite", "file"]
BACKENDS = ["memory", *DURABLE_BACKENDS]


def store_url(backend: str, location: Path) -> str:
    """The URL of a store of ``backend`` kept under ``location``."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{location / 'store.db'}"
    if backend == "file":
        return f"file://{location / 'workspace'}"
    raise ValueError(backend)


def backend_available(backend: str) -> bool:
    module = {
        "sqlite": "keepstone.backends.sql.sqlite",
        "file": "keepstone.backends.fs",
    }.get(backend)
    try:
        return module is None or importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(params=[b for b in BACKENDS if backend_available(b)])
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
