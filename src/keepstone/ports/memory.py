"""MemoryStore: profiles, nodes, edges, paths and activation plans.

Every write here is an event appended to the :class:`~keepstone.ports.events.EventLog`
together with its effect on the stored graph, in one transaction.

Reads come in two views, named by the same ``path_id`` and ``view`` arguments
on :meth:`MemoryStore.graph`, :meth:`~MemoryStore.replay`,
:meth:`~MemoryStore.list_events` and :meth:`~MemoryStore.iterate_events`:

``view="path"`` (the default)
    What one path of the conversation sees: ``path_id``'s line, or the
    profile's *main line* when ``path_id`` is ``None``. A path sees the
    profile-wide events (written without a ``path_id``, whenever they were
    written), its own events, its
    parent's up to the fork point (recursively), each branch merged into it up
    to the merge point, and the creation of each of those paths. It does not
    see abandoned branches, nor branches not merged into it.
    The main line is that of the profile's only *active root path* (no parent,
    neither merged nor abandoned); with none, the profile-wide events alone;
    with several there is no main line, and a read without ``path_id`` is a
    ``conflict`` that names them.
``view="all"``
    Every event of the profile, whatever its path, abandoned branches
    included: the *stored graph*, which every write updates and which
    :meth:`~MemoryStore.get_node`, :meth:`~MemoryStore.list_nodes`,
    :meth:`~MemoryStore.search_nodes`, :meth:`~MemoryStore.get_edge` and
    :meth:`~MemoryStore.list_edges` read (with indexes and full-text search).

For each view, ``graph(...) == replay(...)``, and both are the fold of the
events ``iterate_events(...)`` yields. Compaction changes no graph: it only
hides the events it covers from ``list_events(..., compacted=True)``, which
shows the compaction event (and its summary) in their place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page
from keepstone.schemas.memory import (
    ActivationItem,
    ActivationPlan,
    GraphSnapshot,
    GraphView,
    MemoryEdge,
    MemoryEvent,
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
        """Every node of the profile, whatever path wrote it (the stored graph:
        ``view="all"``), by id; :meth:`graph` reads one path's nodes.

        Raises:
            StorageError: ``not_found`` profile; ``invalid``.
        """
        ...

    async def search_nodes(
        self, profile_id: str, text: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[MemoryNode]:
        """Nodes of the stored graph (every path) whose content holds every
        word of ``text``, by id.

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
        """Every edge of the profile, whatever path wrote it (the stored graph:
        ``view="all"``), by id.

        Raises:
            StorageError: ``not_found`` profile; ``invalid``.
        """
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

    async def graph(
        self, profile_id: str, *, path_id: str | None = None, view: GraphView = "path"
    ) -> GraphSnapshot:
        """The graph now, as the view sees it (see the module docstring): by
        default the profile's main line; ``path_id=`` for what that path
        sees; ``view="all"`` for every path (the stored graph, read without
        folding; so is the main line when every event is on it).

        Returns:
            The profile, its nodes, edges and paths (for ``view="path"``,
            the paths of the line only), by id, and ``through_seq``, the
            last seq folded.

        Raises:
            StorageError: ``not_found`` for an unknown profile or path;
                ``conflict`` when ``path_id`` is ``None`` and the profile
                has several active root paths; ``invalid`` for an unknown
                ``view``, or ``path_id`` with ``view="all"``.
        """
        ...

    async def replay(
        self,
        profile_id: str,
        *,
        path_id: str | None = None,
        view: GraphView = "path",
        through_seq: int | None = None,
    ) -> GraphSnapshot:
        """The view's events (up to ``through_seq``) folded into a graph;
        with ``through_seq`` ``None``, equal to :meth:`graph` with the same
        ``path_id`` and ``view``. The main path (``path_id`` ``None``) is
        chosen by the paths' current state, even for a past ``through_seq``.

        Raises:
            StorageError: as :meth:`graph`; ``invalid`` for a negative
                ``through_seq``.
        """
        ...

    async def list_events(
        self,
        profile_id: str,
        *,
        path_id: str | None = None,
        view: GraphView = "path",
        through_seq: int | None = None,
        compacted: bool = False,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> Page[MemoryEvent]:
        """The view's events (up to ``through_seq``) in seq order, a page at
        a time. With ``compacted``, the reading view: the events a
        compaction covers are left out, and the ``path.compacted`` event
        carrying the summary stands for them (the log keeps them all).

        Raises:
            StorageError: as :meth:`replay`; ``invalid`` for a bad cursor or
                limit.
        """
        ...

    def iterate_events(
        self,
        profile_id: str,
        *,
        path_id: str | None = None,
        view: GraphView = "path",
        through_seq: int | None = None,
        compacted: bool = False,
        batch_size: int = 5000,
    ) -> AsyncIterator[MemoryEvent]:
        """Every event :meth:`list_events` pages through, in seq order, read
        ``batch_size`` at a time. Errors are raised on the first iteration.

        Raises:
            StorageError: as :meth:`list_events`.
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
