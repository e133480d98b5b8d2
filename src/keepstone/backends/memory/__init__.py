"""The in-memory backend: the reference semantics, no dependencies.

``memory://`` opens a new, empty store each time; it lives as long as the
``Store`` object.
"""

from __future__ import annotations

from typing import Any

from keepstone.backends.memory.engine import MemoryEngine
from keepstone.backends.records import RecordBackend
from keepstone.errors import StorageError
from keepstone.schemas._base import Clock, IdSource


async def open_backend(
    url: str, *, clock: Clock, ids: IdSource, actor: str, options: dict[str, Any]
) -> RecordBackend:
    """Open a new in-memory store. ``memory://`` takes no options."""
    if url.rstrip("/") not in ("memory:", "memory:/", "memory://") or options:
        raise StorageError(
            "config",
            f"memory:// takes no path or options (got {url!r}, {sorted(options)})",
            {"url": url},
        )
    return RecordBackend(MemoryEngine(), clock=clock, ids=ids, actor=actor)


__all__ = ["MemoryEngine", "open_backend"]
