"""LogStore: append-only JSONL log streams, one per run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page
from keepstone.schemas.logs import LogLevel, LogLine, LogQuery, LogReference


class LogStore(Protocol):
    """Log lines per run. Lines get a store-wide, strictly increasing ``seq``;
    a run's stream is its lines in ``seq`` order, and ``line`` numbers them
    1, 2, 3... per run (concurrent writers of one run, in any process, never
    share or skip a number). A sealed stream refuses further lines and has a
    :class:`LogReference`."""

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> list[LogLine]:
        """Append ``lines`` (all or none) to the run's stream.

        Returns:
            The lines as stored, with ``seq`` and ``line`` assigned.

        Raises:
            StorageError: ``integrity`` if the run does not exist; ``invalid``
                if a line names another run or already has a seq or line;
                ``conflict`` if the stream is sealed.
        """
        ...

    async def write(
        self,
        run_id: str,
        event: str,
        *,
        level: LogLevel = "info",
        message: str | None = None,
        step: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> LogLine:
        """Append one line stamped with the store's clock.

        Raises:
            StorageError: as :meth:`append`.
        """
        ...

    async def read(
        self,
        run_id: str,
        query: LogQuery | None = None,
        *,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> Page[LogLine]:
        """A run's lines in order, filtered by ``query``.

        Raises:
            StorageError: ``not_found`` for an unknown run; ``invalid`` cursor.
        """
        ...

    def follow(
        self, run_id: str, *, after_seq: int = 0, poll_interval: float = 0.2
    ) -> AsyncIterator[LogLine]:
        """Yield lines as they arrive, like ``tail -f``; ends once the stream
        is sealed and every line has been yielded.

        Raises:
            StorageError: ``not_found`` for an unknown run.
        """
        ...

    async def seal(self, run_id: str) -> LogReference:
        """Close the stream: store its JSONL as a blob and return a reference.
        Sealing a sealed stream returns the existing reference.

        Raises:
            StorageError: ``not_found`` for an unknown run.
        """
        ...

    async def purge(self, run_id: str, *, approval: ApprovalMarker | None = None) -> int:
        """Delete a run's log stream (lines, reference and sealed bytes): a
        lifecycle action (retention), review-gated.

        Returns:
            The number of lines removed.

        Raises:
            StorageError: ``review_required`` (audited as denied) without an
                approval; ``not_found`` for an unknown run.
        """
        ...

    async def reference(self, run_id: str) -> LogReference | None:
        """The sealed stream's reference, or ``None`` while it is open.

        Raises:
            StorageError: ``not_found`` for an unknown run.
        """
        ...
