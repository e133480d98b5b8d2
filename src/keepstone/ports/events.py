"""EventLog: the append-only memory event log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from keepstone.schemas.common import Page
from keepstone.schemas.memory import EventQuery, MemoryEvent


class EventLog(Protocol):
    """Memory events in a store-wide, strictly increasing ``seq`` order.

    Appending applies each event to the stored graph in the same transaction,
    so the stored graph always equals the replay of its events.
    """

    async def append(self, events: Sequence[MemoryEvent]) -> list[MemoryEvent]:
        """Append ``events`` atomically, in order.

        Events whose id is already stored with identical content are no-ops
        and come back with their stored seq.

        Returns:
            The events as stored, with ``seq``.

        Raises:
            StorageError: ``conflict`` if an id is stored with different
                content, or appears twice in the batch with different content;
                ``integrity`` if an event refers to a profile, node, edge or
                path that does not exist; ``invalid`` if an event already has
                a seq or its payload is malformed.
        """
        ...

    async def get(self, event_id: str) -> MemoryEvent:
        """The event with ``event_id``.

        Raises:
            StorageError: ``not_found``.
        """
        ...

    async def list(
        self, query: EventQuery | None = None, *, cursor: str | None = None, limit: int = 1000
    ) -> Page[MemoryEvent]:
        """Events matching ``query`` in seq order.

        Raises:
            StorageError: ``invalid`` for a bad cursor or limit.
        """
        ...

    def iterate(
        self, query: EventQuery | None = None, *, batch_size: int = 5000
    ) -> AsyncIterator[MemoryEvent]:
        """Every event matching ``query`` in seq order, in constant memory."""
        ...

    async def last_seq(self) -> int:
        """The highest seq assigned so far (0 for an empty log)."""
        ...
