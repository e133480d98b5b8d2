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

    async def verify(self, *, rows: bool = True, against: str | None = None) -> AuditVerification:
        """Walk the whole chain, then (with ``rows``) every stored row.

        The chain: names the first broken link (a record whose hash does not
        match its fields, whose ``prev_hash`` is not its predecessor's hash,
        or a gap in seq). The rows: every audit record commits, in
        ``writes``, to the digest of each row its change put, appended or
        deleted; each stored row must match what its last writer recorded,
        and each recorded row must be there. The first mismatch names the
        audit record, the table and the key (``mismatches`` lists more).

        Args:
            rows: also check the data (reads every row of the store);
                ``False`` checks the chain alone.
            against: an anchor kept elsewhere (``<seq>:<hash>``, as
                :meth:`head` ``.anchor`` and ``keepstone audit head`` give
                it): the chain must still hold that record unchanged, which
                also catches a history truncated and rebuilt consistently.

        Returns:
            The verdict; its ``anchor`` is the newest record's, to keep.

        Raises:
            StorageError: ``invalid`` for a malformed anchor (never for a
                broken chain or a mismatch: those are the verdict).
        """
        ...
