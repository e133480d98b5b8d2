"""ArtifactStore over a RecordEngine: revisions, tombstones, relationships, changes."""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from keepstone.core.base import RecordContext, build, check_id, parse, review_gate, row
from keepstone.core.blobs import RecordBlobStore, verify_bytes
from keepstone.core.paging import check_limit, decode_cursor, encode_cursor
from keepstone.engine.spi import (
    Append,
    BlobPut,
    Check,
    CheckNone,
    Delete,
    In,
    Op,
    Put,
    WriteBatch,
)
from keepstone.engine.tables import (
    ARTIFACT_TEXT,
    ARTIFACTS,
    CHANGES,
    COLLECTIONS,
    RELATIONSHIPS,
    REVISIONS,
    RUNS,
)
from keepstone.errors import StorageError, not_found
from keepstone.schemas._base import canonical_json, sha256_digest
from keepstone.schemas.artifacts import (
    Artifact,
    ArtifactQuery,
    ArtifactRevision,
    ArtifactType,
    ChangeAction,
    ChangeRecord,
    Collection,
    Provenance,
    Relationship,
)
from keepstone.schemas.audit import ApprovalMarker, LifecycleAction
from keepstone.schemas.common import Page

TEXT_INDEX_LIMIT = 1 << 20
"""Text content up to this many bytes is full-text indexed."""

_RETRIES = 8


@dataclass
class _Content:
    digest: str
    size: int
    media_type: str
    blob: BlobPut | None
    text: str | None


def _is_text(media_type: str) -> bool:
    return media_type.startswith("text/") or media_type.split(";")[0].strip() in (
        "application/json",
        "application/jsonl",
        "application/x-ndjson",
        "application/xml",
        "application/yaml",
    )


