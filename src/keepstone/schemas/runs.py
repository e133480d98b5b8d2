"""Runs: status lifecycle, steps, snapshots, manifests, input bundles."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import Field

from keepstone.errors import StorageError
from keepstone.schemas._base import Digest, Id, JsonObject, Model, Name, Record, UtcDatetime
from keepstone.schemas.artifacts import ArtifactRef

RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
AttemptOutcome = Literal["running", "succeeded", "failed", "cancelled", "interrupted"]
"""How one attempt of a run or a step ended. ``running``: not ended yet;
``interrupted``: the process died during it (the next attempt found it still
running)."""

RUN_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
"""Legal run status transitions through ``RunStore.transition``; terminal
statuses have none there. ``failed`` and ``cancelled`` runs (and ``running``
runs whose process died) go back to ``running`` only through
``RunStore.reopen``, which starts a new attempt and is audited as
``run.reopen``; ``succeeded`` is final (re-run it as a new run instead)."""

REOPENABLE_RUN_STATUSES: Final = frozenset({"running", "failed", "cancelled"})
"""Statuses ``RunStore.reopen`` accepts."""

STEP_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"running", "skipped", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "running"}),
    "failed": frozenset({"running", "cancelled", "skipped"}),
    "succeeded": frozenset(),
    "skipped": frozenset(),
    "cancelled": frozenset({"running"}),
}
"""Legal step transitions. ``running`` again from ``running``/``failed``/
``cancelled`` is a retry and counts a new attempt."""

TERMINAL_RUN_STATUSES: Final = frozenset({"succeeded", "failed", "cancelled"})


MAX_TRACEBACK_CHARS: Final = 32_000
"""Longest traceback kept in an :class:`ErrorInfo` (the end is kept)."""


class ErrorInfo(Model):
    """Why a run or step failed.

    ``type`` is the exception's class (``ValueError``, or
    ``module.Class`` outside the builtins), ``message`` its text,
    ``traceback`` the formatted traceback (its last
    :data:`MAX_TRACEBACK_CHARS` characters) and ``step`` the step it was
    raised in.
    """

    type: str
    message: str
    details: JsonObject | None = None
    traceback: str | None = None
    step: str | None = None


class StepAttempt(Model):
    """One attempt of a step: when it ran and how it ended."""

    number: int = Field(ge=1)
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    outcome: AttemptOutcome = "running"
    error: ErrorInfo | None = None


class RunAttempt(Model):
    """One attempt of a run: the first start, then one per reopen (resume)."""

    number: int = Field(ge=1)
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    outcome: AttemptOutcome = "running"
    error: ErrorInfo | None = None


class RunStep(Model):
    """One phase of a run. ``history`` keeps every attempt with its outcome."""

    name: Name
    status: StepStatus = "pending"
    attempts: int = Field(default=0, ge=0)
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
    error: ErrorInfo | None = None
    history: list[StepAttempt] = Field(default_factory=list)


class Run(Record):
    """A pipeline or workflow execution.

    ``revision`` increases by one on every change; pass it back as
    ``expected_revision`` for optimistic concurrency. ``history`` holds one
    entry per start or reopen, with its outcome. A re-run names the run it
    re-runs (``rerun_of``) and the step it started from (``rerun_from_step``).
    """

    id: Id
    name: Name
    status: RunStatus = "pending"
    params: JsonObject | None = None
    labels: dict[str, str] | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
    steps: list[RunStep] = Field(default_factory=list)
    error: ErrorInfo | None = None
    revision: int = Field(default=1, ge=1)
    history: list[RunAttempt] = Field(default_factory=list)
    rerun_of: Id | None = None
    rerun_from_step: Name | None = None

    def step(self, name: str) -> RunStep | None:
        """The step called ``name``, or ``None``."""
        for s in self.steps:
            if s.name == name:
                return s
        return None


class RunSnapshotRecord(Record):
    """A stored snapshot: the state split into top-level parts, each a blob.

    Parts that did not change between snapshots share a digest, so a large
    constant part of a state is stored once.
    """

    run_id: Id
    number: int = Field(ge=1)
    step: str | None = None
    created_at: UtcDatetime
    digest: Digest
    size: int = Field(ge=0)
    parts: dict[str, Digest]


class RunSnapshot(Model):
    """A run's resumable state at one point: what ``latest_snapshot`` returns."""

    run_id: Id
    number: int
    step: str | None = None
    created_at: UtcDatetime
    digest: Digest
    size: int
    state: JsonObject


class InputBundle(Model):
    """What a run consumed: artifact references and parameters."""

    artifacts: list[ArtifactRef] | None = None
    params: JsonObject | None = None


