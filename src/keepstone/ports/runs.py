"""RunStore: runs, their steps, resumable snapshots and manifests."""

from __future__ import annotations

import builtins
from typing import Any, Protocol

from keepstone.schemas.artifacts import ArtifactRef
from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page
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


class RunStore(Protocol):
    """Runs of pipelines and workflows.

    Status moves ``pending -> running -> succeeded | failed | cancelled``
    (``pending`` may also go straight to ``failed`` or ``cancelled``) through
    :meth:`transition`, where terminal statuses never change. A ``failed`` or
    ``cancelled`` run, or a ``running`` one whose process died, goes back to
    ``running`` only through :meth:`reopen`: a new attempt, audited as
    ``run.reopen``. ``succeeded`` is final. ``Run.history`` keeps every
    attempt of the run, and ``RunStep.history`` every attempt of a step, each
    with its outcome. Every change bumps ``Run.revision``.
    """

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
        """Create a ``pending`` run.

        Args:
            name: the pipeline or workflow name.
            params: parameters (``None`` = not given, ``{}`` = none).
            labels: string labels to filter runs by.
            id: your own id; creating the same id with the same name, params,
                labels and origin again returns the existing run and writes
                nothing, also when the creates race (in one process or several).
            rerun_of: the id of the run this one re-runs.
            rerun_from_step: the step of ``rerun_of`` the re-run starts from.

        Raises:
            StorageError: ``invalid`` for a bad name, id, params or labels, or
                ``rerun_from_step`` without ``rerun_of``; ``conflict`` if
                ``id`` exists with different content; ``integrity`` if
                ``rerun_of`` names no run.
        """
        ...

    async def get(self, run_id: str) -> Run:
        """The run with ``run_id``.

        Raises:
            StorageError: ``not_found``.
        """
        ...

    async def list(
        self, query: RunQuery | None = None, *, cursor: str | None = None, limit: int = 100
    ) -> Page[Run]:
        """Runs matching ``query``, oldest first (by creation time, then id).

        Raises:
            StorageError: ``invalid`` for a bad cursor or limit.
        """
        ...

    async def transition(
        self,
        run_id: str,
        status: RunStatus,
        *,
        error: ErrorInfo | None = None,
        expected_revision: int | None = None,
    ) -> Run:
        """Move a run to ``status``; sets ``started_at``/``ended_at``.

        Raises:
            StorageError: ``not_found``; ``conflict`` for an illegal transition
                (details: ``from``, ``to``, ``allowed``) or when
                ``expected_revision`` is not the run's revision; ``invalid``
                for an unknown status.
        """
        ...

    async def reopen(self, run_id: str, *, expected_revision: int | None = None) -> Run:
        """Start a new attempt of a ``failed``, ``cancelled`` or interrupted
        (still ``running`` after its process died) run: status ``running``,
        ``error`` and ``ended_at`` cleared, a new entry in ``Run.history``
        (an open attempt is closed as ``interrupted``). Steps keep their
        status; a failed step can then run again. The run's log stream,
        sealed when the previous attempt ended, is open again (the next seal
        covers every line). Audited as ``run.reopen``.

        Raises:
            StorageError: ``not_found``; ``conflict`` for a ``pending`` or
                ``succeeded`` run (details: ``status``, ``allowed``) or when
                ``expected_revision`` is not the run's revision.
        """
        ...

    async def set_step(
        self,
        run_id: str,
        step: str,
        status: StepStatus,
        *,
        error: ErrorInfo | None = None,
        expected_revision: int | None = None,
    ) -> Run:
        """Set a step's status, adding the step if new (steps keep the order
        they were first seen in). Entering ``running`` counts an attempt.

        Raises:
            StorageError: ``not_found``; ``conflict`` if the run has ended, the
                step transition is illegal, or ``expected_revision`` moved.
        """
        ...

    async def save_snapshot(
        self,
        run_id: str,
        state: dict[str, Any],
        *,
        step: str | None = None,
        number: int | None = None,
    ) -> RunSnapshot:
        """Store the run's resumable state as its next snapshot.

        The state is stored by content, part by part (top-level keys): parts
        equal to an earlier snapshot's are not stored again.

        Args:
            number: store it as exactly this snapshot number, or fail: a
                writer that knows the last number it saw (``N``) passes
                ``N + 1`` and learns, atomically, whether another writer got
                there first (fencing). By default the next free number.

        Raises:
            StorageError: ``not_found`` for an unknown run; ``invalid`` if the
                state is not a JSON object or ``number`` is not a positive
                integer; ``conflict`` when ``number`` is taken.
        """
        ...

    async def latest_snapshot(self, run_id: str) -> RunSnapshot | None:
        """The newest snapshot (the resume point), or ``None`` if none.

        Raises:
            StorageError: ``not_found`` for an unknown run; ``corrupt`` if a
                part's bytes are damaged.
        """
        ...

    async def get_snapshot(self, run_id: str, number: int) -> RunSnapshot:
        """Snapshot ``number`` (1-based) of a run.

        Raises:
            StorageError: ``not_found``; ``corrupt``.
        """
        ...

    async def list_snapshots(
        self, run_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[RunSnapshotRecord]:
        """A run's snapshot records (without state), oldest first.

        Raises:
            StorageError: ``not_found`` for an unknown run; ``invalid`` cursor.
        """
        ...

    async def prune_snapshots(
        self,
        run_id: str,
        numbers: builtins.list[int],
        *,
        approval: ApprovalMarker | None = None,
    ) -> int:
        """Delete some of a run's snapshots (retention), review-gated. Parts
        still used by other snapshots stay.

        Returns:
            How many snapshots were removed.

        Raises:
            StorageError: ``review_required`` (audited as denied) without an
                approval; ``not_found``; ``conflict`` when asked to remove the
                latest snapshot of a run that has not finished (its resume point).
        """
        ...

    async def put_manifest(
        self,
        run_id: str,
        *,
        inputs: InputBundle | None = None,
        outputs: builtins.list[ArtifactRef] | None = None,
        diagnostics: builtins.list[dict[str, Any]] | None = None,
    ) -> RunManifest:
        """Write (or replace) the run's manifest; timestamps come from the run.

        Raises:
            StorageError: ``not_found`` for an unknown run; ``integrity`` if
                an input or output names an artifact that does not exist.
        """
        ...

    async def get_manifest(self, run_id: str) -> RunManifest | None:
        """The run's manifest, or ``None`` if none was written.

        Raises:
            StorageError: ``not_found`` for an unknown run.
        """
        ...
