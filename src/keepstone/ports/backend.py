"""Backend: what ``keepstone.open`` builds from a URL — one object per store
holding every domain port."""

from __future__ import annotations

from typing import Any, Protocol

from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.audit import AuditLog
from keepstone.ports.blobs import BlobStore
from keepstone.ports.context import ContextStore
from keepstone.ports.doctor import Doctor
from keepstone.ports.events import EventLog
from keepstone.ports.logs import LogStore
from keepstone.ports.memory import MemoryStore
from keepstone.ports.runs import RunStore
from keepstone.ports.snapshots import SnapshotStore
from keepstone.schemas._base import Clock, IdSource


class Backend(Protocol):
    """Every port of one store, plus its name, capabilities and ``close``."""

    runs: RunStore
    artifacts: ArtifactStore
    blobs: BlobStore
    logs: LogStore
    memory: MemoryStore
    events: EventLog
    audit: AuditLog
    context: ContextStore
    snapshots: SnapshotStore
    doctor: Doctor

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> frozenset[str]: ...

    async def close(self) -> None: ...


class BackendFactory(Protocol):
    """``module:function`` registered for a URL scheme.

    Raises:
        StorageError: ``config`` for a bad URL or option; ``unavailable``
            when the backend cannot be reached.
    """

    async def __call__(
        self, url: str, *, clock: Clock, ids: IdSource, actor: str, options: dict[str, Any]
    ) -> Backend: ...
