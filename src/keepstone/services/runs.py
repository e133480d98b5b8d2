"""Pipeline runs: ``async with store.runs.start(...) as run:`` and ``resume``.

A :class:`PipelineRun` moves its run to ``running`` on entry and, on exit,
finalises the manifest and sets the status: ``succeeded``; ``failed`` with
the exception's type and message; ``cancelled`` on ``CancelledError`` or
``KeyboardInterrupt``. Starting a run with the id of a run that crashed
(still ``running``) resumes it: completed steps are known, and
:meth:`PipelineRun.should_run` says which to skip.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from keepstone.errors import StorageError
from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.logs import LogStore
from keepstone.ports.runs import RunStore
from keepstone.schemas.artifacts import (
    Artifact,
    ArtifactQuery,
    ArtifactRef,
    ArtifactType,
    Provenance,
)
from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page
from keepstone.schemas.logs import LogLevel
from keepstone.schemas.runs import (
    ErrorInfo,
    InputBundle,
    Run,
    RunManifest,
    RunQuery,
    RunSnapshot,
    RunSnapshotRecord,
    RunStatus,
    StepStatus,
)
from keepstone.services.loghandler import KeepstoneLogHandler
from keepstone.services.paging import PAGE_SIZE, every

OUTPUTS_COLLECTION = "outputs"
"""The collection pipeline outputs are stored in (created on first use)."""

DONE_STEP_STATUSES = frozenset({"succeeded", "skipped"})


@dataclass(frozen=True)
class ResumePoint:
    """Where a run stands: its record, its last snapshot and finished steps."""

    run: Run
    snapshot: RunSnapshot | None
    completed_steps: list[str] = field(default_factory=list)

    @property
    def state(self) -> dict[str, Any] | None:
        """The last snapshot's state, or ``None``."""
        return None if self.snapshot is None else self.snapshot.state


