"""Doctor: find damage and inconsistencies; repair them under review."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.diagnostics import DiagnosisReport, Diagnostic


class Doctor(Protocol):
    """Checks a store and proposes repairs."""

    async def diagnose(
        self,
        *,
        stale_after: timedelta = timedelta(hours=1),
        verify_blobs: bool = True,
        progress: Callable[[str, int], None] | None = None,
    ) -> DiagnosisReport:
        """Check everything; never raises for what it finds.

        Args:
            stale_after: a ``running`` run untouched (no change, no log line)
                for this long is reported as ``stale_run``.
            verify_blobs: re-hash every referenced blob (slower, thorough).
        """
        ...

    async def repair(
        self, diagnostics: list[Diagnostic], *, approval: ApprovalMarker | None = None
    ) -> list[dict[str, Any]]:
        """Apply the proposed repairs (those with a ``repair`` action), each a
        ``repair`` lifecycle action through the review gate.

        Returns:
            One result per repaired diagnostic.

        Raises:
            StorageError: ``review_required`` (audited as denied) without an
                approval.
        """
        ...
