"""The Store facade and ``keepstone.open``."""

from __future__ import annotations

import difflib
import functools
import importlib
import os
from collections.abc import Generator
from importlib.metadata import entry_points
from types import TracebackType
from typing import Any, cast

from keepstone.core import RecordBackend
from keepstone.engine.spi import EngineFactory
from keepstone.errors import StorageError
from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.audit import AuditLog
from keepstone.ports.backend import Backend
from keepstone.ports.blobs import BlobStore
from keepstone.ports.context import ContextStore
from keepstone.ports.doctor import Doctor
from keepstone.ports.events import EventLog
from keepstone.ports.logs import LogStore
from keepstone.ports.memory import MemoryStore
from keepstone.ports.snapshots import SnapshotStore
from keepstone.schemas._base import Clock, IdSource, Limits, SystemClock, UlidIds
from keepstone.schemas.diagnostics import DiagnosisReport
from keepstone.services.gc import BlobCollector
from keepstone.services.paths import PathService
from keepstone.services.retention import RetentionService
from keepstone.services.review import ReviewGate
from keepstone.services.runs import RunService
from keepstone.urls import redact

BACKENDS: dict[str, str] = {
    "memory": "keepstone.backends.memory:open_engine",
    "sqlite": "keepstone.backends.sql.sqlite:open_engine",
    "file": "keepstone.backends.fs:open_engine",
    "postgresql": "keepstone.backends.sql.postgres:open_engine",
    "postgres": "keepstone.backends.sql.postgres:open_engine",
}
"""URL scheme -> ``"module:function"`` opening the engine (imported lazily)."""


class Store:
    """One open keepstone store: its ports, and ``close()``.

    Use ``async with keepstone.open(url) as store:`` or
    ``store = await keepstone.open(url)`` then ``await store.close()``.
    """

    runs: RunService
    artifacts: ArtifactStore
    blobs: BlobStore
    logs: LogStore
    memory: MemoryStore
    events: EventLog
    audit: AuditLog
    context: ContextStore
    snapshots: SnapshotStore
    doctor: Doctor
    paths: PathService
    review: ReviewGate
    retention: RetentionService
    gc: BlobCollector

    def __init__(self, backend: Backend, url: str, clock: Clock | None = None) -> None:
        self.backend = backend
        self.url = url
        self.clock = clock or SystemClock()
        self.runs = RunService(backend.runs, backend.artifacts, backend.logs, clock=self.clock)
        self.artifacts = backend.artifacts
        self.blobs = backend.blobs
        self.logs = backend.logs
        self.memory = backend.memory
        self.events = backend.events
        self.audit = backend.audit
        self.context = backend.context
        self.snapshots = backend.snapshots
        self.doctor = backend.doctor
        self.paths = PathService(backend.memory, backend.events)
        self.review = ReviewGate(backend.memory, backend.artifacts, backend.audit)
        self.retention = RetentionService(
            backend.runs, backend.logs, backend.audit, self.review, self.clock
        )
        self.gc = BlobCollector(
            backend.blobs, backend.artifacts, backend.runs, backend.logs, self.clock
        )
        self._closed = False

    @property
    def capabilities(self) -> frozenset[str]:
        """Optional features the backend declares (``"durable"``, ``"fts"``, ...)."""
        return self.backend.capabilities

    async def diagnose(self, **options: Any) -> DiagnosisReport:
        """Run the doctor (see :meth:`keepstone.ports.doctor.Doctor.diagnose`)."""
        return await self.doctor.diagnose(**options)

    async def close(self) -> None:
        """Flush and release the backend; idempotent."""
        if not self._closed:
            self._closed = True
            await self.backend.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<keepstone.Store {self.backend.name} {redact(self.url)}>"


class _Opening:
    """Awaitable and async context manager returned by :func:`open`."""

    def __init__(self, coro_args: tuple[str, dict[str, Any]]) -> None:
        self._args = coro_args
        self._store: Store | None = None

    async def _open(self) -> Store:
        url, kwargs = self._args
        return await _open_store(url, **kwargs)

    def __await__(self) -> Generator[Any, None, Store]:
        return self._open().__await__()

    async def __aenter__(self) -> Store:
        self._store = await self._open()
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()


