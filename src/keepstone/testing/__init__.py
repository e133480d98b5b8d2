"""keepstone's conformance suite, importable by any backend.

A backend's test module subclasses :class:`StoreConformance` (or one domain
class) and implements the single factory hook::

    class TestMyBackend(StoreConformance):
        async def make_store(self, location, **options):
            return await keepstone.open(f"mine://{location}", **options)

The store's ``capabilities`` decide what runs (the reopen tests need
``"durable"``). An engine author subclasses :class:`EngineConformance`
(:mod:`keepstone.testing.engine`) the same way, with ``make_engine``. The
base classes have no ``Test`` prefix, so pytest collects only subclasses.
"""

# ruff: noqa: E402  (the suites are imported after registering them below)

import pytest

# Failed asserts in the suites show their values, as in a test module's own.
_SUITE_MODULES = [
    "artifacts",
    "audit",
    "base",
    "blobs",
    "context",
    "creates",
    "engine",
    "events",
    "logs",
    "memory",
    "paging",
    "runs",
    "snapshots",
]
pytest.register_assert_rewrite(*(f"keepstone.testing.{name}" for name in _SUITE_MODULES))

from keepstone.testing.artifacts import ArtifactStoreConformance
from keepstone.testing.audit import AuditLogConformance
from keepstone.testing.base import ConformanceBase
from keepstone.testing.blobs import BlobStoreConformance
from keepstone.testing.context import ContextStoreConformance
from keepstone.testing.creates import CreateConformance
from keepstone.testing.engine import EngineConformance
from keepstone.testing.events import EventLogConformance
from keepstone.testing.logs import LogStoreConformance
from keepstone.testing.memory import MemoryStoreConformance
from keepstone.testing.paging import PagingConformance
from keepstone.testing.runs import RunStoreConformance
from keepstone.testing.snapshots import SnapshotImportConformance


class StoreConformance(
    RunStoreConformance,
    ArtifactStoreConformance,
    BlobStoreConformance,
    LogStoreConformance,
    EventLogConformance,
    MemoryStoreConformance,
    AuditLogConformance,
    ContextStoreConformance,
    PagingConformance,
    SnapshotImportConformance,
    CreateConformance,
):
    """The whole conformance suite: every domain's tests against one backend."""


__all__ = [
    "ArtifactStoreConformance",
    "AuditLogConformance",
    "BlobStoreConformance",
    "ConformanceBase",
    "ContextStoreConformance",
    "CreateConformance",
    "EngineConformance",
    "EventLogConformance",
    "LogStoreConformance",
    "MemoryStoreConformance",
    "PagingConformance",
    "RunStoreConformance",
    "SnapshotImportConformance",
    "StoreConformance",
]
