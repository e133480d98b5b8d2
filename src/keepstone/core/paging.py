"""Keyset paging over a record engine: the one cursor format and the one scan loop.

Every listing keepstone offers pages in ``order`` then by key, and resumes
after the last row it returned: the *keyset* of that row (its ``order``
values, then its key string) is what ``RecordEngine.find(after=...)`` takes.

- :func:`fetch_page` is one page of a public listing, with an opaque cursor
  (:func:`encode_cursor` / :func:`decode_cursor`) for the next one.
- :func:`scan` and :func:`scan_pages` read a whole table (or the rows matching
  a filter) page by page, for replay, verification, export and the doctor.

Cursors
-------

A cursor is URL-safe base64 (no padding) of the canonical JSON
``[CURSOR_FORMAT, binding, keyset]``:

- ``binding`` names the listing that made it: 128 bits of SHA-256 over the
  canonical JSON of the listing's name (``"runs.list"``), its table, its
  order and the caller's filter (the query model, the profile, the run...).
  A cursor is accepted only by a call with the same listing and filter;
  the page size may change between pages.
- ``keyset`` is the position to resume after. Its values are checked against
  the listing's order columns before any reaches an engine: integers within
  64 bits (signed) for ``seq`` and ``number``, strings for every other
  column and for keys, and for tables keyed by seq a key that is the seq
  itself, written in decimal.
- The token must be exactly the one keepstone would write for its content
  (no other padding, spacing or number spelling).

Anything else is refused with ``invalid`` before the engine is asked: bytes
that are not such a token, a token of another format version (a *stale*
cursor, from an older or newer keepstone: start the listing again), one bound
to another listing or filter (a *foreign* cursor), or a keyset whose values
have the wrong type or range (a *forged* one).

The binding is a digest, not a signature: someone who builds a token by hand
with the right binding and well-typed values gets a valid position in that
same listing, which is harmless. The filter is applied anew on every page,
so a cursor only chooses where in the listing a page starts: it can never
reach rows outside the listing's filter, or put anything but a string or a
64-bit integer into a comparison. Signing tokens would need a secret stored with
each store and kept across processes, for no gain in what a caller can see.

A cursor is a position, not a snapshot: rows written or deleted after it was
made are listed or skipped by where they sort, and a cursor whose last row
has since been deleted still resumes after that row's place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel

from keepstone.engine.spi import Cmp, In, RecordEngine, Table
from keepstone.errors import StorageError
from keepstone.schemas._base import format_timestamp
from keepstone.schemas.artifacts import BlobInfo
from keepstone.schemas.common import MAX_PAGE_SIZE

PAGE = 5000
"""Rows per engine read when scanning a whole table."""

BLOB_PAGE = 1000
"""Blobs per engine listing when scanning every blob."""

CURSOR_FORMAT = 1
"""The version of the cursor format; a cursor of another version is refused."""

MAX_CURSOR_CHARS = 16_384
"""The longest cursor accepted (keepstone's longest is about a third of it)."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""The range of the integers engines store in ``seq`` and ``number`` columns."""

INT_COLUMNS = frozenset({"seq", "number"})
"""The order columns that hold integers; every other order column holds text."""

ValueKind = Literal["int", "str", "seq_key", "digest"]
"""What a keyset value must be: a 64-bit integer, a string, the decimal string
of a seq (the key of a table keyed by seq), or a blob digest."""


@dataclass(frozen=True, slots=True)
class Listing:
    """What a listing's cursors are bound to.

    Attributes:
        name: the listing, as the port method is called (``"runs.list"``).
        filter: the caller's filter, anything :func:`canonical_filter`
            takes (a query model, ids, ``None``).
    """

    name: str
    filter: Any = None


def check_limit(limit: int) -> None:
    """Refuse (``invalid``) a page size outside 1..``MAX_PAGE_SIZE``."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise StorageError(
            "invalid", f"limit must be an integer from 1 to {MAX_PAGE_SIZE}", {"limit": limit}
        )


def seq_bound(value: Any, what: str) -> int:
    """A caller's seq bound (``after_seq``, ``through_seq``) as engines compare
    it: a non-negative integer, capped at the largest seq an engine can hold
    (so a bound beyond 64 bits means what it says: no seq is above it).

    Raises:
        StorageError: ``invalid`` when ``value`` is not a non-negative integer.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StorageError(
            "invalid", f"{what} must be a non-negative integer, not {value!r}", {what: repr(value)}
        )
    return min(value, INT64_MAX)


# --------------------------------------------------------------------------- cursors


def canonical_filter(value: Any) -> Any:
    """``value`` as plain JSON data, for a listing's binding: models as their
    JSON dump, datetimes as RFC 3339, filter conditions tagged by kind."""
    if isinstance(value, BaseModel):
        return canonical_filter(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): canonical_filter(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {"all": [canonical_filter(v) for v in value]}
    if isinstance(value, list):
        return [canonical_filter(v) for v in value]
    if isinstance(value, Cmp):
        return {"cmp": value.op, "value": canonical_filter(value.value)}
    if isinstance(value, In):
        return {"in": [canonical_filter(v) for v in value.values]}
    if isinstance(value, datetime):
        return format_timestamp(value)
    if value is None or isinstance(value, str | int | float):
        return value
    return {"repr": repr(value)}


def listing_binding(listing: Listing, table: str, order: Sequence[str]) -> str:
    """The ``binding`` of :func:`encode_cursor` for ``listing`` over ``table``
    in ``order``: 128 bits of SHA-256 of their canonical JSON, URL-safe base64.

    The standard library's JSON writer is used, not orjson: a filter may hold
    an integer beyond 64 bits (a metadata value), which orjson refuses.
    """
    data = [CURSOR_FORMAT, listing.name, table, list(order), canonical_filter(listing.filter)]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(text.encode("ascii")).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def value_kinds(table: Table, order: Sequence[str]) -> tuple[ValueKind, ...]:
    """What each value of a keyset of ``table`` in ``order`` must be."""
    kinds: list[ValueKind] = ["int" if c in INT_COLUMNS else "str" for c in order]
    kinds.append("seq_key" if table.keyed_by_seq else "str")
    return tuple(kinds)


def encode_cursor(binding: str, values: Sequence[Any]) -> str:
    """The opaque cursor resuming after the keyset ``values`` of the listing
    whose :func:`listing_binding` is ``binding``."""
    data = orjson.dumps([CURSOR_FORMAT, binding, list(values)])
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def decode_cursor(
    cursor: str | None, binding: str, kinds: Sequence[ValueKind]
) -> tuple[Any, ...] | None:
    """The keyset of a cursor of the listing bound to ``binding`` (``None`` for
    no cursor), its values of ``kinds``.

    Raises:
        StorageError: ``invalid`` for anything but a cursor keepstone made for
            this listing and filter (see the module docstring).
    """
    if cursor is None:
        return None
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_CHARS:
        raise _not_ours()
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        data = orjson.loads(raw)
    except (ValueError, binascii.Error, orjson.JSONDecodeError, UnicodeEncodeError) as exc:
        raise _not_ours() from exc
    if not isinstance(data, list) or len(data) != 3 or type(data[0]) is not int:
        raise _not_ours()
    version, bound, values = data
    if version != CURSOR_FORMAT:
        raise StorageError(
            "invalid",
            f"the cursor was made by another version of keepstone (cursor format {version}, "
            f"this one reads {CURSOR_FORMAT}); start the listing again without a cursor",
            {"cursor_format": version},
        )
    if not isinstance(bound, str) or not isinstance(values, list):
        raise _not_ours()
    if bound != binding:
        raise StorageError(
            "invalid",
            "the cursor belongs to another listing, or to this one with other filters: "
            "pass a cursor only to the call that returned it, with the same arguments",
            {},
        )
    if len(values) != len(kinds) or not _keyset_ok(values, kinds):
        raise _not_ours()
    if encode_cursor(binding, values) != cursor:
        raise _not_ours()
    return tuple(values)


def _not_ours() -> StorageError:
    return StorageError(
        "invalid",
        "the cursor is not one keepstone made; pass back a next_cursor exactly as it was "
        "returned, or no cursor to start the listing",
        {},
    )


def _keyset_ok(values: Sequence[Any], kinds: Sequence[ValueKind]) -> bool:
    for value, kind in zip(values, kinds, strict=True):
        if kind == "int":
            if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
                return False
        elif kind == "seq_key":
            if not _seq_key(value):
                return False
        elif kind == "digest":
            if not _digest(value):
                return False
        elif type(value) is not str:
            return False
    # A table keyed by seq orders by seq: the key is that seq, in decimal.
    if kinds[-1] == "seq_key" and len(kinds) > 1 and kinds[-2] == "int":
        return bool(str(values[-2]) == values[-1])
    return True


def _seq_key(value: Any) -> bool:
    return (
        type(value) is str
        and 0 < len(value) <= 19
        and value.isascii()
        and value.isdigit()
        and str(int(value)) == value
        and int(value) <= INT64_MAX
    )


def _digest(value: Any) -> bool:
    return (
        type(value) is str
        and len(value) == 71
        and value.startswith("sha256:")
        and all(c in "0123456789abcdef" for c in value[7:])
    )


def keyset(table: Table, order: Sequence[str], row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Where ``row`` sits in a listing of ``table`` in ``order`` then key."""
    return (*(Table.value(row, c) for c in order), table.key_of(row))


def natural_order(table: Table) -> tuple[str, ...]:
    """Commit order (``seq``) for sequenced tables, key order for the others."""
    return ("seq",) if table.seq else ()


def default_listing(
    table: Table,
    where: Mapping[str, Any] | None,
    tags: Mapping[str, Any] | None,
    text: str | None,
) -> Listing:
    """The listing a page is bound to when its caller names none: the table
    and every filter the engine is given."""
    return Listing(table.name, {"where": where or {}, "tags": tags or {}, "text": text})


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
    listing: Listing | None = None,
) -> tuple[list[bytes], str | None]:
    """The rows of one page of ``table`` in ``order`` (then key), and the
    cursor of the next page (``None`` on the last).

    ``listing`` is what the cursors are bound to: the port method and the
    caller's filter. Without it they are bound to ``table`` and the engine
    filters (:func:`default_listing`), which is right only when those do not
    change between pages for one caller's filter (they do when they hold ids
    found by a search, say).

    Raises:
        StorageError: ``invalid`` for a bad ``limit`` or a cursor keepstone did
            not make for this listing (see the module docstring); ``corrupt``
            when the last row of a page has no valid place in the order.
    """
    check_limit(limit)
    binding = listing_binding(
        listing or default_listing(table, where, tags, text), table.name, order
    )
    kinds = value_kinds(table, order)
    after = decode_cursor(cursor, binding, kinds)
    rows = await engine.find(
        table, where, order=order, after=after, limit=limit + 1, tags=tags, text=text
    )
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, _next_cursor(table, order, rows[-1], binding, kinds)


def _next_cursor(
    table: Table, order: Sequence[str], raw: bytes, binding: str, kinds: Sequence[ValueKind]
) -> str:
    try:
        values = keyset(table, order, orjson.loads(raw))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise _unplaceable(table) from exc
    if not _keyset_ok(values, kinds):
        raise _unplaceable(table)
    return encode_cursor(binding, values)


def _unplaceable(table: Table) -> StorageError:
    return StorageError(
        "corrupt",
        f"a stored {table.name} row cannot be read, so the listing cannot go on; run the doctor",
        {"table": table.name},
    )


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
                raise _unplaceable(table) from exc
    return None, []
