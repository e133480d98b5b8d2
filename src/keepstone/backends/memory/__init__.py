"""The in-memory backend: the reference semantics, no dependencies.

``memory://`` opens a new, empty store each time; it lives as long as the
``Store`` object.
"""

from __future__ import annotations

from typing import Any

from keepstone.backends.memory.engine import MemoryEngine
from keepstone.errors import StorageError


async def open_engine(url: str, *, options: dict[str, Any]) -> MemoryEngine:
    """Open a new in-memory store. ``memory://`` takes no options."""
    if url.rstrip("/") not in ("memory:", "memory:/", "memory://") or options:
        raise StorageError(
            "config",
            f"memory:// takes no path or options (got {url!r}, {sorted(options)})",
            {"url": url},
        )
    return MemoryEngine()


__all__ = ["MemoryEngine", "open_engine"]
