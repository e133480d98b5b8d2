"""Pipeline runs: ``async with store.runs.start(...) as run:``, resume, retry, re-run.

A :class:`PipelineRun` moves its run to ``running`` on entry and, on exit,
finalises the manifest and sets the status: ``succeeded``; ``failed`` with
the exception's type, message, traceback and step; ``cancelled`` on
``CancelledError`` or ``KeyboardInterrupt`` (Ctrl-C).

A run that failed, was cancelled, or whose process died (still
``running``) is resumed by starting it again with its id
(``store.runs.start(name, id=...)``) or with ``store.runs.resume(run_id)``:
the run is reopened as a new attempt (audited), :meth:`PipelineRun.should_run`
is ``False`` for the steps that completed, :attr:`PipelineRun.state` is the
last checkpoint, and the failed step runs again as its next attempt.
``store.runs.rerun(run_id, from_step=...)`` re-runs a finished run from a
step as a new run that reuses the outputs of the steps before it.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
import traceback
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from keepstone.errors import StorageError
from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.logs import LogStore
from keepstone.ports.runs import RunStore
from keepstone.schemas._base import Clock, SystemClock, sha256_digest
from keepstone.schemas.artifacts import (
    Artifact,
    ArtifactQuery,
    ArtifactRef,
    ArtifactType,
    Collection,
    Provenance,
)
from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page
from keepstone.schemas.logs import LogLevel, LogLine
from keepstone.schemas.runs import (
    MAX_TRACEBACK_CHARS,
    REOPENABLE_RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
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
from keepstone.services.loghandler import (
    FLUSH_INTERVAL,
    KeepstoneLogHandler,
    RunLogWriter,
    StoreOpener,
)
from keepstone.services.paging import PAGE_SIZE, every

OUTPUTS_COLLECTION = "outputs"
"""The collection pipeline outputs are stored in (created on first use)."""

DONE_STEP_STATUSES = frozenset({"succeeded", "skipped"})

MAX_MESSAGE_CHARS = 8_000
"""Longest exception message kept in an :class:`ErrorInfo`."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a step is tried again after an error.

    Attributes:
        attempts: how many times the step runs at most, the first included.
        backoff: seconds to wait before the second attempt.
        multiplier: each later wait is the previous one times this.
        max_backoff: the longest wait, in seconds.
        jitter: a random fraction added to or taken from each wait (0.1 =
            up to 10%), so that many workers do not retry in step.
        retry_on: the exception types worth another attempt; any other
            error fails the step at once. ``CancelledError`` and
            ``KeyboardInterrupt`` are never retried.
    """

    attempts: int = 3
    backoff: float = 1.0
    multiplier: float = 2.0
    max_backoff: float = 60.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0 or self.multiplier < 1 or self.jitter < 0:
            raise StorageError(
                "invalid",
                "a retry policy needs attempts >= 1, backoff >= 0, multiplier >= 1, jitter >= 0",
                {"attempts": self.attempts, "backoff": self.backoff},
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.backoff * self.multiplier ** (attempt - 1), self.max_backoff)
        spread = base * self.jitter
        return max(0.0, base + random.uniform(-spread, spread))

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another attempt under this policy."""
        return isinstance(error, Exception) and isinstance(error, self.retry_on)


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

    @property
    def remaining_steps(self) -> list[str]:
        """The steps the run knows of that have not completed, in order."""
        done = set(self.completed_steps)
        return [s.name for s in self.run.steps if s.name not in done]

    @property
    def resumable(self) -> bool:
        """``True`` unless the run succeeded (a succeeded run is final)."""
        return self.run.status != "succeeded"