class RecordArtifactStore:
    """Artifacts (see :class:`keepstone.ports.ArtifactStore`)."""

    def __init__(self, ctx: RecordContext, blobs: RecordBlobStore) -> None:
        self._ctx = ctx
        self._blobs = blobs

    # ------------------------------------------------------------------ collections

    async def create_collection(
        self, name: str, *, metadata: dict[str, Any] | None = None, id: str | None = None
    ) -> Collection:
        cid = self._ctx.new_id("col", id)
        coll = build(
            Collection,
            "collection",
            id=cid,
            name=name,
            metadata=metadata,
            created_at=self._ctx.now(),
        )
        if id is not None:
            existing = await self._ctx.load_optional(Collection, COLLECTIONS, cid)
            if existing is not None:
                if (existing.name, existing.metadata) == (coll.name, coll.metadata):
                    return existing
                raise StorageError(
                    "conflict", f"collection {cid} exists with different content", {"id": cid}
                )
        batch = WriteBatch(
            [
                CheckNone(
                    COLLECTIONS,
                    {"name": coll.name},
                    "conflict",
                    f"a collection named {coll.name!r} already exists",
                    {"name": coll.name},
                ),
                Put(COLLECTIONS, row(coll), expect="absent"),
            ]
        )
        self._ctx.audit(batch, "collection.create", cid, {"name": coll.name})
        await self._ctx.apply(batch)
        return coll

    async def get_collection(self, collection_id: str) -> Collection:
        return await self._ctx.load(
            Collection, COLLECTIONS, check_id(collection_id, "collection"), "collection"
        )

    async def get_collection_by_name(self, name: str) -> Collection:
        rows = await self._ctx.engine.find(COLLECTIONS, {"name": name}, limit=1)
        if not rows:
            raise StorageError(
                "not_found", f"no collection is named {name!r}", {"collection_name": name}
            )
        return parse(Collection, rows[0])

    async def list_collections(
        self, *, cursor: str | None = None, limit: int = 100
    ) -> Page[Collection]:
        return await self._ctx.page(
            Collection, COLLECTIONS, order=("name",), cursor=cursor, limit=limit
        )

    # ------------------------------------------------------------------ content

    async def _content(self, data: Any, media_type: str | None) -> _Content:
        if isinstance(data, str):
            try:
                raw = data.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise StorageError(
                    "invalid", f"artifact text is not valid Unicode ({exc.reason})", {}
                ) from exc
            media = media_type or "text/plain; charset=utf-8"
        elif isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            media = media_type or "application/octet-stream"
        elif isinstance(data, AsyncIterable):
            info = await self._blobs.put_stream(data)
            return _Content(
                info.digest, info.size, media_type or "application/octet-stream", None, None
            )
        else:
            raise StorageError(
                "invalid",
                f"artifact data must be bytes, str or an async iterable of bytes, "
                f"not {type(data).__name__}",
            )
        if len(raw) > self._ctx.limits.max_blob_bytes:
            raise StorageError(
                "invalid",
                f"artifact of {len(raw)} bytes exceeds the limit",
                {"size": len(raw), "limit": self._ctx.limits.max_blob_bytes},
            )
        text = None
        if _is_text(media) and len(raw) <= TEXT_INDEX_LIMIT:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        digest = sha256_digest(raw)
        return _Content(digest, len(raw), media, BlobPut(digest, raw), text)

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

    # ------------------------------------------------------------------ create / update / delete

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
        content = await self._content(data, media_type)
        return await self._write_new(probe, content, provenance)

    async def _write_new(
        self, probe: Artifact, content: _Content, provenance: Provenance | None
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
        content = await self._content(data, media_type or current.media_type)
        return await self._write_revision(
            current.id, content, metadata, provenance, expected_revision
        )

    async def _write_revision(
        self,
        artifact_id: str,
        content: _Content,
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

    # ------------------------------------------------------------------ reads

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
                    yield _jsonl_line(rec, count)
            else:
                for rec in records:
                    count += 1
                    yield _jsonl_line(rec, count)

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
                    yield _parse_jsonl(artifact_id, line, number)
        if pending.strip():
            yield _parse_jsonl(artifact_id, pending, number + 1)

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

    # ------------------------------------------------------------------ relationships

    async def relate(
        self,
        source_id: str,
        target_id: str,
        kind: str,
        *,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> Relationship:
        rel = build(
            Relationship,
            "relationship",
            id=self._ctx.new_id("rel", id),
            source_id=source_id,
            target_id=target_id,
            kind=kind,
            metadata=metadata,
            created_at=self._ctx.now(),
        )
        ops: list[Op] = [
            Check(
                ARTIFACTS,
                end,
                "integrity",
                f"relationship {role} {end} is not an existing artifact",
                equals={"deleted_at": None},
                details={role: end},
            )
            for role, end in (("source", rel.source_id), ("target", rel.target_id))
        ]
        ops += [
            CheckNone(
                RELATIONSHIPS,
                {"source_id": rel.source_id, "target_id": rel.target_id, "kind": rel.kind},
                "conflict",
                f"{rel.source_id} already has a {rel.kind!r} relationship to {rel.target_id}",
                {"source": rel.source_id, "target": rel.target_id, "kind": rel.kind},
            ),
            Put(RELATIONSHIPS, row(rel), expect="absent"),
            self._change("relate", artifact_id=rel.source_id, relationship_id=rel.id),
        ]
        batch = WriteBatch(ops)
        self._ctx.audit(
            batch,
            "artifact.relate",
            rel.id,
            {"source": rel.source_id, "target": rel.target_id, "kind": rel.kind},
        )
        await self._ctx.apply(batch)
        return rel

    async def unrelate(self, relationship_id: str) -> None:
        rel = await self.get_relationship(relationship_id)
        batch = WriteBatch(
            [
                Check(
                    RELATIONSHIPS,
                    rel.id,
                    "not_found",
                    f"relationship {rel.id} does not exist",
                    details={"relationship": rel.id},
                ),
                Delete(RELATIONSHIPS, rel.id),
                self._change("unrelate", artifact_id=rel.source_id, relationship_id=rel.id),
            ]
        )
        self._ctx.audit(batch, "artifact.unrelate", rel.id)
        await self._ctx.apply(batch)

    async def get_relationship(self, relationship_id: str) -> Relationship:
        return await self._ctx.load(
            Relationship, RELATIONSHIPS, check_id(relationship_id, "relationship"), "relationship"
        )

    async def relationships(
        self,
        artifact_id: str,
        *,
        direction: Literal["out", "in", "both"] = "both",
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Relationship]:
        art = await self.get(artifact_id)
        if direction not in ("out", "in", "both"):
            raise StorageError("invalid", "direction is 'out', 'in' or 'both'", {})
        check_limit(limit)
        after = decode_cursor(cursor, 1)
        columns = {"out": ["source_id"], "in": ["target_id"], "both": ["source_id", "target_id"]}
        streams = []
        for column in columns[direction]:
            where: dict[str, Any] = {column: art.id}
            if kind is not None:
                where["kind"] = kind
            streams.append(
                await self._ctx.engine.find(RELATIONSHIPS, where, after=after, limit=limit + 1)
            )
        merged: list[Relationship] = []
        for raw in heapq.merge(*streams, key=lambda r: orjson.loads(r)["id"]):
            rel = parse(Relationship, raw)
            if not merged or merged[-1].id != rel.id:
                merged.append(rel)
        more = len(merged) > limit
        items = merged[:limit]
        return Page[Relationship](
            items=items, next_cursor=encode_cursor((items[-1].id,)) if more else None
        )

    # ------------------------------------------------------------------ queries

    async def query(
        self, query: ArtifactQuery | None = None, *, cursor: str | None = None, limit: int = 100
    ) -> Page[Artifact]:
        q = query or ArtifactQuery()
        where: dict[str, Any] = {}
        for column in ("collection_id", "name", "type", "digest", "run_id"):
            value = getattr(q, column)
            if value is not None:
                where[column] = value
        if not q.include_deleted:
            where["deleted_at"] = None
        ids: set[str] | None = None
        if q.text is not None:
            if not q.text.strip():
                raise StorageError("invalid", "a text query needs at least one word", {})
            found = await self._ctx.engine.find(ARTIFACT_TEXT, text=q.text)
            ids = {orjson.loads(r)["id"] for r in found}
        if q.related_to is not None:
            rel_where: dict[str, Any] = {}
            if q.relationship_kind is not None:
                rel_where["kind"] = q.relationship_kind
            related: set[str] = set()
            for column, other in (("source_id", "target_id"), ("target_id", "source_id")):
                for raw in await self._ctx.engine.find(
                    RELATIONSHIPS, {**rel_where, column: q.related_to}
                ):
                    related.add(orjson.loads(raw)[other])
            ids = related if ids is None else ids & related
        if ids is not None:
            where["id"] = In(tuple(sorted(ids)))
        return await self._ctx.page(
            Artifact, ARTIFACTS, where=where, cursor=cursor, limit=limit, tags=q.metadata
        )

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

    async def changes(
        self, *, artifact_id: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[ChangeRecord]:
        where = {} if artifact_id is None else {"artifact_id": check_id(artifact_id, "artifact")}
        return await self._ctx.page(
            ChangeRecord, CHANGES, where=where, order=("seq",), cursor=cursor, limit=limit
        )


def _jsonl_line(record: Any, number: int) -> bytes:
    if not isinstance(record, dict):
        raise StorageError(
            "invalid",
            f"JSONL record {number} is a {type(record).__name__}, not a JSON object",
            {"record": number},
        )
    return canonical_json(record) + b"\n"


def _parse_jsonl(artifact_id: str, line: bytes, number: int) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise StorageError(
            "corrupt",
            f"line {number} of artifact {artifact_id} is not JSON",
            {"artifact": artifact_id, "line": number},
        ) from exc
    if not isinstance(value, dict):
        raise StorageError(
            "corrupt",
            f"line {number} of artifact {artifact_id} is not a JSON object",
            {"artifact": artifact_id, "line": number},
        )
    return value
