"""keepstone's ports: async Protocols, one module per domain.

``engine`` is the backend SPI; the others are what callers use through
:class:`keepstone.Store`.
"""

from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.audit import AuditLog
from keepstone.ports.blobs import BlobStore
from keepstone.ports.context import ContextStore
from keepstone.ports.engine import RecordEngine
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
    "RecordEngine",
    "RunStore",
    "SnapshotStore",
]
