"""Retention for log streams and run snapshots: plan, then apply under review.

Rules (``RetentionPolicy``):

- ``applies_to="logs"``: the log streams of *finished* runs go when the run
  ended longer than ``max_age`` ago, or when it is not among the
  ``keep_last`` most recent finished runs. Streams of unfinished runs stay.
- ``applies_to="snapshots"``: per run, snapshots older than ``max_age`` or
  beyond the ``keep_last`` most recent go — except the latest snapshot of a
  run that has not finished, which is its resume point and always stays.

``plan()`` lists exactly what would go; ``apply(plan, approval)`` removes it
through the review gate (``apply_retention``) and audits each removal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from keepstone.ports.audit import AuditLog
from keepstone.ports.logs import LogStore
from keepstone.ports.runs import RunStore
from keepstone.schemas._base import Clock, Model, UtcDatetime
from keepstone.schemas.audit import ApprovalMarker, LifecycleAction
from keepstone.schemas.logs import RetentionPolicy
from keepstone.schemas.runs import TERMINAL_RUN_STATUSES, Run
from keepstone.services.paging import PAGE_SIZE, every
from keepstone.services.review import ReviewGate


class RetentionItem(Model):
    """One thing a plan removes."""

    kind: Literal["logs", "snapshots"]
    run_id: str
    snapshot_numbers: list[int] | None = None
    reason: str


class RetentionPlan(Model):
    """What applying a policy would remove, as of ``planned_at``."""

    policy: RetentionPolicy
    planned_at: UtcDatetime
    items: list[RetentionItem] = Field(default_factory=list)


class RetentionReport(Model):
    """What ``apply`` removed."""

    log_streams: int = 0
    log_lines: int = 0
    snapshots: int = 0


class RetentionService:
    """``store.retention``."""

    def __init__(
        self, runs: RunStore, logs: LogStore, audit: AuditLog, gate: ReviewGate, clock: Clock
    ) -> None:
        self._runs = runs
        self._logs = logs
        self._audit = audit
        self._gate = gate
        self._clock = clock

    async def _all_runs(self) -> list[Run]:
        return [run async for run in every(lambda c: self._runs.list(cursor=c, limit=PAGE_SIZE))]

    async def plan(self, policy: RetentionPolicy) -> RetentionPlan:
        """List what ``policy`` would remove now. Changes nothing."""
        now = self._clock.now()
        cutoff: datetime | None = None if policy.max_age is None else now - policy.max_age
        runs = await self._all_runs()
        items: list[RetentionItem] = []
        if policy.applies_to == "logs":
            finished = sorted(
                (r for r in runs if r.status in TERMINAL_RUN_STATUSES),
                key=lambda r: (r.created_at, r.id),
                reverse=True,
            )
            for rank, run in enumerate(finished):
                reason = None
                ended = run.ended_at or run.updated_at
                if cutoff is not None and ended < cutoff:
                    reason = f"ended before {cutoff.isoformat()}"
                elif policy.keep_last is not None and rank >= policy.keep_last:
                    reason = f"not among the last {policy.keep_last} finished runs"
                if reason is not None and await self._has_logs(run.id):
                    items.append(RetentionItem(kind="logs", run_id=run.id, reason=reason))
        else:
            for run in runs:
                numbers = await self._doomed_snapshots(run, policy, cutoff)
                if numbers:
                    items.append(
                        RetentionItem(
                            kind="snapshots",
                            run_id=run.id,
                            snapshot_numbers=numbers,
                            reason="older than max_age or beyond keep_last",
                        )
                    )
        return RetentionPlan(policy=policy, planned_at=now, items=items)

    async def _has_logs(self, run_id: str) -> bool:
        page = await self._logs.read(run_id, limit=1)
        return bool(page.items) or await self._logs.reference(run_id) is not None

    async def _doomed_snapshots(
        self, run: Run, policy: RetentionPolicy, cutoff: datetime | None
    ) -> list[int]:
        records = [
            record
            async for record in every(
                lambda c: self._runs.list_snapshots(run.id, cursor=c, limit=PAGE_SIZE)
            )
        ]
        newest_first = sorted(records, key=lambda r: r.number, reverse=True)
        doomed = []
        for rank, record in enumerate(newest_first):
            if rank == 0 and run.status not in TERMINAL_RUN_STATUSES:
                continue  # the resume point of an unfinished run
            too_old = cutoff is not None and record.created_at < cutoff
            too_many = policy.keep_last is not None and rank >= policy.keep_last
            if too_old or too_many:
                doomed.append(record.number)
        return sorted(doomed)

    async def apply(
        self, plan: RetentionPlan, approval: ApprovalMarker | None = None
    ) -> RetentionReport:
        """Remove what ``plan`` lists, through the review gate.

        Raises:
            StorageError: ``review_required`` (audited as denied) without an
                approval; ``conflict`` if a snapshot in the plan has become an
                unfinished run's resume point since planning.
        """
        action = LifecycleAction(
            kind="apply_retention",
            target=f"retention:{plan.policy.applies_to}",
            params={"items": len(plan.items)},
        )
        await self._gate.check(action, approval)
        streams = lines = snapshots = 0
        for item in plan.items:
            if item.kind == "logs":
                lines += await self._logs.purge(item.run_id, approval=approval)
                streams += 1
            else:
                snapshots += await self._runs.prune_snapshots(
                    item.run_id, item.snapshot_numbers or [], approval=approval
                )
        return RetentionReport(log_streams=streams, log_lines=lines, snapshots=snapshots)
