"""Audit: hash-chained records, approval markers, lifecycle actions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from keepstone.schemas._base import (
    Digest,
    JsonObject,
    Model,
    Name,
    Record,
    UtcDatetime,
    dumps,
    sha256_digest,
)
from keepstone.schemas.memory import LifecycleKind

AuditOutcome = Literal["applied", "denied", "failed"]

GENESIS_HASH = "sha256:" + "0" * 64
"""The ``prev_hash`` of the first audit record."""


class ApprovalMarker(Model):
    """An explicit approval of a lifecycle action: who approved it and why."""

    approved_by: Name
    reason: Name
    approved_at: UtcDatetime | None = None

    @classmethod
    def parse(cls, text: str) -> ApprovalMarker:
        """Parse ``"who: why"`` (the CLI's ``--approve`` form)."""
        who, sep, why = text.partition(":")
        if not sep or not who.strip() or not why.strip():
            from keepstone.errors import StorageError

            raise StorageError(
                "invalid", "an approval reads 'who: why', e.g. 'alice: weekly cleanup'"
            )
        return cls(approved_by=who.strip(), reason=why.strip())


class LifecycleAction(Model):
    """A destructive action on the store that may need review."""

    kind: LifecycleKind
    target: str
    params: JsonObject | None = None
    profile_id: str | None = None


class AuditRecord(Record):
    """One entry of the tamper-evident audit chain.

    ``hash`` covers every other field, including ``prev_hash``, so editing
    any stored record breaks the chain at that record.
    """

    seq: int = Field(ge=1)
    at: UtcDatetime
    actor: str
    action: Name
    target: str
    outcome: AuditOutcome = "applied"
    approval: ApprovalMarker | None = None
    details: JsonObject | None = None
    prev_hash: Digest
    hash: Digest


class AuditQuery(Model):
    """Filters for listing audit records."""

    action: str | None = None
    target: str | None = None
    actor: str | None = None
    outcome: AuditOutcome | None = None
    after_seq: int | None = Field(default=None, ge=0)


class AuditVerification(Model):
    """The result of walking the audit chain."""

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    problem: str | None = None


def audit_hash(fields: dict[str, object]) -> str:
    """Hash of an audit record's JSON fields (everything but ``hash``).

    ``fields`` must be the record's JSON form (``model_dump(mode="json")``)
    and include ``prev_hash``.
    """
    body = {k: v for k, v in fields.items() if k != "hash"}
    return sha256_digest(dumps(body))


def chain_audit(draft: dict[str, object], seq: int, prev_hash: str) -> dict[str, object]:
    """Complete an audit draft: add ``seq``, ``prev_hash``, schema version and
    ``hash``. Engines call this in commit order."""
    fields = dict(draft)
    fields["seq"] = seq
    fields["prev_hash"] = prev_hash
    fields.setdefault("schema_version", 1)
    fields["hash"] = audit_hash(fields)
    return fields


def requires_review(kind: LifecycleKind, review_required: list[LifecycleKind] | None) -> bool:
    """Whether a lifecycle action of ``kind`` needs an approval marker.

    ``review_required`` is the profile's policy list; ``None`` means the
    default: every lifecycle action needs review.
    """
    return True if review_required is None else kind in review_required
