"""A backend made of the record-backed stores over one engine."""

from __future__ import annotations

from keepstone.core.artifacts import RecordArtifactStore
from keepstone.core.audit import RecordAuditLog
from keepstone.core.base import RecordContext
from keepstone.core.blobs import RecordBlobStore
from keepstone.core.context_refs import RecordContextStore
from keepstone.core.doctor import RecordDoctor
from keepstone.core.events import RecordEventLog
from keepstone.core.logs import RecordLogStore
from keepstone.core.memory import RecordMemoryStore
from keepstone.core.runs import RecordRunStore
from keepstone.core.snapshots import RecordSnapshots
from keepstone.engine.spi import RecordEngine
from keepstone.schemas._base import Clock, IdSource, Limits


class RecordBackend:
    """Every port, implemented over ``engine``."""

    def __init__(
        self,
        engine: RecordEngine,
        *,
        clock: Clock,
        ids: IdSource,
        actor: str = "keepstone",
        limits: Limits | None = None,
    ) -> None:
        self.engine = engine
        self.ctx = RecordContext(engine, clock, ids, actor, limits or Limits())
        self.blobs = RecordBlobStore(self.ctx)
        self.runs = RecordRunStore(self.ctx)
        self.artifacts = RecordArtifactStore(self.ctx, self.blobs)
        self.logs = RecordLogStore(self.ctx)
        self.events = RecordEventLog(self.ctx)
        self.memory = RecordMemoryStore(self.ctx, self.events)
        self.audit = RecordAuditLog(self.ctx)
        self.context = RecordContextStore(self.ctx)
        self.snapshots = RecordSnapshots(self.ctx, self.events)
        self.doctor = RecordDoctor(self.ctx, self.events, self.audit, self.runs)

    def configure(self, *, limits: Limits | None = None) -> None:
        """Change input limits after opening (``keepstone.open(limits=...)``)."""
        if limits is not None:
            self.ctx.limits = limits

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def capabilities(self) -> frozenset[str]:
        return self.engine.capabilities

    async def close(self) -> None:
        await self.engine.close()
