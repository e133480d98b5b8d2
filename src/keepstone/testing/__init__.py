"""keepstone's conformance suite, importable by any backend.

A backend's test module subclasses :class:`StoreConformance` (or one domain
class) and implements the single factory hook::

    class TestMyBackend(StoreConformance):
        durable = True  # data survives close() and reopen

        async def make_store(self, location, **options):
            return await keepstone.open(f"mine://{location}", **options)

The base classes have no ``Test`` prefix, so pytest collects only subclasses.
"""

from keepstone.testing.artifacts import ArtifactStoreConformance
from keepstone.testing.audit import AuditLogConformance
from keepstone.testing.base import ConformanceBase
from keepstone.testing.blobs import BlobStoreConformance
from keepstone.testing.context import ContextStoreConformance
from keepstone.testing.engine import EngineConformance
from keepstone.testing.events import EventLogConformance
from keepstone.testing.logs import LogStoreConformance
from keepstone.testing.memory import MemoryStoreConformance
from keepstone.testing.runs import RunStoreConformance


class StoreConformance(
    RunStoreConformance,
    ArtifactStoreConformance,
    BlobStoreConformance,
    LogStoreConformance,
    EventLogConformance,
    MemoryStoreConformance,
    AuditLogConformance,
    ContextStoreConformance,
):
    """The whole conformance suite: every domain's tests against one backend."""


__all__ = [
    "ArtifactStoreConformance",
    "AuditLogConformance",
    "BlobStoreConformance",
    "ConformanceBase",
    "ContextStoreConformance",
    "EngineConformance",
    "EventLogConformance",
    "LogStoreConformance",
    "MemoryStoreConformance",
    "RunStoreConformance",
    "StoreConformance",
]
