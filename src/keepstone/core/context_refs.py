"""ContextStore over a RecordEngine: packages of references, external refs."""

from __future__ import annotations

from typing import Any

from keepstone.core.base import (
    RecordContext,
    build,
    check_id,
    create_once,
    row,
    same_or_conflict,
)
from keepstone.core.paging import Listing
from keepstone.engine.spi import Put, Table, WriteBatch
from keepstone.engine.tables import (
    ARTIFACTS,
    EXTERNALS,
    PACKAGES,
    RELATIONSHIPS,
    REVISIONS,
    RUNS,
)
from keepstone.schemas.common import Page
from keepstone.schemas.context import (
    ContextPackage,
    ContextReference,
    ExternalMemoryRef,
    ResolvedContext,
)

_TABLES: dict[str, Table] = {
    "artifact": ARTIFACTS,
    "relationship": RELATIONSHIPS,
    "run": RUNS,
    "external": EXTERNALS,
}


class RecordContextStore:
    """Context packages (see :class:`keepstone.ports.ContextStore`)."""

    def __init__(self, ctx: RecordContext) -> None:
        self._ctx = ctx

    async def put_external(
        self,
        system: str,
        ref: str,
        *,
        provenance: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> ExternalMemoryRef:
        record = build(
            ExternalMemoryRef,
            "external reference",
            id=self._ctx.new_id("ext", id),
            system=system,
            ref=ref,
            provenance=provenance,
            metadata=metadata,
            created_at=self._ctx.now(),
        )

        async def write() -> ExternalMemoryRef:
            batch = WriteBatch([Put(EXTERNALS, row(record), expect="absent")])
            self._ctx.audit(batch, "context.put_external", record.id, {"system": record.system})
            await self._ctx.apply(batch)
            return record

        async def stored() -> ExternalMemoryRef | None:
            existing = await self._ctx.load_optional(ExternalMemoryRef, EXTERNALS, record.id)
            if existing is None:
                return None
            fields = ("system", "ref", "provenance", "metadata")
            return same_or_conflict(existing, record, fields, "external reference", record.id)

        return await create_once(id, write, stored)

    async def get_external(self, ref_id: str) -> ExternalMemoryRef:
        return await self._ctx.load(
            ExternalMemoryRef, EXTERNALS, check_id(ref_id, "external"), "external"
        )

    async def list_external(
        self, *, system: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[ExternalMemoryRef]:
        where = {} if system is None else {"system": system}
        return await self._ctx.page(
            ExternalMemoryRef,
            EXTERNALS,
            where=where,
            cursor=cursor,
            limit=limit,
            listing=Listing("context.list_external", system),
        )

    async def create_package(
        self,
        name: str,
        references: list[ContextReference],
        *,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> ContextPackage:
        package = build(
            ContextPackage,
            "context package",
            id=self._ctx.new_id("ctx", id),
            name=name,
            references=references,
            metadata=metadata,
            created_at=self._ctx.now(),
        )

        async def write() -> ContextPackage:
            batch = WriteBatch([Put(PACKAGES, row(package), expect="absent")])
            self._ctx.audit(
                batch,
                "context.create_package",
                package.id,
                {"references": len(package.references)},
            )
            await self._ctx.apply(batch)
            return package

        async def stored() -> ContextPackage | None:
            existing = await self._ctx.load_optional(ContextPackage, PACKAGES, package.id)
            if existing is None:
                return None
            fields = ("name", "references", "metadata")
            return same_or_conflict(existing, package, fields, "context package", package.id)

        return await create_once(id, write, stored)

    async def get_package(self, package_id: str) -> ContextPackage:
        return await self._ctx.load(
            ContextPackage, PACKAGES, check_id(package_id, "package"), "package"
        )

    async def list_packages(
        self, *, cursor: str | None = None, limit: int = 100
    ) -> Page[ContextPackage]:
        return await self._ctx.page(
            ContextPackage,
            PACKAGES,
            cursor=cursor,
            limit=limit,
            listing=Listing("context.list_packages"),
        )

    async def resolve(self, package_id: str) -> ResolvedContext:
        package = await self.get_package(package_id)
        found: list[ContextReference] = []
        dangling: list[ContextReference] = []
        for ref in package.references:
            (found if await self._exists(ref) else dangling).append(ref)
        return ResolvedContext(package=package, found=found, dangling=dangling)

    async def _exists(self, ref: ContextReference) -> bool:
        engine = self._ctx.engine
        if ref.kind == "revision":
            if ref.revision is None:
                return False
            return await engine.get(REVISIONS, f"{ref.id}:{ref.revision}") is not None
        return await engine.get(_TABLES[ref.kind], ref.id) is not None
