"""Revisions: the history of an artifact, the bytes of each, purging old ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from keepstone.core.artifacts.common import ArtifactStoreBase
from keepstone.core.artifacts.content import parse_jsonl_line
from keepstone.core.base import parse, review_gate, row
from keepstone.core.blobs import verify_bytes
from keepstone.core.paging import Listing
from keepstone.engine.spi import Check, Put, WriteBatch
from keepstone.engine.tables import REVISIONS
from keepstone.errors import StorageError
from keepstone.schemas.artifacts import ArtifactRevision
from keepstone.schemas.audit import ApprovalMarker, LifecycleAction
from keepstone.schemas.common import Page


class ArtifactRevisions(ArtifactStoreBase):
    """Listing revisions, reading their bytes, purging them."""

    async def revisions(
        self, artifact_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[ArtifactRevision]:
        art = await self.get(artifact_id)
        return await self._ctx.page(
            ArtifactRevision,
            REVISIONS,
            where={"artifact_id": art.id},
            order=("number",),
            cursor=cursor,
            limit=limit,
            listing=Listing("artifacts.revisions", art.id),
        )

    async def _revision_for_read(self, artifact_id: str, revision: int | None) -> ArtifactRevision:
        art = await self.get(artifact_id)
        rev = await self.get_revision(art.id, revision or art.revision)
        if rev.purged:
            raise StorageError(
                "not_found",
                f"the bytes of revision {rev.number} of artifact {art.id} were purged",
                {"artifact": art.id, "revision": rev.number, "purged": True},
            )
        return rev

    async def read(
        self, artifact_id: str, *, revision: int | None = None, verify: bool = True
    ) -> bytes:
        rev = await self._revision_for_read(artifact_id, revision)
        data = await self._ctx.engine.blob_get(rev.digest)
        if data is None:
            raise StorageError(
                "corrupt",
                f"the bytes of artifact {rev.artifact_id} revision {rev.number} are missing",
                {"artifact": rev.artifact_id, "revision": rev.number, "digest": rev.digest},
            )
        return verify_bytes(rev.digest, data) if verify else data

    async def read_stream(
        self, artifact_id: str, *, revision: int | None = None
    ) -> AsyncIterator[bytes]:
        rev = await self._revision_for_read(artifact_id, revision)
        async for chunk in self._blobs.stream(rev.digest):
            yield chunk

    async def read_jsonl(
        self, artifact_id: str, *, revision: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        pending = b""
        number = 0
        async for chunk in self.read_stream(artifact_id, revision=revision):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                number += 1
                if line.strip():
                    yield parse_jsonl_line(artifact_id, line, number)
        if pending.strip():
            yield parse_jsonl_line(artifact_id, pending, number + 1)

    async def purge_revision(
        self, artifact_id: str, number: int, *, approval: ApprovalMarker | None = None
    ) -> ArtifactRevision:
        art = await self.get(artifact_id)
        rev = await self.get_revision(art.id, number)
        action = LifecycleAction(
            kind="purge_artifact", target=f"{art.id}#{number}", params={"digest": rev.digest}
        )
        await review_gate(self._ctx, action, approval, None)
        if art.deleted_at is None and art.revision == number:
            raise StorageError(
                "conflict",
                f"revision {number} is the head of live artifact {art.id}; "
                "update or delete the artifact before purging it",
                {"artifact": art.id, "revision": number},
            )
        if rev.purged:
            return rev
        purged = rev.model_copy(update={"purged": True})
        batch = WriteBatch(
            [
                Check(
                    REVISIONS,
                    f"{art.id}:{number}",
                    "conflict",
                    f"revision {number} of {art.id} changed concurrently",
                    equals={"purged": False},
                ),
                Put(REVISIONS, row(purged)),
                self._change("purge", artifact_id=art.id, revision=number, old_digest=rev.digest),
            ]
        )
        self._ctx.audit(
            batch,
            "lifecycle.purge_artifact",
            f"{art.id}#{number}",
            {"digest": rev.digest},
            approval=approval,
        )
        await self._ctx.apply(batch)
        users = [
            r
            for r in await self._ctx.engine.find(REVISIONS, {"digest": rev.digest})
            if not parse(ArtifactRevision, r).purged
        ]
        if not users:
            await self._ctx.engine.blob_delete(rev.digest)
        return purged
