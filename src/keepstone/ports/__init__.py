"""keepstone's ports: async Protocols, one module per domain.

What callers use through :class:`keepstone.Store`. The backend SPI is
:mod:`keepstone.engine`.
"""

from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.audit import AuditLog
from keepstone.ports.blobs import BlobStore
from keepstone.ports.context import ContextStore
from keepstone.ports.events import EventLog
from keepstone.ports.logs import LogStore
from keepstone.ports.memory import MemoryStore
from keepstone.ports.runs import RunStore
from keepstone.ports.snapshots import SnapshotStore

__all__ = [
    "ArtifactStore",
    "AuditLog",
    "BlobStore",
    "ContextStore",
    "EventLog",
    "LogStore",
    "MemoryStore",
    "RunStore",
    "SnapshotStore",
]
