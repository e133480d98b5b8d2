"""Artifact writes: create, update (a new revision), delete (a tombstone), JSONL.

Updates and deletes are optimistic: the batch checks that the head is still
the revision that was read, and is rebuilt and retried when another writer
moved it, unless the caller named an ``expected_revision``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from keepstone.core.artifacts.common import ArtifactStoreBase
from keepstone.core.artifacts.content import Content, content_of, jsonl_line
from keepstone.core.base import build, create_once, parse, row, same_or_conflict
from keepstone.engine.spi import Check, CheckNone, Delete, Op, Put, WriteBatch
from keepstone.engine.tables import (
    ARTIFACT_TEXT,
    ARTIFACTS,
    COLLECTIONS,
    RELATIONSHIPS,
    REVISIONS,
    RUNS,
)
from keepstone.errors import StorageError
from keepstone.schemas.artifacts import (
    Artifact,
    ArtifactRevision,
    ArtifactType,
    Provenance,
    Relationship,
)

_RETRIES = 8


class ArtifactWrites(ArtifactStoreBase):
    """Writing artifacts and their revisions."""

    async def create(
        self,
        collection_id: str,
        name: str,
        data: Any,
        *,
        type: ArtifactType = "document",
        media_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        provenance: Provenance | None = None,
        id: str | None = None,
    ) -> Artifact:
        coll = await self.get_collection(collection_id)
        artifact_id = self._ctx.new_id("art", id)
        now = self._ctx.now()
        # Validate the record before storing any bytes.
        probe = build(
            Artifact,
            "artifact",
            id=artifact_id,
            collection_id=coll.id,
            name=name,
            type=type,
            metadata=metadata,
            revision=1,
            digest="sha256:" + "0" * 64,
            size=0,
            media_type=media_type or "application/octet-stream",
            created_at=now,
            updated_at=now,
        )
        content = await content_of(self._ctx, self._blobs, data, media_type)

        async def stored() -> Artifact | None:
            return await self._same_first_revision(probe, content, provenance)

        return await create_once(id, lambda: self._write_new(probe, content, provenance), stored)

    async def _same_first_revision(
        self, probe: Artifact, content: Content, provenance: Provenance | None
    ) -> Artifact | None:
        """The artifact stored under ``probe.id`` if it was created with this
        content (collection, name, type, and a first revision of these bytes,
        media type, metadata and provenance), ``None`` if there is none, else
        ``conflict``. It is returned as it stands now, later revisions included."""
        existing = await self._ctx.load_optional(Artifact, ARTIFACTS, probe.id)
        if existing is None:
            return None
        fields = ("collection_id", "name", "type")
        same_or_conflict(existing, probe, fields, "artifact", probe.id)
        first = await self._ctx.load_optional(ArtifactRevision, REVISIONS, f"{probe.id}:1")
        wanted = {
            "digest": content.digest,
            "size": content.size,
            "media_type": content.media_type,
            "metadata": probe.metadata,
            "provenance": provenance,
        }
        differ = [k for k, v in wanted.items() if first is None or getattr(first, k) != v]
        if differ:
            raise StorageError(
                "conflict",
                f"artifact {probe.id} already exists with different content ({', '.join(differ)})",
                {"id": probe.id, "fields": differ},
            )
        return existing

    async def _write_new(
        self, probe: Artifact, content: Content, provenance: Provenance | None
    ) -> Artifact:
        art = probe.model_copy(
            update={
                "digest": content.digest,
                "size": content.size,
                "media_type": content.media_type,
                "run_id": provenance.run_id if provenance else None,
            }
        )
        rev = build(
            ArtifactRevision,
            "revision",
            artifact_id=art.id,
            number=1,
            digest=content.digest,
            size=content.size,
            media_type=content.media_type,
            metadata=art.metadata,
            provenance=provenance,
            created_at=art.created_at,
        )
        ops: list[Op] = [
            *self._run_check(provenance),
            Check(
                ARTIFACTS,
                art.id,
                "conflict",
                f"artifact id {art.id} is already taken",
                exists=False,
                details={"artifact": art.id},
            ),
            Check(
                COLLECTIONS,
                art.collection_id,
                "not_found",
                f"collection {art.collection_id} does not exist",
                details={"collection": art.collection_id},
            ),
            CheckNone(
                ARTIFACTS,
                {"collection_id": art.collection_id, "name": art.name, "deleted_at": None},
                "conflict",
                f"an artifact named {art.name!r} already exists in collection {art.collection_id}",
                {"name": art.name, "collection": art.collection_id},
            ),
        ]
        if content.blob is not None:
            ops.append(content.blob)
        ops += [Put(ARTIFACTS, row(art), expect="absent"), Put(REVISIONS, row(rev))]
        if content.text is not None:
            ops.append(Put(ARTIFACT_TEXT, {"id": art.id, "text": content.text}))
        ops.append(
            self._change("create", artifact_id=art.id, revision=1, new_digest=content.digest)
        )
        batch = WriteBatch(ops)
        self._ctx.audit(
            batch, "artifact.create", art.id, {"name": art.name, "digest": content.digest}
        )
        await self._ctx.apply(batch)
        return art

    async def update(
        self,
        artifact_id: str,
        data: Any,
        *,
        media_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        provenance: Provenance | None = None,
        expected_revision: int | None = None,
    ) -> Artifact:
        current = await self.get(artifact_id)
        content = await content_of(self._ctx, self._blobs, data, media_type or current.media_type)
        return await self._write_revision(
            current.id, content, metadata, provenance, expected_revision
        )

    async def _write_revision(
        self,
        artifact_id: str,
        content: Content,
        metadata: dict[str, Any] | None,
        provenance: Provenance | None,
        expected_revision: int | None,
    ) -> Artifact:
        for _ in range(_RETRIES):
            art = await self.get(artifact_id)
            self._check_live(art, expected_revision)
            now = self._ctx.now()
            number = art.revision + 1
            new = build(
                Artifact,
                "artifact",
                **{
                    **art.model_dump(),
                    "revision": number,
                    "digest": content.digest,
                    "size": content.size,
                    "media_type": content.media_type,
                    "metadata": metadata if metadata is not None else art.metadata,
                    "updated_at": now,
                },
            )
            rev = build(
                ArtifactRevision,
                "revision",
                artifact_id=art.id,
                number=number,
                digest=content.digest,
                size=content.size,
                media_type=content.media_type,
                metadata=new.metadata,
                provenance=provenance,
                previous_digest=art.digest,
                created_at=now,
            )
            ops: list[Op] = [*self._run_check(provenance), self._head_check(art)]
            if content.blob is not None:
                ops.append(content.blob)
            ops += [Put(ARTIFACTS, row(new)), Put(REVISIONS, row(rev), expect="absent")]
            if content.text is not None:
                ops.append(Put(ARTIFACT_TEXT, {"id": art.id, "text": content.text}))
            else:
                ops.append(Delete(ARTIFACT_TEXT, art.id))
            ops.append(
                self._change(
                    "update",
                    artifact_id=art.id,
                    revision=number,
                    old_digest=art.digest,
                    new_digest=content.digest,
                )
            )
            batch = WriteBatch(ops)
            self._ctx.audit(
                batch,
                "artifact.update",
                art.id,
                {"revision": number, "old_digest": art.digest, "new_digest": content.digest},
            )
            if await self._apply_or_retry(batch, expected_revision):
                return new
        raise StorageError("conflict", f"artifact {artifact_id} is changing too fast", {})

    async def delete(
        self, artifact_id: str, *, expected_revision: int | None = None, reason: str | None = None
    ) -> Artifact:
        for _ in range(_RETRIES):
            art = await self.get(artifact_id)
            self._check_live(art, expected_revision)
            now = self._ctx.now()
            dead = art.model_copy(update={"deleted_at": now, "updated_at": now})
            rels = [
                *await self._ctx.engine.find(RELATIONSHIPS, {"source_id": art.id}),
                *await self._ctx.engine.find(RELATIONSHIPS, {"target_id": art.id}),
            ]
            ops: list[Op] = [self._head_check(art), Put(ARTIFACTS, row(dead))]
            seen: set[str] = set()
            for raw in rels:
                rel = parse(Relationship, raw)
                if rel.id in seen:
                    continue
                seen.add(rel.id)
                ops += [
                    Delete(RELATIONSHIPS, rel.id),
                    self._change(
                        "unrelate",
                        artifact_id=art.id,
                        relationship_id=rel.id,
                        details={"because": "artifact deleted"},
                    ),
                ]
            for column in ("source_id", "target_id"):
                ops.append(
                    CheckNone(
                        RELATIONSHIPS,
                        {column: art.id},
                        "conflict",
                        f"artifact {art.id} gained a relationship concurrently",
                        {"artifact": art.id, "retry": True},
                    )
                )
            ops += [
                Delete(ARTIFACT_TEXT, art.id),
                self._change(
                    "delete",
                    artifact_id=art.id,
                    revision=art.revision,
                    old_digest=art.digest,
                    details={"reason": reason} if reason is not None else None,
                ),
            ]
            batch = WriteBatch(ops)
            self._ctx.audit(
                batch, "artifact.delete", art.id, {"reason": reason, "relationships": len(seen)}
            )
            if await self._apply_or_retry(batch, expected_revision):
                return dead
        raise StorageError("conflict", f"artifact {artifact_id} is changing too fast", {})

    async def write_jsonl(
        self,
        collection_id: str,
        name: str,
        records: Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]],
        *,
        type: ArtifactType = "intermediate_jsonl",
        metadata: dict[str, Any] | None = None,
        provenance: Provenance | None = None,
    ) -> Artifact:
        coll = await self.get_collection(collection_id)

        async def lines() -> AsyncIterator[bytes]:
            count = 0
            if isinstance(records, AsyncIterable):
                async for rec in records:
                    count += 1
                    yield jsonl_line(rec, count)
            else:
                for rec in records:
                    count += 1
                    yield jsonl_line(rec, count)

        try:
            existing: Artifact | None = await self.get_by_name(coll.id, name)
        except StorageError as exc:
            if exc.code != "not_found":
                raise
            existing = None
        if existing is None:
            return await self.create(
                coll.id,
                name,
                lines(),
                type=type,
                media_type="application/jsonl",
                metadata=metadata,
                provenance=provenance,
            )
        return await self.update(
            existing.id,
            lines(),
            media_type="application/jsonl",
            metadata=metadata,
            provenance=provenance,
        )

    @staticmethod
    def _run_check(provenance: Provenance | None) -> list[Op]:
        if provenance is None or provenance.run_id is None:
            return []
        return [
            Check(
                RUNS,
                provenance.run_id,
                "integrity",
                f"provenance names run {provenance.run_id}, which does not exist",
                details={"run": provenance.run_id},
            )
        ]

    def _check_live(self, art: Artifact, expected_revision: int | None) -> None:
        if art.deleted_at is not None:
            raise StorageError(
                "conflict", f"artifact {art.id} has been deleted", {"artifact": art.id}
            )
        if expected_revision is not None and art.revision != expected_revision:
            raise StorageError(
                "conflict",
                f"artifact {art.id} is at revision {art.revision}, not {expected_revision}",
                {
                    "artifact": art.id,
                    "revision": art.revision,
                    "expected_revision": expected_revision,
                },
            )

    @staticmethod
    def _head_check(art: Artifact) -> Check:
        return Check(
            ARTIFACTS,
            art.id,
            "conflict",
            f"artifact {art.id} changed concurrently",
            equals={"revision": art.revision, "deleted_at": None},
            details={"artifact": art.id, "retry": True},
        )

    async def _apply_or_retry(self, batch: WriteBatch, expected_revision: int | None) -> bool:
        try:
            await self._ctx.apply(batch)
        except StorageError as exc:
            if exc.details.get("retry"):
                if expected_revision is None:
                    return False
                raise StorageError(
                    "conflict", exc.message, {k: v for k, v in exc.details.items() if k != "retry"}
                ) from exc
            raise
        return True
