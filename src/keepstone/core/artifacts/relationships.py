"""Relationships: typed links between live artifacts."""

from __future__ import annotations

import heapq
from typing import Any, Literal

import orjson

from keepstone.core.artifacts.common import ArtifactStoreBase
from keepstone.core.base import build, check_id, create_once, parse, row, same_or_conflict
from keepstone.core.paging import (
    Listing,
    check_limit,
    decode_cursor,
    encode_cursor,
    listing_binding,
)
from keepstone.engine.spi import Check, CheckNone, Delete, Op, Put, WriteBatch
from keepstone.engine.tables import ARTIFACTS, RELATIONSHIPS
from keepstone.errors import StorageError
from keepstone.schemas.artifacts import Relationship
from keepstone.schemas.common import Page


class Relationships(ArtifactStoreBase):
    """Relating and unrelating artifacts, and listing an artifact's links."""

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

        async def write() -> Relationship:
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

        async def stored() -> Relationship | None:
            existing = await self._ctx.load_optional(Relationship, RELATIONSHIPS, rel.id)
            if existing is None:
                return None
            fields = ("source_id", "target_id", "kind", "metadata")
            return same_or_conflict(existing, rel, fields, "relationship", rel.id)

        return await create_once(id, write, stored)

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
        listing = Listing("artifacts.relationships", [art.id, direction, kind])
        binding = listing_binding(listing, RELATIONSHIPS.name, ())
        after = decode_cursor(cursor, binding, ("str",))
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
            items=items, next_cursor=encode_cursor(binding, (items[-1].id,)) if more else None
        )
