"""The manifest of an exported store snapshot."""

from __future__ import annotations

from pydantic import Field

from keepstone.schemas._base import Digest, Model, Record, UtcDatetime

SNAPSHOT_FORMAT = "keepstone-snapshot"


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
