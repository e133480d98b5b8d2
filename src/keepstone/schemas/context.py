"""Context packages and external memory references."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from keepstone.schemas._base import Id, JsonObject, Model, Name, Record, UtcDatetime

ReferenceKind = Literal["artifact", "revision", "relationship", "run", "external"]


class ContextReference(Model):
    """A reference held by a context package.

    ``revision`` applies to ``kind="revision"`` (the artifact's revision
    number); ``id`` is the artifact, relationship, run or external id.
    """

    kind: ReferenceKind
    id: Id
    revision: int | None = Field(default=None, ge=1)
    note: str | None = None


class ExternalMemoryRef(Record):
    """An opaque pointer into another memory system, tagged with provenance."""

    id: Id
    system: Name
    ref: str = Field(min_length=1, max_length=4096)
    provenance: JsonObject
    metadata: JsonObject | None = None
    created_at: UtcDatetime


class ContextPackage(Record):
    """A named set of references handed to an agent or a step as context."""

    id: Id
    name: Name
    references: list[ContextReference]
    metadata: JsonObject | None = None
    created_at: UtcDatetime


class ResolvedContext(Model):
    """A package with its references split into those that exist and dangle."""

    package: ContextPackage
    found: list[ContextReference]
    dangling: list[ContextReference]
