"""keepstone inside LangGraph: a checkpointer and a long-term memory store.

- :class:`KeepstoneSaver` — a ``BaseCheckpointSaver`` (sync and async) on
  any keepstone URL or open :class:`keepstone.Store`.
- :class:`KeepstoneMemoryStore` — a ``BaseStore`` with item revisions,
  tombstones, full-text and vector search, and TTL.
- :class:`KeepstoneSerializer` — JSON for LangGraph values, never pickle.

Install with ``pip install 'keepstone[langgraph]'``. See
``docs/langgraph.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keepstone.langgraph.retention import PrunePlan, ThreadPrune
    from keepstone.langgraph.saver import KeepstoneSaver
    from keepstone.langgraph.serde import KeepstoneSerializer
    from keepstone.langgraph.store import ItemVersion, KeepstoneMemoryStore

_EXPORTS = {
    "KeepstoneSaver": "keepstone.langgraph.saver",
    "KeepstoneSerializer": "keepstone.langgraph.serde",
    "KeepstoneMemoryStore": "keepstone.langgraph.store",
    "ItemVersion": "keepstone.langgraph.store",
    "PrunePlan": "keepstone.langgraph.retention",
    "ThreadPrune": "keepstone.langgraph.retention",
}

__all__ = [
    "ItemVersion",
    "KeepstoneMemoryStore",
    "KeepstoneSaver",
    "KeepstoneSerializer",
    "PrunePlan",
    "ThreadPrune",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keepstone.langgraph' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        from keepstone.errors import StorageError

        raise StorageError(
            "config",
            f"keepstone.langgraph.{name} needs LangGraph's checkpoint package "
            f"({exc}); install it with: pip install 'keepstone[langgraph]'",
            {"missing": getattr(exc, "name", None)},
        ) from exc
