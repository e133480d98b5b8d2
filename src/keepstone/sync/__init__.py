"""The sync API: keepstone for scripts, notebooks, threads and WSGI apps.

::

    import keepstone

    with keepstone.connect("sqlite:///store.db") as store:
        run = store.runs.create("translate")
        with store.runs.start("etl") as pipeline, pipeline.step("extract"):
            pipeline.save_output("rows", records=[{"n": 1}])

Every port and service of :class:`keepstone.Store` is there, with the same
methods, arguments and errors, minus ``await``: coroutines return their
result, ``async for`` becomes ``for`` and ``async with`` becomes ``with``.

How it works: ``connect`` opens an ordinary async store on keepstone's
private event loop thread, and every object it hands out is one generic
proxy (:mod:`keepstone.sync._proxy`) that runs each call on that loop and
waits for it. There is no second implementation of anything. So:

* any number of threads may share one store (calls run concurrently on the
  loop, as tasks would);
* a caller that has an event loop of its own (Jupyter) is fine: its loop
  is simply not used;
* a callback keepstone runs (a progress hook) must not call the sync API
  back; that is refused with ``invalid`` rather than deadlocking;
* Ctrl-C while waiting cancels the call, and is raised as usual.

Types: the proxies are described by the protocols of
:mod:`keepstone.sync.protocols` (``SyncRunService``, ``SyncPipelineRun``,
...), generated from the async signatures, so ``mypy --strict`` checks sync
code as precisely as async code.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, cast

from keepstone.schemas._base import Clock, IdSource, Limits
from keepstone.schemas.diagnostics import DiagnosisReport
from keepstone.services.loopthread import LoopThread
from keepstone.store import Store
from keepstone.store import open as open_async
from keepstone.sync._proxy import SyncContextManager, SyncIterator, SyncProxy
from keepstone.sync.protocols import (
    SyncArtifactStore,
    SyncAuditLog,
    SyncBlobCollector,
    SyncBlobStore,
    SyncContextStore,
    SyncDoctor,
    SyncEventLog,
    SyncLogStore,
    SyncMemoryStore,
    SyncPathService,
    SyncPipelineRun,
    SyncRetentionService,
    SyncReviewGate,
    SyncRunService,
    SyncRunStore,
    SyncSnapshotStore,
)
from keepstone.urls import redact


class SyncStore:
    """One open store, blocking API. Get one from :func:`connect`; close it
    (or use ``with``) when done."""

    runs: SyncRunService
    artifacts: SyncArtifactStore
    blobs: SyncBlobStore
    logs: SyncLogStore
    memory: SyncMemoryStore
    events: SyncEventLog
    audit: SyncAuditLog
    context: SyncContextStore
    snapshots: SyncSnapshotStore
    doctor: SyncDoctor
    paths: SyncPathService
    review: SyncReviewGate
    retention: SyncRetentionService
    gc: SyncBlobCollector

    def __init__(self, store: Store, runner: LoopThread) -> None:
        self._store = store
        self._runner = runner

        def proxy(target: Any) -> Any:
            return SyncProxy(target, runner)

        self.runs = cast(SyncRunService, proxy(store.runs))
        self.artifacts = cast(SyncArtifactStore, proxy(store.artifacts))
        self.blobs = cast(SyncBlobStore, proxy(store.blobs))
        self.logs = cast(SyncLogStore, proxy(store.logs))
        self.memory = cast(SyncMemoryStore, proxy(store.memory))
        self.events = cast(SyncEventLog, proxy(store.events))
        self.audit = cast(SyncAuditLog, proxy(store.audit))
        self.context = cast(SyncContextStore, proxy(store.context))
        self.snapshots = cast(SyncSnapshotStore, proxy(store.snapshots))
        self.doctor = cast(SyncDoctor, proxy(store.doctor))
        self.paths = cast(SyncPathService, proxy(store.paths))
        self.review = cast(SyncReviewGate, proxy(store.review))
        self.retention = cast(SyncRetentionService, proxy(store.retention))
        self.gc = cast(SyncBlobCollector, proxy(store.gc))

    @property
    def url(self) -> str:
        """The URL the store was opened with."""
        return self._store.url

    @property
    def clock(self) -> Clock:
        """The store's clock."""
        return self._store.clock

    @property
    def capabilities(self) -> frozenset[str]:
        """Optional features the backend declares (``"durable"``, ``"fts"``, ...)."""
        return self._store.capabilities

    def diagnose(self, **options: Any) -> DiagnosisReport:
        """Run the doctor (see :meth:`keepstone.ports.doctor.Doctor.diagnose`)."""
        return self._runner.run(self._store.diagnose(**options))

    def close(self) -> None:
        """Flush and release the backend; idempotent."""
        self._runner.run(self._store.close())

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<keepstone.SyncStore {self._store.backend.name} {redact(self.url)}>"


def connect(
    url: str | os.PathLike[str],
    *,
    clock: Clock | None = None,
    ids: IdSource | None = None,
    actor: str | None = None,
    limits: Limits | None = None,
    **options: Any,
) -> SyncStore:
    """Open the store at ``url`` with the blocking API (see :mod:`keepstone.sync`).

    Takes the arguments of :func:`keepstone.open`.

    Raises:
        StorageError: as :func:`keepstone.open`.
    """
    runner = LoopThread.shared()

    async def opening() -> Store:
        return await open_async(url, clock=clock, ids=ids, actor=actor, limits=limits, **options)

    return SyncStore(runner.run(opening()), runner)


__all__ = [
    "SyncArtifactStore",
    "SyncAuditLog",
    "SyncBlobCollector",
    "SyncBlobStore",
    "SyncContextManager",
    "SyncContextStore",
    "SyncDoctor",
    "SyncEventLog",
    "SyncIterator",
    "SyncLogStore",
    "SyncMemoryStore",
    "SyncPathService",
    "SyncPipelineRun",
    "SyncProxy",
    "SyncRetentionService",
    "SyncReviewGate",
    "SyncRunService",
    "SyncRunStore",
    "SyncSnapshotStore",
    "SyncStore",
    "connect",
]
