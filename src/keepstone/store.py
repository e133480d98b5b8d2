"""The Store facade and ``keepstone.open``."""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Generator
from importlib.metadata import entry_points
from types import TracebackType
from typing import Any, cast

from keepstone.errors import StorageError
from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.audit import AuditLog
from keepstone.ports.backend import Backend, BackendFactory
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

BACKENDS: dict[str, str] = {
    "memory": "keepstone.backends.memory:open_backend",
    "sqlite": "keepstone.backends.sql.sqlite:open_backend",
    "file": "keepstone.backends.fs:open_backend",
    "postgresql": "keepstone.backends.sql.postgres:open_backend",
    "postgres": "keepstone.backends.sql.postgres:open_backend",
}
"""URL scheme -> ``"module:function"`` building the backend (imported lazily)."""


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
        url: ``memory://``, ``sqlite:///path/store.db``, ``file:///dir`` (or a
            bare directory path), ``postgresql://...``.
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
        scheme, url = "file", url
    scheme = scheme.lower()
    factory = _factory(scheme)
    clock = clock or SystemClock()
    backend = await factory(
        url,
        clock=clock,
        ids=ids or UlidIds(),
        actor=actor or os.environ.get("KEEPSTONE_ACTOR") or "keepstone",
        options=options,
    )
    if limits is not None:
        configure = getattr(backend, "configure", None)
        if configure is None:
            await backend.close()
            raise StorageError(
                "config", f"the {scheme} backend does not support limits", {"scheme": scheme}
            )
        configure(limits=limits)
    store = Store(backend, url, clock)
    if {"durable", "multi_process"} <= backend.capabilities:
        # Run log writers open a connection of their own (services/loghandler.py).
        store.runs.second_connection = functools.partial(
            _open_store, url, clock=clock, ids=ids, actor=actor, limits=limits, **options
        )
    return store


def _known_backends() -> dict[str, str]:
    known = dict(BACKENDS)
    for ep in entry_points(group="keepstone.backends"):
        known.setdefault(ep.name, ep.value)
    return known


def _factory(scheme: str) -> BackendFactory:
    known = _known_backends()
    target = known.get(scheme)
    if target is None:
        raise StorageError(
            "config",
            f"unknown store URL scheme {scheme!r}; known schemes: {', '.join(sorted(known))}",
            {"scheme": scheme, "known": sorted(known)},
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
    return cast(BackendFactory, getattr(module, attr))


def redact(url: str) -> str:
    """``url`` with any password or secret query values replaced by ``***``;
    everything else is kept as written (``sqlite:///x.db`` stays as it is)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit

    if "://" not in url:
        return url  # a bare path holds no credentials
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, _, host = netloc.rpartition("@")
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret = [any(s in k.lower() for s in ("secret", "password", "key", "token")) for k, _ in pairs]
    query = parts.query
    if any(secret):
        query = urlencode(
            [(k, "***" if hide else v) for (k, v), hide in zip(pairs, secret, strict=True)],
            safe="*:/@",
        )
    if netloc == parts.netloc and query == parts.query:
        return url
    head, _, _ = url.partition("://")
    return (
        f"{head}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )
