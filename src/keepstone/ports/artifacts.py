"""ArtifactStore: collections, artifacts, revisions, relationships, changes."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, Literal, Protocol

from keepstone.schemas.artifacts import (
    Artifact,
    ArtifactQuery,
    ArtifactRevision,
    ArtifactType,
    ChangeRecord,
    Collection,
    Provenance,
    Relationship,
)
from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page

ArtifactData = bytes | str | AsyncIterable[bytes]
"""Content: bytes, text (stored as UTF-8), or an async stream of byte chunks."""

JsonlRecords = Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]]


class ArtifactStore(Protocol):
    """Named, revised, content-addressed artifacts.

    Every create, update, delete, relate and unrelate writes a
    :class:`ChangeRecord` and an audit record in the same transaction.
    Deleting an artifact leaves a tombstone (``deleted_at``), removes its
    relationships (each with an ``unrelate`` change), frees its name and drops
    it from queries; its revisions and bytes stay readable by id.
    """

    async def create_collection(
        self, name: str, *, metadata: dict[str, Any] | None = None, id: str | None = None
    ) -> Collection:
        """Create a collection with a unique name.

        With your own ``id``, creating it again with the same name and
        metadata returns it and writes nothing, also when the creates race
        (in one process or several).

        Raises:
            StorageError: ``conflict`` if the name is taken or ``id`` exists
                with other content (same id and content returns it);
                ``invalid`` for a bad name, id or metadata.
        """
        ...

    async def get_collection(self, collection_id: str) -> Collection:
        """Raises: StorageError ``not_found``."""
        ...

    async def get_collection_by_name(self, name: str) -> Collection:
        """Raises: StorageError ``not_found``."""
        ...

    async def list_collections(
        self, *, cursor: str | None = None, limit: int = 100
    ) -> Page[Collection]:
        """Collections by name. Raises: StorageError ``invalid`` cursor."""
        ...

    async def create(
        self,
        collection_id: str,
        name: str,
        data: ArtifactData,
        *,
        type: ArtifactType = "document",
        media_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        provenance: Provenance | None = None,
        id: str | None = None,
    ) -> Artifact:
        """Create an artifact with its first revision.

        Args:
            media_type: defaults to ``text/plain; charset=utf-8`` for ``str``
                data and ``application/octet-stream`` otherwise.
            provenance: the run and step that made it; links the artifact to
                the run's outputs.
            id: your own id; creating it again with the same collection,
                name, type, bytes, media type, metadata and provenance
                returns the artifact as it stands now (later revisions
                included) and writes nothing, also when the creates race.

        Raises:
            StorageError: ``not_found`` for an unknown collection; ``conflict``
                if the name is taken in the collection or ``id`` exists with
                other content;
                ``integrity`` if ``provenance.run_id`` names no run;
                ``invalid`` for a bad name, type or metadata.
        """
        ...

    async def update(
        self,
        artifact_id: str,
        data: ArtifactData,
        *,
        media_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        provenance: Provenance | None = None,
        expected_revision: int | None = None,
    ) -> Artifact:
        """Append a revision with new content (and metadata, if given).

        Raises:
            StorageError: ``not_found``; ``conflict`` if deleted or
                ``expected_revision`` is not the head; ``integrity`` for an
                unknown provenance run.
        """
        ...

    async def delete(
        self, artifact_id: str, *, expected_revision: int | None = None, reason: str | None = None
    ) -> Artifact:
        """Tombstone an artifact (see the class docstring).

        Raises:
            StorageError: ``not_found``; ``conflict`` if already deleted or
                ``expected_revision`` moved.
        """
        ...

    async def get(self, artifact_id: str) -> Artifact:
        """The artifact, tombstoned or not. Raises: StorageError ``not_found``."""
        ...

    async def get_by_name(self, collection_id: str, name: str) -> Artifact:
        """The live artifact called ``name``. Raises: StorageError ``not_found``."""
        ...

    async def read(
        self, artifact_id: str, *, revision: int | None = None, verify: bool = True
    ) -> bytes:
        """Content of the head (or of ``revision``).

        Raises:
            StorageError: ``not_found`` (artifact, revision, or purged bytes);
                ``corrupt`` if ``verify`` and the bytes do not match.
        """
        ...

    def read_stream(self, artifact_id: str, *, revision: int | None = None) -> AsyncIterator[bytes]:
        """Content in chunks, verified at the end. Raises as :meth:`read`."""
        ...

    async def write_jsonl(
        self,
        collection_id: str,
        name: str,
        records: JsonlRecords,
        *,
        type: ArtifactType = "intermediate_jsonl",
        metadata: dict[str, Any] | None = None,
        provenance: Provenance | None = None,
    ) -> Artifact:
        """Write records as a JSONL artifact, streaming (constant memory):
        creates the artifact, or appends a revision if the name exists.

        Raises:
            StorageError: ``invalid`` if a record is not a JSON object;
                otherwise as :meth:`create` and :meth:`update`.
        """
        ...

    def read_jsonl(
        self, artifact_id: str, *, revision: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The records of a JSONL artifact, streaming.

        Raises:
            StorageError: ``not_found``; ``corrupt`` for a malformed line
                (details: ``line``).
        """
        ...

    async def revisions(
        self, artifact_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[ArtifactRevision]:
        """Revisions oldest first. Raises: StorageError ``not_found``."""
        ...

    async def get_revision(self, artifact_id: str, number: int) -> ArtifactRevision:
        """Raises: StorageError ``not_found``."""
        ...

    async def relate(
        self,
        source_id: str,
        target_id: str,
        kind: str,
        *,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Relationship:
        """Add a typed relationship between two live artifacts.

        With your own ``id``, relating the same source, target, kind and
        metadata again returns the relationship and writes nothing, also
        when the calls race.

        Raises:
            StorageError: ``integrity`` if an endpoint does not exist or is
                deleted; ``conflict`` if the same (source, target, kind)
                exists under another id or ``id`` exists with other content;
                ``invalid`` for a bad kind.
        """
        ...

    async def unrelate(self, relationship_id: str) -> None:
        """Remove a relationship. Raises: StorageError ``not_found``."""
        ...

    async def get_relationship(self, relationship_id: str) -> Relationship:
        """Raises: StorageError ``not_found``."""
        ...

    async def relationships(
        self,
        artifact_id: str,
        *,
        direction: Literal["out", "in", "both"] = "both",
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Relationship]:
        """Relationships of an artifact, by id.

        Raises:
            StorageError: ``not_found`` for an unknown artifact; ``invalid``.
        """
        ...

    async def query(
        self, query: ArtifactQuery | None = None, *, cursor: str | None = None, limit: int = 100
    ) -> Page[Artifact]:
        """Artifacts matching every filter of ``query``, by id (creation order).

        Raises:
            StorageError: ``invalid`` for a bad query, cursor or limit.
        """
        ...

    async def purge_revision(
        self, artifact_id: str, number: int, *, approval: ApprovalMarker | None = None
    ) -> ArtifactRevision:
        """Remove the bytes of one revision (a lifecycle action: review-gated).

        The revision record stays, marked ``purged``, with a ``purge`` change
        record; the blob is deleted unless another revision still uses it.

        Raises:
            StorageError: ``review_required`` (audited as denied) without an
                approval; ``not_found``; ``conflict`` for the head revision of
                a live artifact (update or delete the artifact first).
        """
        ...

    async def changes(
        self, *, artifact_id: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[ChangeRecord]:
        """Change records in commit order, optionally for one artifact.

        Raises:
            StorageError: ``invalid`` for a bad cursor or limit.
        """
        ...
