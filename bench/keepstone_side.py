"""The keepstone side of every scenario: one function opens a store from a URL.

Everything else in the harness talks to keepstone only through the public
API of the ``Store`` that :func:`open_store` returns.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keepstone
from keepstone.schemas.memory import CustomEvent, MemoryEvent

BACKENDS = ("auto", "sqlite", "memory")


def sqlite_available() -> tuple[bool, str]:
    """Whether ``sqlite://`` opens in this checkout, and why not."""
    try:
        importlib.import_module("keepstone.backends.sql.sqlite")
    except Exception as exc:  # any import failure means "not ready yet"
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def choose_backend(requested: str) -> str:
    """``auto`` picks sqlite when its backend imports, else memory."""
    if requested == "auto":
        return "sqlite" if sqlite_available()[0] else "memory"
    return requested


def store_url(backend: str, directory: Path) -> str:
    """The URL of a fresh store of ``backend`` kept under ``directory``."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{(directory / 'store.db').resolve()}"
    raise ValueError(f"unknown backend {backend!r}")


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[keepstone.Store]:
    """Open the keepstone store at ``url`` for one scenario and close it after."""
    async with keepstone.open(url) as store:
        yield store


def on_disk(backend: str) -> bool:
    return backend != "memory"


# --------------------------------------------------------------------------- events

PAYLOAD_TEXT = (
    "The user asked for the French glossary; the agent found three terms, "
    "checked them against the style guide and kept two of them. "
)
"""About 130 bytes of text, so that one event weighs about 250 bytes of JSON."""


def payload_data(i: int) -> dict[str, Any]:
    """The application data every system stores for event ``i``."""
    return {"n": i, "role": "assistant", "text": PAYLOAD_TEXT, "tags": ["glossary", "fr"]}


def make_event(profile_id: str, event_id: str, i: int, at: datetime | None = None) -> MemoryEvent:
    return MemoryEvent(
        id=event_id,
        profile_id=profile_id,
        at=at or datetime.now(UTC),
        payload=CustomEvent(name="x", data=payload_data(i)),
    )


def event_json(event: MemoryEvent) -> bytes:
    """The event as JSON: what the raw baselines write per row and per line."""
    return event.model_dump_json().encode()
