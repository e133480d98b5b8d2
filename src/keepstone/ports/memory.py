"""MemoryStore: profiles, nodes, edges, paths and activation plans.

Every write here is an event appended to the :class:`~keepstone.ports.events.EventLog`
together with its effect on the stored graph, in one transaction.
"""

from __future__ import annotations

from typing import Any, Protocol

from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page
from keepstone.schemas.memory import (
    ActivationItem,
    ActivationPlan,
    GraphSnapshot,
    MemoryEdge,
    MemoryNode,
    MemoryPath,
    Profile,
    ProfilePolicy,
)


class MemoryStore(Protocol):
    """An agent-memory graph per profile, fed by the event log."""

    async def create_profile(
        self,
        name: str,
        *,
        attributes: dict[str, Any] | None = None,
        policy: ProfilePolicy | None = None,
        id: str | None = None,
    ) -> Profile:
        """Create a profile (event ``profile.created``).

        With your own ``id``, creating it again with the name, attributes and
        policy it was created with returns the profile (as it stands now)
        and writes nothing, also when the creates race.

        Raises:
            StorageError: ``conflict`` if ``id`` was created with other
                content; ``invalid``.
        """
        ...

    async def update_profile(
        self,
        profile_id: str,
        *,
        name: str | None = None,
        attributes: dict[str, Any] | None = None,
        policy: ProfilePolicy | None = None,
    ) -> Profile:
        """Change a profile's name, attributes or policy (``profile.updated``);
        arguments left ``None`` keep their value.

        Raises:
            StorageError: ``not_found``; ``invalid``.
        """
        ...

    async def get_profile(self, profile_id: str) -> Profile:
        """Raises: StorageError ``not_found``."""
        ...

    async def list_profiles(self, *, cursor: str | None = None, limit: int = 100) -> Page[Profile]:
        """Profiles by id. Raises: StorageError ``invalid`` cursor."""
        ...

    async def put_node(
        self,
        profile_id: str,
        kind: str,
        *,
        content: str | None = None,
        attributes: dict[str, Any] | None = None,
        id: str | None = None,
        path_id: str | None = None,
    ) -> MemoryNode:
        """Create or replace a node (``node.put``).

        Raises:
            StorageError: ``not_found`` for an unknown profile; ``integrity``
                for an unknown path; ``invalid``.
        """
        ...

    async def get_node(self, profile_id: str, node_id: str) -> MemoryNode:
        """Raises: StorageError ``not_found``."""
        ...

    async def list_nodes(
        self,
        profile_id: str,
        *,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[MemoryNode]:
        """Nodes by id. Raises: StorageError ``not_found`` profile; ``invalid``."""
        ...

    async def search_nodes(
        self, profile_id: str, text: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[MemoryNode]:
        """Nodes whose content holds every word of ``text``, by id.

        Raises:
            StorageError: ``not_found`` profile; ``invalid`` for empty text.
        """
        ...

    async def forget_node(
        self,
        profile_id: str,
        node_id: str,
        *,
        reason: str | None = None,
        approval: ApprovalMarker | None = None,
        path_id: str | None = None,
    ) -> None:
        """Remove a node and its edges (``node.forgotten``), a lifecycle action.

        Raises:
            StorageError: ``review_required`` (audited as denied) when the
                profile's policy needs review and no approval is given;
                ``not_found``.
        """
        ...

    async def put_edge(
        self,
        profile_id: str,
        source_id: str,
        target_id: str,
        kind: str,
        *,
        attributes: dict[str, Any] | None = None,
        id: str | None = None,
        path_id: str | None = None,
    ) -> MemoryEdge:
        """Create or replace an edge (``edge.put``).

        Raises:
            StorageError: ``not_found`` profile; ``integrity`` if an endpoint
                node does not exist.
        """
        ...

    async def remove_edge(
        self, profile_id: str, edge_id: str, *, reason: str | None = None
    ) -> None:
        """Remove an edge (``edge.removed``). Raises: StorageError ``not_found``."""
        ...

    async def get_edge(self, profile_id: str, edge_id: str) -> MemoryEdge:
        """Raises: StorageError ``not_found``."""
        ...

    async def list_edges(
        self,
        profile_id: str,
        *,
        source_id: str | None = None,
        target_id: str | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[MemoryEdge]:
        """Edges by id. Raises: StorageError ``not_found`` profile; ``invalid``."""
        ...

    async def create_path(
        self,
        profile_id: str,
        *,
        name: str | None = None,
        parent_path_id: str | None = None,
        fork_seq: int | None = None,
        id: str | None = None,
    ) -> MemoryPath:
        """Create a path; with a parent it is a branch forking at ``fork_seq``
        (default: the log's last seq) (``path.created``).

        With your own ``id``, creating it again with the same name, parent
        and (when given) ``fork_seq`` returns the path and writes nothing,
        also when the creates race.

        Raises:
            StorageError: ``not_found`` profile; ``integrity`` unknown parent;
                ``conflict`` if ``id`` exists with other content or the parent
                is not active.
        """
        ...

    async def get_path(self, profile_id: str, path_id: str) -> MemoryPath:
        """Raises: StorageError ``not_found``."""
        ...

    async def list_paths(
        self, profile_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[MemoryPath]:
        """Paths by id. Raises: StorageError ``not_found`` profile."""
        ...

    async def merge_path(self, profile_id: str, path_id: str, into_path_id: str) -> MemoryPath:
        """Record that ``path_id`` merged into ``into_path_id`` (``path.merged``).

        Raises:
            StorageError: ``not_found``; ``conflict`` if either path is not
                active or they are the same path.
        """
        ...

    async def abandon_path(
        self,
        profile_id: str,
        path_id: str,
        reason: str,
        *,
        approval: ApprovalMarker | None = None,
    ) -> MemoryPath:
        """Abandon a path (``path.abandoned``), a lifecycle action.

        Raises:
            StorageError: ``review_required`` (audited); ``not_found``;
                ``conflict`` if the path is not active.
        """
        ...

    async def compact_path(
        self,
        profile_id: str,
        path_id: str,
        *,
        through_seq: int,
        summary: str,
        approval: ApprovalMarker | None = None,
    ) -> MemoryPath:
        """Mark a path's events up to ``through_seq`` as summarised by
        ``summary`` (``path.compacted``), a lifecycle action. The original
        events stay in the log.

        Raises:
            StorageError: ``review_required`` (audited); ``not_found``;
                ``invalid`` if ``through_seq`` is not after the last compaction.
        """
        ...

    async def graph(self, profile_id: str) -> GraphSnapshot:
        """The stored graph. Raises: StorageError ``not_found``."""
        ...

    async def replay(self, profile_id: str, *, through_seq: int | None = None) -> GraphSnapshot:
        """The graph folded from the profile's events (up to ``through_seq``).
        Equals :meth:`graph` when ``through_seq`` is ``None``.

        Raises:
            StorageError: ``not_found``.
        """
        ...

    async def record_activation(
        self,
        profile_id: str,
        items: list[ActivationItem],
        *,
        path_id: str | None = None,
        context_id: str | None = None,
        planner: str | None = None,
        id: str | None = None,
    ) -> ActivationPlan:
        """Store which nodes were activated, and why.

        With your own ``id``, recording the same plan again returns it and
        writes nothing, also when the calls race.

        Raises:
            StorageError: ``not_found`` profile; ``integrity`` if an item names
                an unknown node or the path is unknown; ``conflict`` if ``id``
                exists with another plan.
        """
        ...

    async def list_activations(
        self,
        profile_id: str,
        *,
        path_id: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[ActivationPlan]:
        """Activation plans by id. Raises: StorageError ``not_found`` profile."""
        ...
