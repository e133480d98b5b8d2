"""Shapes shared by every domain: pages of results and references."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10_000


class Page(BaseModel, Generic[T]):
    """One page of a listing.

    ``next_cursor`` is ``None`` on the last page; otherwise pass it back as
    ``cursor=`` to get the next page. Cursors are opaque strings.
    """

    model_config = ConfigDict(frozen=True)

    items: list[T]
    next_cursor: str | None = None
