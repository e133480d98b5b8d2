"""The manifest of an exported store snapshot."""

from __future__ import annotations

from pydantic import Field

from keepstone.schemas._base import Digest, Model, Record, UtcDatetime
from keepstone.schemas.memory import MemoryEdge, MemoryNode, MemoryPath, Profile

SNAPSHOT_FORMAT = "keepstone-snapshot"
GRAPH_FORMAT = "keepstone-graph"


class SnapshotPart(Model):
    """One file of a snapshot: its record count, size and digest."""

    path: str
    records: int = Field(ge=0)
    bytes: int = Field(ge=0)
    digest: Digest


class SnapshotManifest(Record):
    """``manifest.json`` of a snapshot: what it holds and how to check it."""

    format: str = SNAPSHOT_FORMAT
    keepstone_version: str
    created_at: UtcDatetime
    counts: dict[str, int]
    parts: list[SnapshotPart]
    blobs: int = Field(ge=0)
    counters: dict[str, int] = Field(default_factory=dict)
    """The last seq each ``seq`` table assigned (``audit``, ``changes``,
    ``events``, ``log_lines``), which after a purge is above the highest seq
    its part holds: an import sets them, so the copy numbers its next rows as
    the source would. Empty in snapshots made before keepstone recorded them
    (the import then takes the highest seq of each part)."""


class GraphEnvelope(Record):
    """One profile's graph alone (profile, nodes, edges, paths), versioned."""

    format: str = GRAPH_FORMAT
    exported_at: UtcDatetime
    profile: Profile
    nodes: list[MemoryNode]
    edges: list[MemoryEdge]
    paths: list[MemoryPath]
