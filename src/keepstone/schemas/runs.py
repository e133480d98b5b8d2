"""Runs: status lifecycle, steps, snapshots, manifests, input bundles."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from keepstone.schemas._base import Digest, Id, JsonObject, Model, Name, Record, UtcDatetime
from keepstone.schemas.artifacts import ArtifactRef

RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]

RUN_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
"""Legal run status transitions; terminal statuses have none."""

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


class ErrorInfo(Model):
    """Why a run or step failed."""

    type: str
    message: str
    details: JsonObject | None = None


class RunStep(Model):
    """One phase of a run."""

    name: Name
    status: StepStatus = "pending"
    attempts: int = Field(default=0, ge=0)
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
    error: ErrorInfo | None = None


class Run(Record):
    """A pipeline or workflow execution.

    ``revision`` increases by one on every change; pass it back as
    ``expected_revision`` for optimistic concurrency.
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
