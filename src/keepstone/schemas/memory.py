"""Memory: profiles, nodes, edges, paths, events, activation plans, graphs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from keepstone.schemas._base import Id, JsonObject, Model, Name, Record, UtcDatetime

LifecycleKind = Literal[
    "compact_path",
    "abandon_path",
    "forget_node",
    "purge_artifact",
    "apply_retention",
    "repair",
    "gc_blobs",
]

PathStatus = Literal["active", "merged", "abandoned"]

GraphView = Literal["path", "all"]
"""What a memory read covers (see :meth:`keepstone.ports.MemoryStore.graph`):
``"path"``, what one path of the conversation sees (by default the profile's
main path); ``"all"``, every event of the profile, whatever its path."""

GRAPH_VIEWS: tuple[GraphView, ...] = ("path", "all")


class ProfilePolicy(Model):
    """A profile's review policy.

    ``review_required`` lists the lifecycle actions that need an approval
    marker; ``None`` means keepstone's defaults (every lifecycle action).
    """

    review_required: list[LifecycleKind] | None = None


class Profile(Record):
    """An agent or user whose memory graph keepstone keeps."""

    id: Id
    name: Name
    attributes: JsonObject | None = None
    policy: ProfilePolicy | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class MemoryNode(Record):
    """A node of a profile's memory graph."""

    id: Id
    profile_id: Id
    kind: Name
    content: str | None = None
    attributes: JsonObject | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class MemoryEdge(Record):
    """A typed, directed edge between two nodes of the same profile."""

    id: Id
    profile_id: Id
    source_id: Id
    target_id: Id
    kind: Name
    attributes: JsonObject | None = None
    created_at: UtcDatetime


class MemoryPath(Record):
    """A branch of a conversation.

    ``fork_seq`` is the event sequence number of the parent path at which
    this path branched off (``None`` for a root path).
    """

    id: Id
    profile_id: Id
    name: str | None = None
    parent_path_id: Id | None = None
    fork_seq: int | None = None
    status: PathStatus = "active"
    merged_into: Id | None = None
    merged_at_seq: int | None = None
    abandoned_reason: str | None = None
    compacted_through_seq: int | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime


# --------------------------------------------------------------------------- events


class ProfileCreated(Model):
    kind: Literal["profile.created"] = "profile.created"
    name: Name
    attributes: JsonObject | None = None
    policy: ProfilePolicy | None = None


class ProfileUpdated(Model):
    kind: Literal["profile.updated"] = "profile.updated"
    name: Name
    attributes: JsonObject | None = None
    policy: ProfilePolicy | None = None


class NodePut(Model):
    kind: Literal["node.put"] = "node.put"
    node_id: Id
    node_kind: Name
    content: str | None = None
    attributes: JsonObject | None = None


class NodeForgotten(Model):
    kind: Literal["node.forgotten"] = "node.forgotten"
    node_id: Id
    reason: str | None = None


class EdgePut(Model):
    kind: Literal["edge.put"] = "edge.put"
    edge_id: Id
    source_id: Id
    target_id: Id
    edge_kind: Name
    attributes: JsonObject | None = None


class EdgeRemoved(Model):
    kind: Literal["edge.removed"] = "edge.removed"
    edge_id: Id
    reason: str | None = None


class PathCreated(Model):
    kind: Literal["path.created"] = "path.created"
    path_id: Id
    name: str | None = None
    parent_path_id: Id | None = None
    fork_seq: int | None = None


class PathMerged(Model):
    kind: Literal["path.merged"] = "path.merged"
    path_id: Id
    into_path_id: Id
    at_seq: int | None = None


class PathAbandoned(Model):
    kind: Literal["path.abandoned"] = "path.abandoned"
    path_id: Id
    reason: str


class PathCompacted(Model):
    kind: Literal["path.compacted"] = "path.compacted"
    path_id: Id
    from_seq: int
    through_seq: int
    summary: str
    summary_node_id: Id | None = None


class CustomEvent(Model):
    """An application event keepstone stores but does not interpret."""

    kind: Literal["custom"] = "custom"
    name: Name
    data: JsonObject | None = None


EventPayload = Annotated[
    ProfileCreated
    | ProfileUpdated
    | NodePut
    | NodeForgotten
    | EdgePut
    | EdgeRemoved
    | PathCreated
    | PathMerged
    | PathAbandoned
    | PathCompacted
    | CustomEvent,
    Field(discriminator="kind"),
]

EVENT_KINDS: tuple[str, ...] = (
    "profile.created",
    "profile.updated",
    "node.put",
    "node.forgotten",
    "edge.put",
    "edge.removed",
    "path.created",
    "path.merged",
    "path.abandoned",
    "path.compacted",
    "custom",
)


class MemoryEvent(Record):
    """An entry of the append-only event log.

    ``seq`` is assigned by the log on append (strictly increasing); leave it
    ``None`` when writing. Re-appending the same ``id`` with the same content
    is a no-op; with different content it is a ``conflict``.
    """

    id: Id
    seq: int | None = None
    profile_id: Id
    path_id: Id | None = None
    at: UtcDatetime
    actor: str | None = None
    payload: EventPayload

    @property
    def kind(self) -> str:
        """The payload's kind (``"node.put"``, ``"path.merged"``, ...)."""
        return self.payload.kind


class EventQuery(Model):
    """Filters for listing events; ``after_seq``/``through_seq`` bound the range."""

    profile_id: Id | None = None
    path_id: Id | None = None
    kinds: list[str] | None = None
    after_seq: int | None = Field(default=None, ge=0)
    through_seq: int | None = Field(default=None, ge=0)


class ActivationItem(Model):
    """One node a plan activates, and why."""

    node_id: Id
    reason: str | None = None
    score: float | None = None


class ActivationPlan(Record):
    """Which nodes a profile activates for a path or a context."""

    id: Id
    profile_id: Id
    path_id: Id | None = None
    context_id: str | None = None
    items: list[ActivationItem]
    planner: str | None = None
    created_at: UtcDatetime


class GraphSnapshot(Model):
    """A profile's graph at one point, in deterministic order (by id).

    Two snapshots of the same state serialise to identical bytes.
    """

    profile_id: Id
    profile: Profile | None = None
    nodes: list[MemoryNode]
    edges: list[MemoryEdge]
    paths: list[MemoryPath]
    through_seq: int = 0
