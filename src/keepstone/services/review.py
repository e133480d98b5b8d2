"""The review gate: lifecycle actions need an approval marker to apply.

Whether an action needs review comes from its kind and, for memory actions,
the profile's policy (``ProfilePolicy.review_required``; ``None`` = every
lifecycle action). Applying one without an approval raises
``review_required`` after writing a *denied* audit record; with one, the
action applies and its audit record carries the approval.

The ports enforce the gate themselves (``forget_node``, ``abandon_path``,
``compact_path``, ``purge_revision``, ``logs.purge``, ``prune_snapshots``
all take ``approval=``), so nothing can go around it; this service is the
single entry point that takes a :class:`LifecycleAction` as data.
"""

from __future__ import annotations

from typing import Any

from keepstone.errors import StorageError
from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.audit import AuditLog
from keepstone.ports.memory import MemoryStore
from keepstone.schemas.audit import ApprovalMarker, LifecycleAction, requires_review


class ReviewGate:
    """``store.review``: decide and apply lifecycle actions."""

    def __init__(self, memory: MemoryStore, artifacts: ArtifactStore, audit: AuditLog) -> None:
        self._memory = memory
        self._artifacts = artifacts
        self._audit = audit

    async def requires_review(self, action: LifecycleAction) -> bool:
        """Whether ``action`` needs an approval marker.

        Raises:
            StorageError: ``not_found`` for an unknown profile.
        """
        policy = None
        if action.profile_id is not None:
            profile = await self._memory.get_profile(action.profile_id)
            policy = None if profile.policy is None else profile.policy.review_required
        return requires_review(action.kind, policy)

    async def check(self, action: LifecycleAction, approval: ApprovalMarker | None) -> None:
        """Refuse (auditing the refusal) an action that needs review and has
        no approval.

        Raises:
            StorageError: ``review_required``.
        """
        if approval is None and await self.requires_review(action):
            await self._audit.record(
                f"lifecycle.{action.kind}",
                action.target,
                outcome="denied",
                details={"params": action.params, "reason": "no approval marker"},
            )
            raise StorageError(
                "review_required",
                f"{action.kind.replace('_', ' ')} of {action.target} needs review: pass an "
                "approval marker (ApprovalMarker(approved_by=..., reason=...), "
                "or --approve 'who: why')",
                {"action": action.kind, "target": action.target},
            )

    async def apply(
        self, action: LifecycleAction, approval: ApprovalMarker | None = None
    ) -> dict[str, Any]:
        """Apply a memory or artifact lifecycle action through the gate.

        ``params`` by kind: ``forget_node`` {reason?}, ``abandon_path``
        {reason}, ``compact_path`` {through_seq, summary}, ``purge_artifact``
        {revision} (target is the artifact id). Retention goes through
        :class:`~keepstone.services.retention.RetentionService`; repairs
        through the doctor.

        Raises:
            StorageError: ``review_required``; ``invalid`` for missing params
                or a kind this entry point does not apply; whatever the
                underlying port raises.
        """
        p = action.params or {}
        pid = action.profile_id
        try:
            if action.kind == "forget_node" and pid:
                await self._memory.forget_node(
                    pid, action.target, reason=p.get("reason"), approval=approval
                )
                return {"forgotten": action.target}
            if action.kind == "abandon_path" and pid:
                path = await self._memory.abandon_path(
                    pid, action.target, str(p["reason"]), approval=approval
                )
                return {"path": path.id, "status": path.status}
            if action.kind == "compact_path" and pid:
                path = await self._memory.compact_path(
                    pid,
                    action.target,
                    through_seq=int(p["through_seq"]),
                    summary=str(p["summary"]),
                    approval=approval,
                )
                return {"path": path.id, "compacted_through_seq": path.compacted_through_seq}
            if action.kind == "purge_artifact":
                rev = await self._artifacts.purge_revision(
                    action.target, int(p["revision"]), approval=approval
                )
                return {"artifact": rev.artifact_id, "revision": rev.number, "purged": True}
        except KeyError as exc:
            raise StorageError(
                "invalid",
                f"{action.kind} needs the parameter {exc.args[0]!r}",
                {"action": action.kind},
            ) from exc
        raise StorageError(
            "invalid",
            f"{action.kind} is not applied here"
            + (" (memory actions need profile_id)" if pid is None else ""),
            {"action": action.kind},
        )
