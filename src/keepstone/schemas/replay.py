"""Replay: fold memory events into a graph. Pure; every backend and service uses it.

The stored graph of a profile must equal ``fold(events of that profile)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from keepstone.schemas.memory import (
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
