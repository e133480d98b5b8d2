"""What every part of the artifact store shares: its dependencies, the lookups
by id and by name, and the change record each write appends."""

from __future__ import annotations

from typing import Any

from keepstone.core.base import RecordContext, check_id, parse, row
from keepstone.core.blobs import RecordBlobStore
from keepstone.engine.spi import Append
from keepstone.engine.tables import ARTIFACTS, CHANGES, COLLECTIONS, REVISIONS
from keepstone.errors import StorageError, not_found
from keepstone.schemas.artifacts import (
    Artifact,
    ArtifactRevision,
    ChangeAction,
    ChangeRecord,
    Collection,
)


class ArtifactStoreBase:
    """The state and lookups the artifact store's parts build on."""

    def __init__(self, ctx: RecordContext, blobs: RecordBlobStore) -> None:
        self._ctx = ctx
        self._blobs = blobs

    async def get(self, artifact_id: str) -> Artifact:
        return await self._ctx.load(
            Artifact, ARTIFACTS, check_id(artifact_id, "artifact"), "artifact"
        )

    async def get_by_name(self, collection_id: str, name: str) -> Artifact:
        rows = await self._ctx.engine.find(
            ARTIFACTS,
            {
                "collection_id": check_id(collection_id, "collection"),
                "name": name,
                "deleted_at": None,
            },
            limit=1,
        )
        if not rows:
            raise StorageError(
                "not_found",
                f"no artifact is named {name!r} in collection {collection_id}",
                {"collection": collection_id, "name": name},
            )
        return parse(Artifact, rows[0])

    async def get_collection(self, collection_id: str) -> Collection:
        return await self._ctx.load(
            Collection, COLLECTIONS, check_id(collection_id, "collection"), "collection"
        )

    async def get_revision(self, artifact_id: str, number: int) -> ArtifactRevision:
        check_id(artifact_id, "artifact")
        raw = await self._ctx.engine.get(REVISIONS, f"{artifact_id}:{number}")
        if raw is None:
            if await self._ctx.engine.get(ARTIFACTS, artifact_id) is None:
                raise not_found("artifact", artifact_id)
            raise StorageError(
                "not_found",
                f"artifact {artifact_id} has no revision {number}",
                {"artifact": artifact_id, "revision": number},
            )
        return parse(ArtifactRevision, raw)

    def _change(
        self,
        action: ChangeAction,
        *,
        artifact_id: str | None = None,
        relationship_id: str | None = None,
        revision: int | None = None,
        old_digest: str | None = None,
        new_digest: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Append:
        record = ChangeRecord(
            id=self._ctx.new_id("chg"),
            action=action,
            artifact_id=artifact_id,
            relationship_id=relationship_id,
            revision=revision,
            old_digest=old_digest,
            new_digest=new_digest,
            actor=self._ctx.who(),
            at=self._ctx.now(),
            details=details,
        )
        return Append(CHANGES, row(record))
