"""ContextStore: context packages and external memory references."""

from __future__ import annotations

from typing import Any, Protocol

from keepstone.schemas.common import Page
from keepstone.schemas.context import (
    ContextPackage,
    ContextReference,
    ExternalMemoryRef,
    ResolvedContext,
)


class ContextStore(Protocol):
    """What an agent or step was handed as context, by reference."""

    async def put_external(
        self,
        system: str,
        ref: str,
        *,
        provenance: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> ExternalMemoryRef:
        """Store an opaque reference into another memory system.

        With your own ``id``, storing the same reference again returns it
        and writes nothing, also when the calls race.

        Raises:
            StorageError: ``conflict`` if ``id`` exists with other content;
                ``invalid``.
        """
        ...

    async def get_external(self, ref_id: str) -> ExternalMemoryRef:
        """Raises: StorageError ``not_found``."""
        ...

    async def list_external(
        self, *, system: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page[ExternalMemoryRef]:
        """External references by id. Raises: StorageError ``invalid`` cursor."""
        ...

    async def create_package(
        self,
        name: str,
        references: list[ContextReference],
        *,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
    ) -> ContextPackage:
        """Store a package. References are not checked here (they may dangle
        later anyway); :meth:`resolve` reports what exists. With your own
        ``id``, creating the same package again returns it and writes
        nothing, also when the creates race.

        Raises:
            StorageError: ``conflict`` if ``id`` exists with other content;
                ``invalid``.
        """
        ...

    async def get_package(self, package_id: str) -> ContextPackage:
        """Raises: StorageError ``not_found``."""
        ...

    async def list_packages(
        self, *, cursor: str | None = None, limit: int = 100
    ) -> Page[ContextPackage]:
        """Packages by id. Raises: StorageError ``invalid`` cursor."""
        ...

    async def resolve(self, package_id: str) -> ResolvedContext:
        """Split the package's references into found and dangling.

        Raises:
            StorageError: ``not_found`` for an unknown package.
        """
        ...
