"""Backend: what ``keepstone.open`` builds from a URL — one object per store
holding every domain port."""

from __future__ import annotations

from typing import Protocol

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


class Backend(Protocol):
    """Every port of one store, plus its name, capabilities and ``close``."""

    @property
    def runs(self) -> RunStore: ...

    @property
    def artifacts(self) -> ArtifactStore: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def logs(self) -> LogStore: ...

    @property
    def memory(self) -> MemoryStore: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def context(self) -> ContextStore: ...

    @property
    def snapshots(self) -> SnapshotStore: ...

    @property
    def doctor(self) -> Doctor: ...

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> frozenset[str]: ...

    async def close(self) -> None: ...