def open(
    url: str | os.PathLike[str],
    *,
    clock: Clock | None = None,
    ids: IdSource | None = None,
    actor: str | None = None,
    limits: Limits | None = None,
    **options: Any,
) -> _Opening:
    """Open the store at ``url``.

    Args:
        url: ``memory://``, ``sqlite:///path/store.db``, ``file:///dir``,
            ``postgresql://...``, or a bare path: one ending in ``.db``,
            ``.sqlite`` or ``.sqlite3`` is a SQLite file, any other a
            workspace directory (a path that is not what its name says, such
            as an existing plain file without one of those suffixes, is a
            ``config`` error naming the URL to write).
        clock: time source (default: the system clock); inject
            :class:`keepstone.FixedClock` for deterministic tests and exports.
        ids: id source (default: time-sortable ULID-style ids); inject
            :class:`keepstone.SequentialIds` for reproducible ids.
        actor: who the audit records name (default ``$KEEPSTONE_ACTOR`` or
            ``"keepstone"``); :func:`keepstone.acting_as` overrides it per task.
        limits: input size limits (:class:`keepstone.Limits`): the largest
            blob, record and batch accepted; larger input is ``invalid``.
        options: backend options (see ``docs/backends.md``).

    Raises:
        StorageError: ``config`` for an unknown scheme (the message lists the
            known ones), a bad option or a missing optional dependency;
            ``unsupported_schema`` for a store written by a newer keepstone;
            ``unavailable`` when a server cannot be reached.
    """
    return _Opening(
        (
            os.fspath(url),
            {"clock": clock, "ids": ids, "actor": actor, "limits": limits, **options},
        )
    )


async def _open_store(
    url: str,
    *,
    clock: Clock | None,
    ids: IdSource | None,
    actor: str | None,
    limits: Limits | None = None,
    **options: Any,
) -> Store:
    if not isinstance(url, str) or not url:
        raise StorageError("config", "a store URL is required, e.g. 'sqlite:///store.db'")
    scheme, sep, _ = url.partition("://")
    if not sep:
        scheme, url = _bare_path(url)
    scheme = scheme.lower()
    factory = _factory(scheme)
    clock = clock or SystemClock()
    engine = await factory(url, options=options)
    backend = RecordBackend(
        engine,
        clock=clock,
        ids=ids or UlidIds(),
        actor=actor or os.environ.get("KEEPSTONE_ACTOR") or "keepstone",
        limits=limits,
    )
    store = Store(backend, url, clock)
    if {"durable", "multi_process"} <= backend.capabilities:
        # Run log writers open a connection of their own (services/loghandler.py).
        store.runs.second_connection = functools.partial(
            _open_store, url, clock=clock, ids=ids, actor=actor, limits=limits, **options
        )
    return store


SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
"""A bare path ending in one of these opens SQLite; any other, a workspace."""


def _bare_path(path: str) -> tuple[str, str]:
    """The scheme and URL a bare path (no ``scheme://``) stands for.

    A path ending in ``.db``, ``.sqlite`` or ``.sqlite3`` is a SQLite file;
    any other is a workspace directory. What cannot be both what its name
    says and what is on disk is refused, naming the URL to write instead.

    Raises:
        StorageError: ``config`` for an ambiguous path.
    """
    from pathlib import Path
    from urllib.parse import quote

    head = path.partition(":")[0].lower()
    if ":" in path and head in _known_backends():
        raise StorageError(
            "config",
            f"{path!r} is not a URL: a URL has '://', e.g. sqlite:///relative/store.db, "
            "sqlite:////absolute/store.db, file:///absolute/workspace",
            {"url": path},
        )
    target = Path(path)
    sqlite_url = "sqlite:///" + quote(path)
    workspace_url = "file://" + quote(str(target.absolute()))
    if target.suffix.lower() in SQLITE_SUFFIXES:
        if target.is_dir():
            raise StorageError(
                "config",
                f"{path} is a directory, not a SQLite file; to open the workspace in it "
                f"write {workspace_url}",
                {"url": path, "sqlite": sqlite_url, "workspace": workspace_url},
            )
        return "sqlite", sqlite_url
    if target.exists() and not target.is_dir():
        raise StorageError(
            "config",
            f"{path} is a file, not a workspace directory; if it is a SQLite store "
            f"write {sqlite_url}",
            {"url": path, "sqlite": sqlite_url, "workspace": workspace_url},
        )
    return "file", path


def _known_backends() -> dict[str, str]:
    known = dict(BACKENDS)
    for ep in entry_points(group="keepstone.backends"):
        known.setdefault(ep.name, ep.value)
    return known


def _factory(scheme: str) -> EngineFactory:
    known = _known_backends()
    target = known.get(scheme)
    if target is None:
        close = difflib.get_close_matches(scheme, sorted(known), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}://? " if close else ""
        raise StorageError(
            "config",
            f"unknown store URL scheme {scheme!r}; {hint}known schemes: {', '.join(sorted(known))}",
            {"scheme": scheme, "known": sorted(known), "suggestion": close[0] if close else None},
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StorageError(
            "config",
            f"the {scheme} backend cannot be loaded ({exc}); is its optional dependency installed?",
            {"scheme": scheme, "module": module_name},
        ) from exc
    return cast(EngineFactory, getattr(module, attr))
