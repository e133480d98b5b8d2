"""Keyset paging over a record engine: the one cursor format and the one scan loop.

Every listing keepstone offers pages in ``order`` then by key, and resumes
after the last row it returned: the *keyset* of that row (its ``order``
values, then its key string) is what ``RecordEngine.find(after=...)`` takes.

- :func:`fetch_page` is one page of a public listing, with an opaque cursor
  (:func:`encode_cursor` / :func:`decode_cursor`) for the next one.
- :func:`scan` and :func:`scan_pages` read a whole table (or the rows matching
  a filter) page by page, for replay, verification, export and the doctor.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson

from keepstone.engine.spi import RecordEngine, Table
from keepstone.errors import StorageError
from keepstone.schemas.artifacts import BlobInfo
from keepstone.schemas.common import MAX_PAGE_SIZE

PAGE = 5000
"""Rows per engine read when scanning a whole table."""

BLOB_PAGE = 1000
"""Blobs per engine listing when scanning every blob."""


def check_limit(limit: int) -> None:
    """Refuse (``invalid``) a page size outside 1..``MAX_PAGE_SIZE``."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise StorageError(
            "invalid", f"limit must be an integer from 1 to {MAX_PAGE_SIZE}", {"limit": limit}
        )


def encode_cursor(values: Sequence[Any]) -> str:
    """The opaque cursor for a keyset (URL-safe, no padding)."""
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str | None, width: int) -> tuple[Any, ...] | None:
    """Decode an opaque cursor; ``invalid`` if it was not made by keepstone."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, orjson.JSONDecodeError, UnicodeEncodeError) as exc:
        raise StorageError("invalid", "the cursor is not one keepstone made", {}) from exc
    if not isinstance(values, list) or len(values) != width:
        raise StorageError("invalid", "the cursor does not belong to this listing", {})
    return tuple(values)


def keyset(table: Table, order: Sequence[str], row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Where ``row`` sits in a listing of ``table`` in ``order`` then key."""
    return (*(Table.value(row, c) for c in order), table.key_of(row))


def natural_order(table: Table) -> tuple[str, ...]:
    """Commit order (``seq``) for sequenced tables, key order for the others."""
    return ("seq",) if table.seq else ()


async def fetch_page(
    engine: RecordEngine,
    table: Table,
    *,
    where: Mapping[str, Any] | None = None,
    order: tuple[str, ...] = (),
    cursor: str | None = None,
    limit: int = 100,
    tags: Mapping[str, Any] | None = None,
    text: str | None = None,
) -> tuple[list[bytes], str | None]:
    """The rows of one page of ``table`` in ``order`` (then key), and the
    cursor of the next page (``None`` on the last).

    Raises:
        StorageError: ``invalid`` for a bad ``limit`` or a cursor keepstone did
            not make for a listing of this shape.
    """
    check_limit(limit)
    after = decode_cursor(cursor, len(order) + 1)
    rows = await engine.find(
        table, where, order=order, after=after, limit=limit + 1, tags=tags, text=text
    )
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(keyset(table, order, orjson.loads(rows[-1])))


async def scan_pages(
    engine: RecordEngine,
    table: Table,
    where: Mapping[str, Any] | None = None,
    *,
    order: tuple[str, ...] | None = None,
    batch: int = PAGE,
    skip_unreadable: bool = False,
) -> AsyncIterator[list[bytes]]:
    """Every row of ``table`` matching ``where``, in ``order`` then key, read
    ``batch`` rows at a time; yields each non-empty page.

    ``order`` defaults to :func:`natural_order`. A page is resumed after the
    last row of the one before, so the rows must be readable JSON objects
    carrying their order and key fields: an unreadable last row of a full page
    raises ``corrupt``. With ``skip_unreadable`` (the doctor, which reports
    such rows itself) the scan resumes after the last readable row of the page
    instead (the unreadable rows after it are read again, and not yielded
    twice), and stops when a full page has no readable row.
    """
    cols = natural_order(table) if order is None else order
    after: tuple[Any, ...] | None = None
    again: list[bytes] = []
    while True:
        rows = await engine.find(table, where, order=cols, after=after, limit=batch)
        fresh = rows[len(again) :] if again and rows[: len(again)] == again else rows
        if fresh:
            yield fresh
        if len(rows) < batch:
            return
        after, again = _resume_after(table, cols, rows, skip_unreadable)
        if after is None:
            return


async def scan(
    engine: RecordEngine,
    table: Table,
    where: Mapping[str, Any] | None = None,
    *,
    order: tuple[str, ...] | None = None,
    batch: int = PAGE,
    skip_unreadable: bool = False,
) -> AsyncIterator[bytes]:
    """The rows of :func:`scan_pages`, one at a time."""
    async for rows in scan_pages(
        engine, table, where, order=order, batch=batch, skip_unreadable=skip_unreadable
    ):
        for raw in rows:
            yield raw


async def scan_blobs(engine: RecordEngine, batch: int = BLOB_PAGE) -> AsyncIterator[BlobInfo]:
    """Every stored blob, in digest order."""
    after: str | None = None
    while True:
        infos = await engine.blob_list(after, batch)
        for info in infos:
            yield info
        if len(infos) < batch:
            return
        after = infos[-1].digest


def _resume_after(
    table: Table, order: Sequence[str], rows: list[bytes], skip_unreadable: bool
) -> tuple[tuple[Any, ...] | None, list[bytes]]:
    """The keyset after the last readable row of ``rows``, and the unreadable
    rows that follow it (``None`` when no row is readable)."""
    for i in range(len(rows) - 1, -1, -1):
        try:
            return keyset(table, order, orjson.loads(rows[i])), rows[i + 1 :]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            if not skip_unreadable:
                raise StorageError(
                    "corrupt",
                    f"a stored {table.name} row cannot be read, so the listing cannot go on; "
                    "run the doctor",
                    {"table": table.name},
                ) from exc
    return None, []