class PipelineRun:
    """A run in progress. Get one from :meth:`RunService.start`."""

    def __init__(self, service: RunService, run: Run, resumed: ResumePoint | None) -> None:
        self._svc = service
        self.run = run
        self.resumed = resumed
        self.completed: set[str] = set(resumed.completed_steps) if resumed else set()
        self.current_step: str | None = None
        self.outputs: dict[str, Artifact] = {}
        self._handler: KeepstoneLogHandler | None = None

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def state(self) -> dict[str, Any] | None:
        """The state of the last checkpoint when resuming, else ``None``."""
        return None if self.resumed is None else self.resumed.state

    def should_run(self, step: str) -> bool:
        """``False`` for a step that completed before a crash (skip it)."""
        return step not in self.completed

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[PipelineRun]:
        """Run a step: ``running`` on entry (an attempt), ``succeeded`` on a
        clean exit, ``failed`` (with the error) if the block raises."""
        self.run = await self._svc.ports.set_step(self.run.id, name, "running")
        self.current_step = name
        try:
            yield self
        except BaseException as exc:
            status: StepStatus = "failed" if isinstance(exc, Exception) else "cancelled"
            self.run = await self._svc.ports.set_step(
                self.run.id, name, status, error=_error_info(exc)
            )
            raise
        finally:
            if self._handler is not None:
                await self._handler.drain()
            self.current_step = None
        self.run = await self._svc.ports.set_step(self.run.id, name, "succeeded")
        self.completed.add(name)

    async def skip(self, name: str) -> None:
        """Mark a step as skipped (it counts as completed)."""
        self.run = await self._svc.ports.set_step(self.run.id, name, "skipped")
        self.completed.add(name)

    async def save_output(
        self,
        name: str,
        data: bytes | str | None = None,
        *,
        records: Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]] | None = None,
        type: ArtifactType = "phase_output",
        media_type: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Artifact:
        """Store an output artifact (``data``, or ``records`` as JSONL) with
        provenance (this run, the current step) and log ``artifact.persisted``.

        Saving the same name again (e.g. after a resume) adds a revision, or
        does nothing when the content is unchanged.
        """
        if (data is None) == (records is None):
            raise StorageError("invalid", "save_output takes either data or records", {})
        artifacts = self._svc.artifacts
        coll = await self._svc.outputs_collection()
        full_name = f"{self.run.name}/{self.run.id}/{name}"
        provenance = Provenance(run_id=self.run.id, step=self.current_step, producer="pipeline")
        if records is not None:
            art = await artifacts.write_jsonl(
                coll.id, full_name, records, type=type, metadata=metadata, provenance=provenance
            )
        else:
            assert data is not None
            art = await self._save_bytes(coll.id, full_name, data, type, media_type, metadata)
        self.outputs[name] = art
        await self._svc.logs.write(
            self.run.id,
            "artifact.persisted",
            step=self.current_step,
            message=f"output {name!r} stored",
            data={
                "name": name,
                "artifact_id": art.id,
                "revision": art.revision,
                "digest": art.digest,
                "size": art.size,
            },
        )
        return art

    async def _save_bytes(
        self,
        collection_id: str,
        full_name: str,
        data: bytes | str,
        type: ArtifactType,
        media_type: str | None,
        metadata: dict[str, Any] | None,
    ) -> Artifact:
        artifacts = self._svc.artifacts
        provenance = Provenance(run_id=self.run.id, step=self.current_step, producer="pipeline")
        try:
            existing = await artifacts.get_by_name(collection_id, full_name)
        except StorageError as exc:
            if exc.code != "not_found":
                raise
            return await artifacts.create(
                collection_id,
                full_name,
                data,
                type=type,
                media_type=media_type,
                metadata=metadata,
                provenance=provenance,
            )
        from keepstone.schemas._base import sha256_digest

        raw = data.encode("utf-8") if isinstance(data, str) else data
        if existing.digest == sha256_digest(raw):
            return existing
        return await artifacts.update(
            existing.id, data, media_type=media_type, metadata=metadata, provenance=provenance
        )

    async def checkpoint(self, state: dict[str, Any]) -> RunSnapshot:
        """Store ``state`` as the run's resume point (tagged with the step)."""
        return await self._svc.ports.save_snapshot(self.run.id, state, step=self.current_step)

    async def log(
        self,
        event: str,
        message: str | None = None,
        *,
        level: LogLevel = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Write a line to the run's log stream (tagged with the step)."""
        await self._svc.logs.write(
            self.run.id, event, level=level, message=message, step=self.current_step, data=data
        )

    def logging_handler(self, level: int = logging.INFO) -> KeepstoneLogHandler:
        """A stdlib ``logging.Handler`` writing to this run's stream; flushed
        when the run ends. Attach it with ``logging.getLogger().addHandler``."""
        if self._handler is None:
            self._handler = KeepstoneLogHandler(self._svc.logs, self.run.id, level=level)
            self._handler.step_source = lambda: self.current_step
        return self._handler

    async def _finish(self, exc: BaseException | None) -> None:
        if self._handler is not None:
            await self._handler.drain()
            self._handler.close()
        status: RunStatus
        if exc is None:
            status, error = "succeeded", None
        elif isinstance(exc, Exception):
            status, error = "failed", _error_info(exc)
        else:
            status, error = "cancelled", _error_info(exc)
        outputs = [
            ArtifactRef(artifact_id=a.id, revision=a.revision, digest=a.digest)
            for _, a in sorted(self.outputs.items())
        ]
        self.run = await self._svc.ports.transition(self.run.id, status, error=error)
        await self._svc.ports.put_manifest(
            self.run.id,
            inputs=InputBundle(params=self.run.params),
            outputs=outputs,
            diagnostics=None if error is None else [error.model_dump(mode="json")],
        )
        await self._svc.logs.seal(self.run.id)


class _Starting:
    def __init__(self, service: RunService, args: dict[str, Any]) -> None:
        self._svc = service
        self._args = args
        self._run: PipelineRun | None = None

    async def __aenter__(self) -> PipelineRun:
        self._run = await self._svc._begin(**self._args)
        return self._run

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._run is not None:
            await self._run._finish(exc)


class RunService:
    """``store.runs``: the :class:`~keepstone.ports.RunStore` methods plus
    :meth:`start` and :meth:`resume` for pipelines."""

    def __init__(self, runs: RunStore, artifacts: ArtifactStore, logs: LogStore) -> None:
        self.ports = runs
        self.artifacts = artifacts
        self.logs = logs

    async def outputs_collection(self) -> Any:
        try:
            return await self.artifacts.get_collection_by_name(OUTPUTS_COLLECTION)
        except StorageError as exc:
            if exc.code != "not_found":
                raise
        try:
            return await self.artifacts.create_collection(OUTPUTS_COLLECTION)
        except StorageError as err:  # created concurrently
            if err.code != "conflict":
                raise
            return await self.artifacts.get_collection_by_name(OUTPUTS_COLLECTION)

    def start(
        self,
        name: str,
        *,
        params: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        id: str | None = None,
    ) -> _Starting:
        """Start (or, with the id of an unfinished run, resume) a pipeline run.

        Raises:
            StorageError: ``conflict`` if ``id`` names a finished run or a run
                with another name or params.
        """
        return _Starting(self, {"name": name, "params": params, "labels": labels, "id": id})

    async def _begin(
        self,
        *,
        name: str,
        params: dict[str, Any] | None,
        labels: dict[str, str] | None,
        id: str | None,
    ) -> PipelineRun:
        run = await self.ports.create(name, params=params, labels=labels, id=id)
        resumed = None
        if run.status == "running":
            resumed = await self.resume(run.id)
        elif run.status != "pending":
            raise StorageError(
                "conflict",
                f"run {run.id} already ended ({run.status}); start a new run instead",
                {"run": run.id, "status": run.status},
            )
        else:
            run = await self.ports.transition(run.id, "running")
        pipeline = PipelineRun(self, run, resumed)
        if resumed is not None:
            pipeline.outputs.update(await self._earlier_outputs(run))
        return pipeline

    async def _earlier_outputs(self, run: Run) -> dict[str, Artifact]:
        """Outputs a run saved before it crashed, by output name."""
        prefix = f"{run.name}/{run.id}/"
        found: dict[str, Artifact] = {}
        query = ArtifactQuery(run_id=run.id)
        async for art in every(lambda c: self.artifacts.query(query, cursor=c, limit=PAGE_SIZE)):
            if art.name.startswith(prefix):
                found[art.name[len(prefix) :]] = art
        return found

    async def resume(self, run_id: str) -> ResumePoint:
        """The last snapshot and the completed steps of a run."""
        run = await self.ports.get(run_id)
        snapshot = await self.ports.latest_snapshot(run.id)
        done = [s.name for s in run.steps if s.status in DONE_STEP_STATUSES]
        return ResumePoint(run=run, snapshot=snapshot, completed_steps=done)

    # ------------------------------------------------------------------ the port

    async def create(
        self,
        name: str,
        *,
        params: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        id: str | None = None,
    ) -> Run:
        return await self.ports.create(name, params=params, labels=labels, id=id)

    async def get(self, run_id: str) -> Run:
        return await self.ports.get(run_id)

    async def list(
        self, query: RunQuery | None = None, *, cursor: str | None = None, limit: int = 100
    ) -> Page[Run]:
        return await self.ports.list(query, cursor=cursor, limit=limit)

    async def transition(
        self,
        run_id: str,
        status: RunStatus,
        *,
        error: ErrorInfo | None = None,
        expected_revision: int | None = None,
    ) -> Run:
        return await self.ports.transition(
            run_id, status, error=error, expected_revision=expected_revision
        )

    async def set_step(
        self,
        run_id: str,
        step: str,
        status: StepStatus,
        *,
        error: ErrorInfo | None = None,
        expected_revision: int | None = None,
    ) -> Run:
        return await self.ports.set_step(
            run_id, step, status, error=error, expected_revision=expected_revision
        )

    async def save_snapshot(
        self, run_id: str, state: dict[str, Any], *, step: str | None = None
    ) -> RunSnapshot:
        return await self.ports.save_snapshot(run_id, state, step=step)

    async def latest_snapshot(self, run_id: str) -> RunSnapshot | None:
        return await self.ports.latest_snapshot(run_id)

    async def get_snapshot(self, run_id: str, number: int) -> RunSnapshot:
        return await self.ports.get_snapshot(run_id, number)

    async def list_snapshots(
        self, run_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[RunSnapshotRecord]:
        return await self.ports.list_snapshots(run_id, cursor=cursor, limit=limit)

    async def prune_snapshots(
        self,
        run_id: str,
        numbers: builtins.list[int],
        *,
        approval: ApprovalMarker | None = None,
    ) -> int:
        return await self.ports.prune_snapshots(run_id, numbers, approval=approval)

    async def put_manifest(
        self,
        run_id: str,
        *,
        inputs: InputBundle | None = None,
        outputs: builtins.list[ArtifactRef] | None = None,
        diagnostics: builtins.list[dict[str, Any]] | None = None,
    ) -> RunManifest:
        return await self.ports.put_manifest(
            run_id, inputs=inputs, outputs=outputs, diagnostics=diagnostics
        )

    async def get_manifest(self, run_id: str) -> RunManifest | None:
        return await self.ports.get_manifest(run_id)


def _error_info(exc: BaseException) -> ErrorInfo:
    return ErrorInfo(type=type(exc).__name__, message=str(exc) or type(exc).__name__)
