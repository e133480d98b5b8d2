"""AuditLog: the hash-chained record of every durable change."""

from __future__ import annotations

from typing import Any, Protocol

from keepstone.schemas.audit import (
    ApprovalMarker,
    AuditOutcome,
    AuditQuery,
    AuditRecord,
    AuditVerification,
)
from keepstone.schemas.common import Page


class AuditLog(Protocol):
    """Audit records in commit order, each hashing its predecessor.

    Stores write audit records themselves, in the transaction of the change
    they describe; :meth:`record` is for actions decided above the store
    (a denied lifecycle action, an external approval).
    """

    async def record(
        self,
        action: str,
        target: str,
        *,
        outcome: AuditOutcome = "applied",
        approval: ApprovalMarker | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append an audit record.

        Raises:
            StorageError: ``invalid`` for an empty action or bad details.
        """
        ...

    async def get(self, seq: int) -> AuditRecord:
        """Raises: StorageError ``not_found``."""
        ...

    async def head(self) -> AuditRecord | None:
        """The newest record, or ``None`` for an empty chain."""
        ...

    async def list(
        self, query: AuditQuery | None = None, *, cursor: str | None = None, limit: int = 100
    ) -> Page[AuditRecord]:
        """Records in seq order. Raises: StorageError ``invalid`` cursor."""
        ...

    async def verify(self) -> AuditVerification:
        """Walk the whole chain; names the first broken link (a record whose
        hash does not match its fields, or whose ``prev_hash`` is not its
        predecessor's hash, or a gap in seq). Never raises for a broken chain.
        """
        ...
