"""Listings: newest first by default, at most ``--limit`` items.

The API lists in creation (or seq) order, a page at a time. People mostly
want the latest things, so a listing shows the newest ``--limit`` items,
newest first; ``--oldest-first`` gives the API's order, a page at a time,
and ``--cursor`` continues it. Newest first reads the matching listing to
its end (keeping only ``--limit`` items in memory), except where a seq
bounds the range (the audit chain, memory events): there it reads windows
of seqs backwards from the newest, so a long history costs what is shown.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from keepstone.cli.output import hint
from keepstone.schemas import Page
from keepstone.services.paging import every as follow_pages

T = TypeVar("T")

PAGE = 1000
"""Items asked for per call while reading a listing to its end."""


@dataclass
class Listing(Generic[T]):
    """What a listing command shows.

    Attributes:
        items: in the order shown.
        next_cursor: oldest first: where the next page starts, if any.
        older: items were left out by ``--limit`` (older ones, newest first).
        newest_first: the order of ``items``.
    """

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None
    older: bool = False
    newest_first: bool = True


def every(fetch: Callable[[str | None, int], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """Every item of a paged listing ``fetch(cursor, limit)``, in its order."""
    return follow_pages(lambda cursor: fetch(cursor, PAGE))


async def read(
    fetch: Callable[[str | None, int], Awaitable[Page[T]]],
    *,
    limit: int,
    cursor: str | None,
    oldest_first: bool,
) -> Listing[T]:
    """A listing of ``fetch(cursor, limit)`` pages: the newest ``limit``
    items, newest first; or, with ``oldest_first`` (or a ``cursor``), one
    page in the API's order."""
    if oldest_first or cursor is not None:
        page = await fetch(cursor, limit)
        return Listing(list(page.items), next_cursor=page.next_cursor, newest_first=False)
    tail: deque[T] = deque(maxlen=limit)
    seen = 0
    async for item in every(fetch):
        tail.append(item)
        seen += 1
    return Listing(list(reversed(tail)), older=seen > limit)


async def read_by_seq(
    fetch_after: Callable[[int, str | None, int], Awaitable[Page[T]]],
    *,
    last_seq: int,
    floor: int,
    limit: int,
) -> Listing[T]:
    """The newest ``limit`` items of a seq-ordered listing, newest first.

    Args:
        fetch_after: ``fetch_after(after_seq, cursor, limit)``, one page of
            the items after ``after_seq`` in seq order.
        last_seq: the newest seq of the store (no item is above it).
        floor: no item at or below this seq is wanted (``--after``).
    """
    window = max(4 * limit, PAGE)
    while True:
        start = max(floor, last_seq - window)
        tail: deque[T] = deque(maxlen=limit)
        seen = 0
        cursor: str | None = None
        while True:
            page = await fetch_after(start, cursor, PAGE)
            tail.extend(page.items)
            seen += len(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if seen >= limit or start == floor:
            break
        window *= 8
    older = seen > limit
    if not older and start > floor:  # exactly `limit` in the window: anything before it?
        first = await fetch_after(floor, None, 1)
        older = bool(first.items) and _before(first.items[0], start)
    return Listing(list(reversed(tail)), older=older)


def _before(item: object, seq: int) -> bool:
    value = getattr(item, "seq", None)
    return isinstance(value, int) and value <= seq


def show_more(listing: Listing[T]) -> None:
    """Tell people (on stderr) how to see what a listing left out."""
    if listing.next_cursor is not None:
        hint(f"more: repeat with --oldest-first --cursor {listing.next_cursor}")
    elif listing.older and listing.newest_first:
        hint(
            f"showing the newest {len(listing.items)}; raise --limit to see older ones, "
            "or page through all with --oldest-first"
        )
    elif listing.older:
        hint(f"showing the oldest {len(listing.items)}; raise --limit to see the others")
