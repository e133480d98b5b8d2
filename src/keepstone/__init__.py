"""keepstone: a durable, local-first, auditable store for AI pipelines and agents.

>>> import keepstone
>>> async def main():
...     async with keepstone.open("memory://") as store:
...         run = await store.runs.create("translate")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from keepstone.errors import ERROR_CODES, StorageError
from keepstone.schemas._base import (
    FixedClock,
    Limits,
    SequentialIds,
    SystemClock,
    UlidIds,
    current_actor,
)
from keepstone.schemas.audit import ApprovalMarker
from keepstone.services.runs import RetryPolicy
from keepstone.store import Store, open
from keepstone.sync import SyncStore, connect
from keepstone.version import __version__


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Name ``actor`` in the audit records of changes made inside the block."""
    token = current_actor.set(actor)
    try:
        yield
    finally:
        current_actor.reset(token)


__all__ = [
    "ERROR_CODES",
    "ApprovalMarker",
    "FixedClock",
    "Limits",
    "RetryPolicy",
    "SequentialIds",
    "StorageError",
    "Store",
    "SyncStore",
    "SystemClock",
    "UlidIds",
    "__version__",
    "acting_as",
    "connect",
    "open",
]