class PipelineRun:
    """A run in progress. Get one from :meth:`RunService.start`,
    :meth:`RunService.resume` or :meth:`RunService.rerun`."""

    run: Run
    """The run's record as this pipeline last wrote it."""
    resumed: ResumePoint | None
    """Where the run stood when it was resumed (or re-run), else ``None``."""
    retry: RetryPolicy | None
    """The default policy of :meth:`retrying`."""
    completed: set[str]
    """Steps that completed (in this attempt or before)."""
    current_step: str | None
    """The step running now, if any."""
    outputs: dict[str, Artifact]
    """Outputs saved (or reused) so far, by name."""

    def __init__(
        self,
        service: RunService,
        run: Run,
        resumed: ResumePoint | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._svc = service
        self.run = run
        self.resumed = resumed
        self.retry = retry
        self.completed: set[str] = set(resumed.completed_steps) if resumed else set()
        self.current_step: str | None = None
        self.outputs: dict[str, Artifact] = {}
        self._writer: RunLogWriter | None = None
        self._handler: KeepstoneLogHandler | None = None
        self._failure: tuple[BaseException, str] | None = None

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def state(self) -> dict[str, Any] | None:
        """The state of the last checkpoint when resuming (or re-running), else ``None``."""
        return None if self.resumed is None else self.resumed.state

    def should_run(self, step: str) -> bool:
        """``False`` for a step that completed before (skip it)."""
        return step not in self.completed

    def step(self, name: str) -> AbstractAsyncContextManager[PipelineRun]:
        """Run a step once: ``running`` on entry (an attempt), ``succeeded`` on
        a clean exit, ``failed`` (with the error) if the block raises."""
        return _StepAttempt(self, name, None)

    async def retrying(
        self, name: str, retry: RetryPolicy | None = None
    ) -> AsyncIterator[AbstractAsyncContextManager[PipelineRun]]:
        """Run a step with retries: each item is one attempt, a context
        manager to enter. An error the policy retries is recorded as a failed
        attempt and swallowed; after the policy's wait the next attempt comes.
        The last attempt's error, or one the policy does not retry,
        propagates. ``retry`` defaults to the run's policy
        (``start(..., retry=...)``), else a single attempt.

        Example::

            async for attempt in run.retrying("fetch", RetryPolicy(attempts=5)):
                async with attempt:
                    data = await fetch()
        """
        policy = retry or self.retry or RetryPolicy(attempts=1)
        for number in range(1, policy.attempts + 1):
            attempt = _StepAttempt(self, name, policy if number < policy.attempts else None)
            yield attempt
            if attempt.outcome != "retry":
                return
            assert attempt.error is not None
            wait = policy.delay(number)
            await self.log(
                "step.retry",
                f"{name} failed ({attempt.error.type}: {attempt.error.message}); "
                f"attempt {number + 1} of {policy.attempts} in {wait:.2f}s",
                level="warning",
                data={"attempt": number, "of": policy.attempts, "wait": round(wait, 3)},
            )
            await asyncio.sleep(wait)

    async def _enter_step(self, name: str) -> None:
        self.run = await self._svc.ports.set_step(self.run.id, name, "running")
        self.current_step = name

    async def _leave_step(self, name: str, exc: BaseException | None) -> None:
        try:
            if self._writer is not None:
                await self._writer.drain()
        finally:
            self.current_step = None
        if exc is None:
            self.run = await self._svc.ports.set_step(self.run.id, name, "succeeded")
            self.completed.add(name)
            return
        status: StepStatus = "failed" if isinstance(exc, Exception) else "cancelled"
        self._failure = (exc, name)
        self.run = await self._svc.ports.set_step(
            self.run.id, name, status, error=error_info(exc, name)
        )

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
        await self.log(
            "artifact.persisted",
            f"output {name!r} stored",
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
        """Write a line to the run's log stream (tagged with the step); it is
        stored, after every line logged before it, when this returns."""
        if self._writer is None:
            await self._svc.logs.write(
                self.run.id, event, level=level, message=message, step=self.current_step, data=data
            )
            return
        line = LogLine(
            run_id=self.run.id,
            at=self._svc.clock.now(),
            level=level,
            event=event,
            step=self.current_step,
            message=message,
            data=data,
        )
        await self._writer.write(line)

    def logging_handler(
        self, level: int = logging.INFO, *, flush_interval: float = FLUSH_INTERVAL
    ) -> KeepstoneLogHandler:
        """A stdlib ``logging.Handler`` writing to this run's stream, in order
        with :meth:`log` and the outputs' lines. A record at ``ERROR`` or above
        is stored before the ``logging`` call returns (on a durable store);
        the others within ``flush_interval`` seconds, at the end of each step
        and of the run (see :mod:`keepstone.services.loghandler`). Attach it
        with ``logging.getLogger().addHandler``; the same handler is returned
        on every call."""
        if self._handler is None:
            if self._writer is None:
                self._writer = RunLogWriter.for_store(
                    self.run.id,
                    self._svc.logs,
                    self._svc.second_connection,
                    flush_interval=flush_interval,
                )
            self._handler = KeepstoneLogHandler(
                self._writer, level, step_source=lambda: self.current_step
            )
        return self._handler

    async def _finish(self, exc: BaseException | None) -> None:
        if self._writer is not None:
            await self._writer.aclose()
        status: RunStatus
        error = None
        if exc is None:
            status = "succeeded"
        else:
            status = "failed" if isinstance(exc, Exception) else "cancelled"
            step = self._failure[1] if self._failure and self._failure[0] is exc else None
            error = error_info(exc, step)
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


class _StepAttempt(AbstractAsyncContextManager[PipelineRun]):
    """One attempt of a step; with a ``policy``, a retried error is swallowed."""

    def __init__(self, run: PipelineRun, name: str, policy: RetryPolicy | None) -> None:
        self._run = run
        self._name = name
        self._policy = policy
        self.outcome: str | None = None
        self.error: ErrorInfo | None = None

    async def __aenter__(self) -> PipelineRun:
        if self.outcome is not None:
            raise StorageError("invalid", f"this attempt of step {self._name!r} was used", {})
        self.outcome = "running"
        await self._run._enter_step(self._name)
        return self._run

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        await self._run._leave_step(self._name, exc)
        if exc is None:
            self.outcome = "succeeded"
            return False
        self.error = error_info(exc, self._name)
        if self._policy is not None and self._policy.retries(exc):
            self.outcome = "retry"
            self._run._failure = None
            return True
        self.outcome = "failed"
        return False


class _RunContext(AbstractAsyncContextManager[PipelineRun]):
    """What ``start``, ``resume`` and ``rerun`` return: enter to run."""

    def __init__(self, begin: Callable[[], Awaitable[PipelineRun]]) -> None:
        self._begin = begin
        self._run: PipelineRun | None = None

    async def __aenter__(self) -> PipelineRun:
        self._run = await self._begin()
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
    :meth:`start`, :meth:`resume` and :meth:`rerun` for pipelines."""

    ports: RunStore
    """The run port underneath."""

    def __init__(
        self,
        runs: RunStore,
        artifacts: ArtifactStore,
        logs: LogStore,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.ports = runs
        self.artifacts = artifacts
        self.logs = logs
        self.clock: Clock = clock or SystemClock()
        self.second_connection: StoreOpener | None = None
        """Opens another connection to this store, for run log writers; set by
        ``keepstone.open`` for durable stores that several processes may share."""

    async def outputs_collection(self) -> Collection:
        """The collection pipeline outputs go to (created on first use)."""
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

    # ------------------------------------------------------------------ pipelines

    def start(
        self,
        name: str,
        *,
        params: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> AbstractAsyncContextManager[PipelineRun]:
        """Start a pipeline run; with the id of a run that failed, was
        cancelled or died (still ``running``), resume it instead (see
        :meth:`resume`).

        Args:
            retry: the default policy of :meth:`PipelineRun.retrying`.

        Raises:
            StorageError: ``conflict`` if ``id`` names a run that succeeded or
                a run with another name or params.
        """

        async def begin() -> PipelineRun:
            run = await self.ports.create(name, params=params, labels=labels, id=id)
            return await self._enter(run, retry)

        return _RunContext(begin)

    def resume(
        self, run_id: str, *, retry: RetryPolicy | None = None
    ) -> AbstractAsyncContextManager[PipelineRun]:
        """Resume a run that failed, was cancelled or whose process died: it
        is reopened as a new attempt (``RunStore.reopen``, audited),
        completed steps report ``should_run(step) == False``, ``run.state``
        is the last checkpoint, and outputs saved before count in the
        manifest. A ``pending`` run is simply started.

        Raises:
            StorageError: ``not_found``; ``conflict`` if the run succeeded
                (re-run it with :meth:`rerun`).
        """

        async def begin() -> PipelineRun:
            return await self._enter(await self.ports.get(run_id), retry)

        return _RunContext(begin)

    def rerun(
        self,
        run_id: str,
        *,
        from_step: str,
        params: dict[str, Any] | None = None,
        id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> AbstractAsyncContextManager[PipelineRun]:
        """Re-run a finished run from ``from_step`` as a new run (same name and
        labels; ``params`` default to the old run's) with ``rerun_of`` set.

        The steps before ``from_step`` (in the old run's order) are marked
        ``skipped`` in the new run, their outputs are reused
        (``run.outputs``, and the new manifest), and ``run.state`` is the old
        run's last checkpoint taken in one of them (copied as the new run's
        first snapshot).

        Raises:
            StorageError: ``not_found``; ``conflict`` if the old run has not
                ended or a step before ``from_step`` did not complete;
                ``invalid`` if it has no step ``from_step``.
        """

        async def begin() -> PipelineRun:
            old = await self.ports.get(run_id)
            if old.status not in TERMINAL_RUN_STATUSES:
                raise StorageError(
                    "conflict",
                    f"run {old.id} has not ended ({old.status}); resume it or let it finish",
                    {"run": old.id, "status": old.status},
                )
            _reused_steps(old, from_step)
            run = await self.ports.create(
                old.name,
                params=old.params if params is None else params,
                labels=old.labels,
                id=id,
                rerun_of=old.id,
                rerun_from_step=from_step,
            )
            return await self._enter(run, retry)

        return _RunContext(begin)

    async def resume_point(self, run_id: str) -> ResumePoint:
        """Where a run would resume: its last snapshot and completed steps.
        Reads only; nothing changes.

        Raises:
            StorageError: ``not_found``.
        """
        run = await self.ports.get(run_id)
        snapshot = await self.ports.latest_snapshot(run.id)
        done = [s.name for s in run.steps if s.status in DONE_STEP_STATUSES]
        return ResumePoint(run=run, snapshot=snapshot, completed_steps=done)

    async def _enter(self, run: Run, retry: RetryPolicy | None) -> PipelineRun:
        was = run
        if run.status == "pending":
            run = await self.ports.transition(run.id, "running")
        elif run.status in REOPENABLE_RUN_STATUSES:
            run = await self.ports.reopen(run.id)
        else:
            raise StorageError(
                "conflict",
                f"run {run.id} already succeeded; a succeeded run is final: re-run it from "
                f"a step as a new run with store.runs.rerun({run.id!r}, from_step=...)",
                {"run": run.id, "status": run.status},
            )
        if run.rerun_of is not None:
            run = await self._reuse(run)
        resumed = None
        if was.status != "pending" or run.rerun_of is not None:
            resumed = await self.resume_point(run.id)
        pipeline = PipelineRun(self, resumed.run if resumed else run, resumed, retry)
        if run.rerun_of is not None:
            pipeline.outputs.update(await self._reused_outputs(run))
        if was.status != "pending":
            pipeline.outputs.update(await self._earlier_outputs(run))
        if was.status == "pending" and run.rerun_of is not None:
            await pipeline.log(
                "run.rerun",
                f"re-run of {run.rerun_of} from step {run.rerun_from_step!r}; "
                f"reused: {', '.join(sorted(pipeline.completed)) or 'nothing'}",
                data={"rerun_of": run.rerun_of, "from_step": run.rerun_from_step},
            )
        elif was.status != "pending" and resumed is not None:
            attempt = run.history[-1].number if run.history else None
            why = {"running": "its process died", "cancelled": "it was cancelled"}.get(
                was.status, "it failed"
            )
            if was.error is not None:
                why += f" ({was.error.type}: {was.error.message})"
            await pipeline.log(
                "run.resumed",
                f"attempt {attempt}, after {why}; "
                f"completed before: {', '.join(resumed.completed_steps) or 'nothing'}",
                data={
                    "attempt": attempt,
                    "was": was.status,
                    "completed": resumed.completed_steps,
                    "snapshot": None if resumed.snapshot is None else resumed.snapshot.number,
                },
            )
        return pipeline

    async def _reuse(self, run: Run) -> Run:
        """Bring a re-run up to its origin: reused steps skipped, the origin's
        checkpoint copied (idempotent: a re-run that crashed in between is
        completed when resumed)."""
        assert run.rerun_of is not None and run.rerun_from_step is not None
        origin = await self.ports.get(run.rerun_of)
        reused = _reused_steps(origin, run.rerun_from_step)
        for name in reused:
            step = run.step(name)
            if step is None or step.status not in DONE_STEP_STATUSES:
                run = await self.ports.set_step(run.id, name, "skipped")
        if await self.ports.latest_snapshot(run.id) is None:
            snap = await self._last_snapshot_in(origin.id, set(reused))
            if snap is not None:
                await self.ports.save_snapshot(run.id, snap.state, step=snap.step)
        return run

    async def _last_snapshot_in(self, run_id: str, steps: set[str]) -> RunSnapshot | None:
        best: RunSnapshotRecord | None = None
        snapshots = every(lambda c: self.ports.list_snapshots(run_id, cursor=c, limit=PAGE_SIZE))
        async for record in snapshots:
            if record.step in steps:
                best = record
        return None if best is None else await self.ports.get_snapshot(run_id, best.number)

    async def _reused_outputs(self, run: Run) -> dict[str, Artifact]:
        """The origin's outputs made by the steps a re-run reuses, by name."""
        assert run.rerun_of is not None and run.rerun_from_step is not None
        origin = await self.ports.get(run.rerun_of)
        reused = set(_reused_steps(origin, run.rerun_from_step))
        manifest = await self.ports.get_manifest(origin.id)
        if manifest is not None and manifest.outputs is not None:
            found = [await self.artifacts.get(ref.artifact_id) for ref in manifest.outputs]
        else:
            found = list((await self._earlier_outputs(origin)).values())
        outputs: dict[str, Artifact] = {}
        for art in found:
            made = (await self.artifacts.get_revision(art.id, art.revision)).provenance
            if made is None or made.step not in reused or made.run_id is None:
                continue
            prefix = f"{origin.name}/{made.run_id}/"
            if art.name.startswith(prefix):
                outputs[art.name[len(prefix) :]] = art
        return outputs

    async def _earlier_outputs(self, run: Run) -> dict[str, Artifact]:
        """Outputs a run saved before (under its own id), by output name."""
        prefix = f"{run.name}/{run.id}/"
        found: dict[str, Artifact] = {}
        query = ArtifactQuery(run_id=run.id)
        async for art in every(lambda c: self.artifacts.query(query, cursor=c, limit=PAGE_SIZE)):
            if art.name.startswith(prefix):
                found[art.name[len(prefix) :]] = art
        return found

    # ------------------------------------------------------------------ the port

    async def create(
        self,
        name: str,
        *,
        params: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        id: str | None = None,
        rerun_of: str | None = None,
        rerun_from_step: str | None = None,
    ) -> Run:
        return await self.ports.create(
            name,
            params=params,
            labels=labels,
            id=id,
            rerun_of=rerun_of,
            rerun_from_step=rerun_from_step,
        )

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

    async def reopen(self, run_id: str, *, expected_revision: int | None = None) -> Run:
        return await self.ports.reopen(run_id, expected_revision=expected_revision)

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
        self,
        run_id: str,
        state: dict[str, Any],
        *,
        step: str | None = None,
        number: int | None = None,
    ) -> RunSnapshot:
        return await self.ports.save_snapshot(run_id, state, step=step, number=number)

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


def _reused_steps(origin: Run, from_step: str) -> builtins.list[str]:
    """The steps of ``origin`` before ``from_step``; each must have completed."""
    names = [s.name for s in origin.steps]
    if from_step not in names:
        raise StorageError(
            "invalid",
            f"run {origin.id} has no step {from_step!r}; its steps are: "
            f"{', '.join(names) or 'none'}",
            {"run": origin.id, "step": from_step, "steps": names},
        )
    reused = names[: names.index(from_step)]
    unfinished = [s.name for s in origin.steps[: len(reused)] if s.status not in DONE_STEP_STATUSES]
    if unfinished:
        raise StorageError(
            "conflict",
            f"step {unfinished[0]!r} of run {origin.id} did not complete, so the steps after "
            f"it cannot reuse it; re-run from {unfinished[0]!r} instead",
            {"run": origin.id, "unfinished": unfinished},
        )
    return reused


def error_info(exc: BaseException, step: str | None = None) -> ErrorInfo:
    """What a run or step stores about ``exc``: its type (``module.Class``
    outside the builtins), message, formatted traceback, and ``step``."""
    cls = type(exc)
    kind = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    message = str(exc)
    if not message:
        if isinstance(exc, asyncio.CancelledError):
            message = "cancelled (Ctrl-C, a timeout or task.cancel())"
        elif isinstance(exc, KeyboardInterrupt):
            message = "interrupted (Ctrl-C)"
        else:
            message = cls.__name__
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    text = "".join(traceback.format_exception(exc))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return ErrorInfo(type=kind, message=message, traceback=text, step=step)
