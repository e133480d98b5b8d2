"""Conversational paths: the graph and the events as seen from one path.

A path sees, in sequence order:

- the profile-wide events (``path_id`` None), up to its horizon;
- its own events;
- its parent's view up to the fork point (``fork_seq``), recursively;
- for every branch merged into it, that branch's view up to the merge point.

``graph_at`` folds exactly those events, so the graph at a path is the
replay of its ancestry up to each fork point, plus its own events and what
was merged in. ``events_at(..., compacted=True)`` is the reading view: the
events a compaction covered are replaced by the compaction event carrying the
summary (the originals stay in the log, addressable by id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keepstone.errors import StorageError
from keepstone.ports.events import EventLog
from keepstone.ports.memory import MemoryStore
from keepstone.schemas.memory import (
    EventQuery,
    GraphSnapshot,
    MemoryEvent,
    MemoryPath,
    PathCompacted,
    PathMerged,
)
from keepstone.schemas.replay import fold
from keepstone.services.paging import PAGE_SIZE, every

_MAX_DEPTH = 256


@dataclass
class PathNode:
    """One path in a profile's path tree, with its children."""

    path: MemoryPath
    children: list[PathNode] = field(default_factory=list)


class PathService:
    """``store.paths``: views of a profile's conversation paths."""

    def __init__(self, memory: MemoryStore, events: EventLog) -> None:
        self._memory = memory
        self._events = events

    async def _all_paths(self, profile_id: str) -> dict[str, MemoryPath]:
        paths = every(lambda c: self._memory.list_paths(profile_id, cursor=c, limit=PAGE_SIZE))
        return {p.id: p async for p in paths}

    async def events_at(
        self,
        profile_id: str,
        path_id: str,
        *,
        through_seq: int | None = None,
        compacted: bool = False,
    ) -> list[MemoryEvent]:
        """The events visible from ``path_id`` (see the module docstring).

        Raises:
            StorageError: ``not_found`` for an unknown profile or path.
        """
        await self._memory.get_path(profile_id, path_id)
        paths = await self._all_paths(profile_id)
        by_path: dict[str | None, list[MemoryEvent]] = {}
        query = EventQuery(profile_id=profile_id, through_seq=through_seq)
        async for event in self._events.iterate(query):
            by_path.setdefault(event.path_id, []).append(event)
        upto = through_seq if through_seq is not None else await self._events.last_seq()
        seen = {e.id: e for e in by_path.get(None, [])}
        self._collect(by_path, paths, path_id, upto, seen, 0)
        events = sorted(seen.values(), key=lambda e: e.seq or 0)
        return _compact(events) if compacted else events

    def _collect(
        self,
        by_path: dict[str | None, list[MemoryEvent]],
        paths: dict[str, MemoryPath],
        path_id: str,
        upto: int,
        seen: dict[str, MemoryEvent],
        depth: int,
    ) -> None:
        if depth > _MAX_DEPTH:
            raise StorageError(
                "corrupt", f"path {path_id} nests deeper than {_MAX_DEPTH} levels", {}
            )
        path = paths.get(path_id)
        if path is None:
            return
        own = [e for e in by_path.get(path_id, []) if (e.seq or 0) <= upto]
        for event in own:
            seen[event.id] = event
        if path.parent_path_id is not None:
            horizon = min(upto, path.fork_seq if path.fork_seq is not None else upto)
            self._collect(by_path, paths, path.parent_path_id, horizon, seen, depth + 1)
        for event in own:
            p = event.payload
            if isinstance(p, PathMerged) and p.into_path_id == path_id:
                horizon = min(upto, p.at_seq if p.at_seq is not None else event.seq or upto)
                self._collect(by_path, paths, p.path_id, horizon, seen, depth + 1)

    async def graph_at(
        self, profile_id: str, path_id: str, *, through_seq: int | None = None
    ) -> GraphSnapshot:
        """The graph as seen from ``path_id``: the fold of :meth:`events_at`."""
        events = await self.events_at(profile_id, path_id, through_seq=through_seq)
        return fold(profile_id, events)

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


def _compact(events: list[MemoryEvent]) -> list[MemoryEvent]:
    ranges: dict[str, list[tuple[int, int]]] = {}
    for event in events:
        p = event.payload
        if isinstance(p, PathCompacted):
            ranges.setdefault(p.path_id, []).append((p.from_seq, p.through_seq))
    if not ranges:
        return events
    out = []
    for event in events:
        covered = event.path_id is not None and any(
            lo <= (event.seq or 0) <= hi for lo, hi in ranges.get(event.path_id, [])
        )
        if not covered:
            out.append(event)
    return out
