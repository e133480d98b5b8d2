"""Pure helpers engines share: filter matching, ordering, text matching.

:func:`words` is :func:`keepstone.schemas.fulltext.words`, the one definition
of what full-text search indexes and matches (it lives with the schemas so
that the CLI, which may not import engines, folds names the same way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keepstone.engine.spi import Check, Cmp, In, Table
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps
from keepstone.schemas.fulltext import words

__all__ = [
    "check_row",
    "matches",
    "order_key",
    "seq_key_of",
    "tags_storable",
    "text_matches",
    "words",
]


def matches(table: Table, row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """Whether ``row`` satisfies every filter of ``where``."""
    for column, cond in where.items():
        value = Table.value(row, column)
        if isinstance(cond, tuple):
            if not all(_compare(value, c) for c in cond):
                return False
        elif isinstance(cond, Cmp):
            if not _compare(value, cond):
                return False
        elif isinstance(cond, In):
            if value not in cond.values:
                return False
        elif value != cond:
            return False
    return True


def _compare(value: Any, cond: Cmp) -> bool:
    if value is None:
        return False
    if cond.op == ">":
        return bool(value > cond.value)
    if cond.op == ">=":
        return bool(value >= cond.value)
    if cond.op == "<":
        return bool(value < cond.value)
    return bool(value <= cond.value)


def text_matches(table: Table, row: Mapping[str, Any], query: str) -> bool:
    """Every word of ``query`` occurs as a word in one of the text fields."""
    wanted = words(query)
    have: set[str] = set()
    for column in table.text:
        value = Table.value(row, column)
        if isinstance(value, str):
            have.update(words(value))
    return bool(wanted) and all(w in have for w in wanted)


def seq_key_of(table: Table, key_tuple: tuple[Any, ...]) -> tuple[Any, ...]:
    """Normalise a cursor tuple (order values then key) for comparison."""
    if table.keyed_by_seq:
        return (*key_tuple[:-1], int(key_tuple[-1]))
    return tuple(key_tuple)


def order_key(
    table: Table, row: Mapping[str, Any], order: tuple[str, ...], key: str
) -> tuple[Any, ...]:
    """Sort key of a row: the ``order`` column values, then the row key."""
    values = tuple(Table.value(row, c) for c in order)
    return seq_key_of(table, (*values, key))


def check_row(op: Check, row: Mapping[str, Any] | None) -> None:
    """Raise ``op``'s error unless ``row`` satisfies the precondition."""
    if op.exists:
        ok = row is not None and all(Table.value(row, f) == v for f, v in op.equals.items())
    else:
        ok = row is None
    if not ok:
        raise StorageError(op.code, op.message, dict(op.details))


def tags_storable(tags: Mapping[str, Any]) -> bool:
    """Whether every value of a ``tags`` filter has a canonical JSON form.

    Tags are compared as canonical JSON (:func:`keepstone.schemas._base.dumps`).
    A value that has none, such as an integer beyond 64 bits, equals no stored
    value (rows holding one are refused when written), so a filter holding it
    matches no row: engines answer it with nothing rather than an error.
    """
    try:
        for value in tags.values():
            dumps(value)
    except (TypeError, ValueError):
        return False
    return True