class RunManifest(Record):
    """A run's inputs, outputs, diagnostics and timestamps."""

    run_id: Id
    inputs: InputBundle | None = None
    outputs: list[ArtifactRef] | None = None
    diagnostics: list[JsonObject] | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None


class RunQuery(Model):
    """Filters for listing runs; every field given must match."""

    name: str | None = None
    status: RunStatus | None = None
    labels: dict[str, str] | None = None
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None


# --------------------------------------------------------------------------- lifecycle rules


def run_moved(
    run: Run, status: RunStatus, error: ErrorInfo | None, now: datetime
) -> dict[str, Any]:
    """The fields :meth:`RunStore.transition` changes to move ``run`` to ``status``.

    Entering ``running`` opens attempt 1; a terminal status closes the open
    attempt with that outcome and ``error``.

    Raises:
        StorageError: ``conflict`` for an illegal transition (details:
            ``from``, ``to``, ``allowed``).
    """
    allowed = RUN_TRANSITIONS[run.status]
    if status not in allowed:
        hint = ""
        if run.status in ("failed", "cancelled") and status == "running":
            hint = "; reopen it to resume it (a new attempt)"
        raise StorageError(
            "conflict",
            f"run {run.id} cannot go from {run.status} to {status}{hint}",
            {"from": run.status, "to": status, "allowed": sorted(allowed)},
        )
    update: dict[str, Any] = {"status": status, "error": error}
    history = list(run.history)
    if status == "running":
        update["started_at"] = now
        history.append(RunAttempt(number=len(history) + 1, started_at=now))
    if status in TERMINAL_RUN_STATUSES:
        update["ended_at"] = now
        if run.started_at is None:
            update["started_at"] = now
        history = _closed(history, status, error, now)  # type: ignore[arg-type]
    update["history"] = history
    return update


def run_reopened(run: Run, now: datetime) -> dict[str, Any]:
    """The fields :meth:`RunStore.reopen` changes: back to ``running`` as a new
    attempt. A run still ``running`` (its process died) has its open attempt
    closed as ``interrupted``; the error of the last attempt stays in
    ``history``.

    Raises:
        StorageError: ``conflict`` for a ``pending`` or ``succeeded`` run
            (details: ``run``, ``status``, ``allowed``).
    """
    if run.status not in REOPENABLE_RUN_STATUSES:
        why = (
            "has not started; start it instead"
            if run.status == "pending"
            else "succeeded, and a succeeded run is final; re-run it from a step as a new run"
        )
        raise StorageError(
            "conflict",
            f"run {run.id} cannot be reopened: it {why}",
            {"run": run.id, "status": run.status, "allowed": sorted(REOPENABLE_RUN_STATUSES)},
        )
    history = list(run.history)
    if run.status == "running":
        history = _closed(history, "interrupted", None, now)
    history.append(RunAttempt(number=len(history) + 1, started_at=now))
    return {"status": "running", "error": None, "ended_at": None, "history": history}


def step_moved(
    run_id: str, old: RunStep, status: StepStatus, error: ErrorInfo | None, now: datetime
) -> RunStep:
    """``old`` moved to ``status`` by :meth:`RunStore.set_step`.

    Entering ``running`` counts an attempt and opens it in ``history`` (an
    attempt still open is closed as ``interrupted``); ``succeeded``,
    ``failed`` and ``cancelled`` close the open attempt with that outcome.

    Raises:
        StorageError: ``conflict`` for an illegal step transition.
    """
    name = old.name
    if status != old.status or status == "running":
        allowed = STEP_TRANSITIONS[old.status]
        if status not in allowed:
            raise StorageError(
                "conflict",
                f"step {name!r} of run {run_id} cannot go from {old.status} to {status}",
                {"step": name, "from": old.status, "to": status, "allowed": sorted(allowed)},
            )
    fields: dict[str, Any] = {"status": status, "error": error}
    history = list(old.history)
    if status == "running":
        history = _closed(history, "interrupted", None, now)
        number = old.attempts + 1
        fields.update(attempts=number, started_at=now, ended_at=None)
        history.append(StepAttempt(number=number, started_at=now))
    elif status in ("succeeded", "failed", "skipped", "cancelled"):
        fields["ended_at"] = now
        if status != "skipped":
            history = _closed(history, status, error, now)
    fields["history"] = history
    return old.model_copy(update=fields)


def _closed(
    history: list[Any], outcome: AttemptOutcome, error: ErrorInfo | None, now: datetime
) -> list[Any]:
    """``history`` with its open attempt (if the last one is open) ended."""
    if history and history[-1].outcome == "running":
        last = history[-1]
        history[-1] = last.model_copy(update={"outcome": outcome, "error": error, "ended_at": now})
    return history
