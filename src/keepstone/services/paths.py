"""Conversational paths: the tree of a profile's branches.

What a path sees (its graph and its events) is read from the memory store
with ``path_id=``: :meth:`keepstone.ports.MemoryStore.graph`,
:meth:`~keepstone.ports.MemoryStore.replay`,
:meth:`~keepstone.ports.MemoryStore.list_events` and
:meth:`~keepstone.ports.MemoryStore.iterate_events`. ``graph_at`` and
``events_at`` are their former names, kept for this release only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from keepstone.ports.events import EventLog
from keepstone.ports.memory import MemoryStore
from keepstone.schemas.memory import GraphSnapshot, MemoryEvent, MemoryPath
from keepstone.services.paging import PAGE_SIZE, every


@dataclass
class PathNode:
    """One path in a profile's path tree, with its children."""

    path: MemoryPath
    children: list[PathNode] = field(default_factory=list)


class PathService:
    """``store.paths``: the tree of a profile's conversation paths."""

    def __init__(self, memory: MemoryStore, events: EventLog) -> None:
        self._memory = memory
        self._events = events

    async def _all_paths(self, profile_id: str) -> dict[str, MemoryPath]:
        paths = every(lambda c: self._memory.list_paths(profile_id, cursor=c, limit=PAGE_SIZE))
        return {p.id: p async for p in paths}

    async def graph_at(
        self, profile_id: str, path_id: str, *, through_seq: int | None = None
    ) -> GraphSnapshot:
        """Deprecated (removed in the next release): use
        ``store.memory.replay(profile_id, path_id=path_id, through_seq=...)``,
        or ``store.memory.graph(profile_id, path_id=path_id)``."""
        _renamed("store.paths.graph_at", "store.memory.replay(profile, path_id=...)")
        return await self._memory.replay(profile_id, path_id=path_id, through_seq=through_seq)

    async def events_at(
        self,
        profile_id: str,
        path_id: str,
        *,
        through_seq: int | None = None,
        compacted: bool = False,
    ) -> list[MemoryEvent]:
        """Deprecated (removed in the next release): use
        ``store.memory.list_events(profile_id, path_id=path_id, ...)`` (a
        page) or ``store.memory.iterate_events(...)``."""
        _renamed("store.paths.events_at", "store.memory.list_events(profile, path_id=...)")
        events = self._memory.iterate_events(
            profile_id, path_id=path_id, through_seq=through_seq, compacted=compacted
        )
        return [e async for e in events]

    async def tree(self, profile_id: str) -> list[PathNode]:
        """The profile's paths as a forest of branches (roots first, by id)."""
        await self._memory.get_profile(profile_id)
        paths = await self._all_paths(profile_id)
        nodes = {pid: PathNode(p) for pid, p in sorted(paths.items())}
        roots: list[PathNode] = []
        for node in nodes.values():
            parent = node.path.parent_path_id
            (nodes[parent].children if parent in nodes else roots).append(node)
        return roots


def _renamed(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated and goes in the next release; use {new}",
        DeprecationWarning,
        stacklevel=3,
    )
