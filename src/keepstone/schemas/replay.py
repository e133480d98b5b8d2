"""Replay: fold memory events into a graph, and which events a path sees.

Pure; every backend and service uses it. The stored graph of a profile must
equal ``fold(events of that profile)``; the graph a path sees is the fold of
the events :class:`PathView` lets through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from keepstone.errors import StorageError
from keepstone.schemas.memory import (
    GRAPH_VIEWS,
    EdgePut,
    EdgeRemoved,
    GraphSnapshot,
    MemoryEdge,
    MemoryEvent,
    MemoryNode,
    MemoryPath,
    NodeForgotten,
    NodePut,
    PathAbandoned,
    PathCompacted,
    PathCreated,
    PathMerged,
    Profile,
    ProfileCreated,
    ProfileUpdated,
)

_UNBOUNDED = float("inf")


class GraphFold:
    """Mutable accumulator: feed events in sequence order, then ``snapshot()``."""

    def __init__(self, profile_id: str) -> None:
        self.profile_id = profile_id
        self.profile: Profile | None = None
        self.nodes: dict[str, MemoryNode] = {}
        self.edges: dict[str, MemoryEdge] = {}
        self.paths: dict[str, MemoryPath] = {}
        self.through_seq = 0

    def apply(self, event: MemoryEvent) -> None:
        """Apply one event (its effect is what the memory store writes)."""
        p = event.payload
        at = event.at
        if isinstance(p, ProfileCreated):
            self.profile = Profile(
                id=event.profile_id,
                name=p.name,
                attributes=p.attributes,
                policy=p.policy,
                created_at=at,
                updated_at=at,
            )
        elif isinstance(p, ProfileUpdated):
            if self.profile is not None:
                self.profile = self.profile.model_copy(
                    update={
                        "name": p.name,
                        "attributes": p.attributes,
                        "policy": p.policy,
                        "updated_at": at,
                    }
                )
        elif isinstance(p, NodePut):
            old = self.nodes.get(p.node_id)
            self.nodes[p.node_id] = MemoryNode(
                id=p.node_id,
                profile_id=event.profile_id,
                kind=p.node_kind,
                content=p.content,
                attributes=p.attributes,
                created_at=old.created_at if old else at,
                updated_at=at,
            )
        elif isinstance(p, NodeForgotten):
            self.nodes.pop(p.node_id, None)
            for eid in [
                e.id for e in self.edges.values() if p.node_id in (e.source_id, e.target_id)
            ]:
                del self.edges[eid]
        elif isinstance(p, EdgePut):
            self.edges[p.edge_id] = MemoryEdge(
                id=p.edge_id,
                profile_id=event.profile_id,
                source_id=p.source_id,
                target_id=p.target_id,
                kind=p.edge_kind,
                attributes=p.attributes,
                created_at=at,
            )
        elif isinstance(p, EdgeRemoved):
            self.edges.pop(p.edge_id, None)
        elif isinstance(p, PathCreated):
            self.paths[p.path_id] = MemoryPath(
                id=p.path_id,
                profile_id=event.profile_id,
                name=p.name,
                parent_path_id=p.parent_path_id,
                fork_seq=p.fork_seq,
                created_at=at,
                updated_at=at,
            )
        elif isinstance(p, PathMerged):
            self._update_path(
                p.path_id,
                at,
                status="merged",
                merged_into=p.into_path_id,
                merged_at_seq=p.at_seq,
            )
        elif isinstance(p, PathAbandoned):
            self._update_path(p.path_id, at, status="abandoned", abandoned_reason=p.reason)
        elif isinstance(p, PathCompacted):
            self._update_path(p.path_id, at, compacted_through_seq=p.through_seq)
        if event.seq is not None:
            self.through_seq = max(self.through_seq, event.seq)

    def _update_path(self, path_id: str, at: object, **changes: object) -> None:
        path = self.paths.get(path_id)
        if path is not None:
            self.paths[path_id] = path.model_copy(update={**changes, "updated_at": at})

    def snapshot(self) -> GraphSnapshot:
        """The graph so far, sorted by id."""
        return GraphSnapshot(
            profile_id=self.profile_id,
            profile=self.profile,
            nodes=[self.nodes[k] for k in sorted(self.nodes)],
            edges=[self.edges[k] for k in sorted(self.edges)],
            paths=[self.paths[k] for k in sorted(self.paths)],
            through_seq=self.through_seq,
        )


def fold(profile_id: str, events: Iterable[MemoryEvent]) -> GraphSnapshot:
    """Replay ``events`` (in sequence order) into a graph snapshot."""
    acc = GraphFold(profile_id)
    for event in events:
        acc.apply(event)
    return acc.snapshot()


# --------------------------------------------------------------------------- views


def check_view(view: object, path_id: str | None) -> None:
    """Refuse (``invalid``) a view word keepstone does not know, or a
    ``path_id`` given with ``view="all"`` (which is every path already)."""
    if view not in GRAPH_VIEWS:
        raise StorageError(
            "invalid",
            f"view must be one of {', '.join(repr(v) for v in GRAPH_VIEWS)}, not {view!r}",
            {"view": str(view), "known": list(GRAPH_VIEWS)},
        )
    if view == "all" and path_id is not None:
        raise StorageError(
            "invalid",
            "view='all' reads every path of the profile; leave path_id out, "
            "or pass path_id alone for what one path sees",
            {"view": view, "path": path_id},
        )


def main_path(profile_id: str, paths: Iterable[MemoryPath]) -> str | None:
    """The profile's main path: its only active root path (a path with no
    parent, neither merged nor abandoned); ``None`` when it has none, so the
    main line is the profile-wide events alone.

    Raises:
        StorageError: ``conflict`` when several root paths are active: the
            main line is ambiguous, and the caller must name a path.
    """
    roots = sorted(p.id for p in paths if p.parent_path_id is None and p.status == "active")
    if len(roots) > 1:
        shown = ", ".join(roots[:5]) + (", ..." if len(roots) > 5 else "")
        raise StorageError(
            "conflict",
            f"profile {profile_id} has {len(roots)} active root paths ({shown}), so it has "
            "no single main path: pass path_id= to read one, or view='all' for every path",
            {"profile": profile_id, "paths": roots},
        )
    return roots[0] if roots else None


class PathView:
    """Which events of a profile one path sees, up to ``through_seq``.

    The *line* of a path is the path itself, its parent up to the fork point
    (``fork_seq``), recursively, and every branch merged into one of those up
    to the merge point (the branch's tip when it merged). The path sees:

    - the profile-wide events (written without a ``path_id``), all of them;
    - the events of each path of its line, up to that path's horizon;
    - the ``path.created`` event of each path of its line, and no other
      (so the view's ``paths`` are exactly the paths of its line).

    ``path_id=None`` is the line with no path: the profile-wide events alone.
    Built from the profile's paths (for parents and fork points) and its
    ``path.merged`` events (for what merged where, and when).
    """

    def __init__(
        self,
        path_id: str | None,
        paths: Mapping[str, MemoryPath],
        merges: Iterable[MemoryEvent],
        *,
        through_seq: int | None = None,
    ) -> None:
        self.path_id = path_id
        self.through_seq = through_seq
        top = _UNBOUNDED if through_seq is None else float(through_seq)
        self.horizons: dict[str | None, float] = {None: top}
        """The highest seq seen of each path of the line (``None``: profile-wide)."""
        merged_into: dict[str, list[tuple[int, PathMerged]]] = {}
        for event in merges:
            p, seq = event.payload, event.seq or 0
            if isinstance(p, PathMerged) and p.into_path_id == event.path_id and seq <= top:
                merged_into.setdefault(p.into_path_id, []).append((seq, p))
        todo: list[tuple[str, float]] = [] if path_id is None else [(path_id, top)]
        while todo:
            pid, upto = todo.pop()
            if self.horizons.get(pid, -1.0) >= upto:
                continue  # seen as far already: nothing more is reachable
            self.horizons[pid] = upto
            path = paths.get(pid)
            if path is not None and path.parent_path_id is not None:
                fork = upto if path.fork_seq is None else float(path.fork_seq)
                todo.append((path.parent_path_id, min(upto, fork)))
            for seq, merge in merged_into.get(pid, []):
                if seq <= upto:
                    at = seq if merge.at_seq is None else merge.at_seq
                    todo.append((merge.path_id, min(upto, float(at))))

    def sees(self, event: MemoryEvent) -> bool:
        """Whether ``event`` is part of this view."""
        seq = event.seq or 0
        if seq > self.horizons[None]:
            return False
        if isinstance(event.payload, PathCreated):
            return event.payload.path_id in self.horizons
        horizon = self.horizons.get(event.path_id)
        return horizon is not None and seq <= horizon

    def sees_everything(self, path_ids: Iterable[str]) -> bool:
        """Whether the view is every event of a profile with these paths
        (no ``through_seq``, and every path on the line without a horizon)."""
        return all(self.horizons.get(pid) == _UNBOUNDED for pid in (None, *path_ids))


class Compactions:
    """The ranges compaction events cover, for the reading view of events:
    an event of path P whose seq is in a ``path.compacted`` range of P is
    replaced, for reading, by that compaction event (which carries the
    summary). The originals stay in the log; graphs never change."""

    def __init__(self, compactions: Iterable[MemoryEvent]) -> None:
        self.ranges: dict[str, list[tuple[int, int]]] = {}
        for event in compactions:
            p = event.payload
            if isinstance(p, PathCompacted):
                self.ranges.setdefault(p.path_id, []).append((p.from_seq, p.through_seq))

    def covers(self, event: MemoryEvent) -> bool:
        """Whether a compaction replaces ``event`` for reading."""
        if event.path_id is None:
            return False
        seq = event.seq or 0
        return any(lo <= seq <= hi for lo, hi in self.ranges.get(event.path_id, ()))
