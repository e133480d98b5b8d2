"""Queries over artifacts: by fields, metadata, full text and relationships;
and the change feed."""

from __future__ import annotations

from typing import Any

import orjson

from keepstone.core.artifacts.common import ArtifactStoreBase
from keepstone.core.base import check_id
from keepstone.core.paging import Listing
from keepstone.engine.spi import In
from keepstone.engine.tables import ARTIFACT_TEXT, ARTIFACTS, CHANGES, RELATIONSHIPS
from keepstone.errors import StorageError
from keepstone.schemas.artifacts import Artifact, ArtifactQuery, ChangeRecord
from keepstone.schemas.common import Page


class ArtifactQueries(ArtifactStoreBase):
    """Finding artifacts and reading the change feed."""

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
            Artifact,
            ARTIFACTS,
            where=where,
            cursor=cursor,
            limit=limit,
            tags=q.metadata,
            listing=Listing("artifacts.query", q),
        )

    async def changes(
        self, *, artifact_id: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[ChangeRecord]:
        where = {} if artifact_id is None else {"artifact_id": check_id(artifact_id, "artifact")}
        return await self._ctx.page(
            ChangeRecord,
            CHANGES,
            where=where,
            order=("seq",),
            cursor=cursor,
            limit=limit,
            listing=Listing("artifacts.changes", artifact_id),
        )
