"""Audit: hash-chained records, approval markers, lifecycle actions."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field

from keepstone.schemas._base import (
    SCHEMA_VERSION,
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
    any stored audit record breaks the chain at that record. ``writes``
    commits the chain to the data: for every row the change put, appended or
    deleted, table -> key -> the SHA-256 (hex) of the row's canonical JSON,
    or ``None`` for a deletion (see :func:`row_digest`). Editing, adding or
    removing a stored row behind keepstone's back is then found by
    ``audit.verify(rows=True)`` and the doctor.
    """

    seq: int = Field(ge=1)
    at: UtcDatetime
    actor: str
    action: Name
    target: str
    outcome: AuditOutcome = "applied"
    approval: ApprovalMarker | None = None
    details: JsonObject | None = None
    writes: dict[str, dict[str, str | None]] | None = None
    prev_hash: Digest
    hash: Digest

    @property
    def anchor(self) -> str:
        """``<seq>:<hash>``: what to keep elsewhere to prove this history later
        (``audit.verify(against=...)``)."""
        return anchor_of(self.seq, self.hash)


class AuditQuery(Model):
    """Filters for listing audit records."""

    action: str | None = None
    target: str | None = None
    actor: str | None = None
    outcome: AuditOutcome | None = None
    after_seq: int | None = Field(default=None, ge=0)


class RowMismatch(Model):
    """A stored row that is not what the audit chain recorded."""

    table: str
    key: str
    seq: int | None
    """The audit record that last wrote the row (``None``: no record did)."""
    problem: str


class AuditVerification(Model):
    """The result of walking the audit chain (and, with ``rows``, the data).

    ``first_broken_seq``/``problem`` name the first broken link of the chain,
    or the audit record whose row no longer matches what is stored (then
    ``table`` and ``key`` name the row). ``mismatches`` lists up to
    :data:`MAX_MISMATCHES` rows that differ from the chain, oldest record first.
    """

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    problem: str | None = None
    table: str | None = None
    key: str | None = None
    rows_checked: int = 0
    mismatches: list[RowMismatch] = Field(default_factory=list)
    anchor: str | None = None
    """``<seq>:<hash>`` of the last record checked: keep it elsewhere, and a
    later ``verify(against=anchor)`` proves the history up to it unchanged."""


MAX_MISMATCHES = 100
"""Most row mismatches one verification lists."""


def anchor_of(seq: int, hash_: str) -> str:
    """The anchor string of audit record ``seq`` with hash ``hash_``."""
    return f"{seq}:{hash_}"


def parse_anchor(text: str) -> tuple[int, str]:
    """``(seq, hash)`` of an anchor written ``<seq>:sha256:<hex>``.

    Raises:
        StorageError: ``invalid`` for anything else.
    """
    from keepstone.errors import StorageError

    seq_text, sep, hash_ = str(text).strip().partition(":")
    if (
        not sep
        or not seq_text.isdigit()
        or int(seq_text) < 1
        or len(hash_) != 71
        or not hash_.startswith("sha256:")
        or any(c not in "0123456789abcdef" for c in hash_[7:])
    ):
        raise StorageError(
            "invalid",
            f"an audit anchor reads <seq>:sha256:<64 hex digits> (what 'audit head' prints), "
            f"not {text!r}",
            {"anchor": str(text)[:200]},
        )
    return int(seq_text), hash_


def row_digest(body: bytes) -> str:
    """What an audit record's ``writes`` holds for a row: the SHA-256, in hex,
    of the row's canonical JSON bytes (what every engine stores and returns)."""
    return hashlib.sha256(body).hexdigest()


def audit_hash(fields: dict[str, object]) -> str:
    """Hash of an audit record's JSON fields (everything but ``hash``).

    ``fields`` must be the record's JSON form (``model_dump(mode="json")``)
    and include ``prev_hash``. A ``writes`` of ``None`` is left out, so a
    record hashes the same whether or not its JSON spells the absent field.
    """
    body = {k: v for k, v in fields.items() if k != "hash" and (k != "writes" or v is not None)}
    return sha256_digest(dumps(body))


def chain_audit(draft: dict[str, object], seq: int, prev_hash: str) -> dict[str, object]:
    """Complete an audit draft: add ``seq``, ``prev_hash``, schema version and
    ``hash``. Engines call this in commit order."""
    fields = dict(draft)
    fields["seq"] = seq
    fields["prev_hash"] = prev_hash
    fields.setdefault("schema_version", SCHEMA_VERSION)
    fields["hash"] = audit_hash(fields)
    return fields


def requires_review(kind: LifecycleKind, review_required: list[LifecycleKind] | None) -> bool:
    """Whether a lifecycle action of ``kind`` needs an approval marker.

    ``review_required`` is the profile's policy list; ``None`` means the
    default: every lifecycle action needs review.
    """
    return True if review_required is None else kind in review_required
