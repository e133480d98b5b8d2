"""Artifacts: collections, immutable revisions, relationships, change records."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from keepstone.schemas._base import Digest, Id, JsonObject, Model, Name, Record, UtcDatetime

ArtifactType = Literal[
    "phase_output",
    "intermediate_jsonl",
    "qa_report",
    "export",
    "document",
    "knowledge",
    "dataset",
    "snapshot",
    "other",
]
"""The artifact taxonomy."""

ChangeAction = Literal["create", "update", "delete", "relate", "unrelate", "purge"]


class BlobInfo(Model):
    """A stored blob: its digest and size in bytes."""

    digest: Digest
    size: int = Field(ge=0)


class Collection(Record):
    """A named group of artifacts."""

    id: Id
    name: Name
    metadata: JsonObject | None = None
    created_at: UtcDatetime


class Provenance(Model):
    """Who made a revision: the run and step, and the producing component."""

    run_id: Id | None = None
    step: str | None = None
    producer: str | None = None


class ArtifactRevision(Record):
    """One immutable version of an artifact's content."""

    artifact_id: Id
    number: int = Field(ge=1)
    digest: Digest
    size: int = Field(ge=0)
    media_type: str
    metadata: JsonObject | None = None
    provenance: Provenance | None = None
    previous_digest: Digest | None = None
    created_at: UtcDatetime
    purged: bool = False


class Artifact(Record):
    """A named artifact: metadata plus a pointer to its head revision.

    ``revision`` is the head revision's number; pass it as
    ``expected_revision`` to update only if nobody else did.
    ``deleted_at`` is set once the artifact is deleted (a tombstone).
    """

    id: Id
    collection_id: Id
    name: Name
    type: ArtifactType
    metadata: JsonObject | None = None
    revision: int = Field(ge=1)
    digest: Digest
    size: int = Field(ge=0)
    media_type: str
    run_id: Id | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    deleted_at: UtcDatetime | None = None


class ArtifactRef(Model):
    """A reference to an artifact, optionally pinned to a revision or digest."""

    artifact_id: Id
    revision: int | None = Field(default=None, ge=1)
    digest: Digest | None = None


class Relationship(Record):
    """A typed edge between two existing artifacts."""

    id: Id
    source_id: Id
    target_id: Id
    kind: Name
    metadata: JsonObject | None = None
    created_at: UtcDatetime


class ChangeRecord(Record):
    """What changed an artifact or relationship: old and new digest."""

    seq: int = 0
    id: Id
    action: ChangeAction
    artifact_id: Id | None = None
    relationship_id: Id | None = None
    revision: int | None = None
    old_digest: Digest | None = None
    new_digest: Digest | None = None
    actor: str
    at: UtcDatetime
    details: JsonObject | None = None


class ArtifactQuery(Model):
    """Filters for finding artifacts; every field given must match.

    ``metadata`` matches top-level keys by equality. ``text`` is a full-text
    query over text content (words, all must appear). ``related_to`` finds
    artifacts with a relationship to or from the given artifact. Deleted
    artifacts are left out unless ``include_deleted``.
    """

    collection_id: Id | None = None
    name: str | None = None
    type: ArtifactType | None = None
    digest: Digest | None = None
    metadata: JsonObject | None = None
    text: str | None = None
    run_id: Id | None = None
    related_to: Id | None = None
    relationship_kind: str | None = None
    include_deleted: bool = False
