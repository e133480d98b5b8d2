"""Reading every item of a paged listing of the ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from keepstone.schemas.common import Page

T = TypeVar("T")

PAGE_SIZE = 1000
"""Items per page when a service reads a whole listing."""


async def every(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> AsyncIterator[T]:
    """Every item of the listing ``fetch(cursor)`` returns page by page,
    following ``next_cursor`` from ``None`` until the last page."""
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
