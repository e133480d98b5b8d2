"""Collections: named groups of artifacts."""

from __future__ import annotations

from typing import Any

from keepstone.core.artifacts.common import ArtifactStoreBase
from keepstone.core.base import build, create_once, parse, row, same_or_conflict
from keepstone.core.paging import Listing
from keepstone.engine.spi import CheckNone, Put, WriteBatch
from keepstone.engine.tables import COLLECTIONS
from keepstone.errors import StorageError
from keepstone.schemas.artifacts import Collection
from keepstone.schemas.common import Page


class Collections(ArtifactStoreBase):
    """Creating, finding and listing collections."""

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

        async def write() -> Collection:
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

        async def stored() -> Collection | None:
            existing = await self._ctx.load_optional(Collection, COLLECTIONS, cid)
            if existing is None:
                return None
            return same_or_conflict(existing, coll, ("name", "metadata"), "collection", cid)

        return await create_once(id, write, stored)

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
            Collection,
            COLLECTIONS,
            order=("name",),
            cursor=cursor,
            limit=limit,
            listing=Listing("artifacts.list_collections"),
        )
