"""How each :class:`Table` maps onto PostgreSQL, and the SQL built from filters.

The shape is the SQLite one (see :mod:`keepstone.backends.sql.sqlite_schema`):
a key column (``seq`` for tables keyed by seq, the key field for a single-field
key, else ``pk`` holding the joined key string), one column per key field,
``seq`` and ``columns`` entry, and ``body`` with the canonical JSON bytes.
What differs:

* columns are typed: ``seq`` and ``number`` are ``bigint``, every other
  field ``text COLLATE "C"`` (code-point order, like the reference);
* a ``tags`` field is a ``jsonb`` column ``{key: canonical JSON of the
  value}`` queried with ``@>`` (GIN), instead of a side table;
* ``text`` fields feed a ``tsvector`` column built by keepstone from the
  words the reference matches on (:mod:`keepstone.schemas.fulltext`; so
  PostgreSQL's parser never splits or folds a word differently), queried
  with ``@@`` and an AND of quoted lexemes; words that do not fit a
  tsvector's 1 MB go to ``words text[]``.

The DDL lives in ``migrations/postgres/NNNN_*.sql``; a test checks it against
:data:`~keepstone.engine.tables.ALL_TABLES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keepstone.backends.sql.common import (
    INT_FIELDS,
    column_name,
    key_and_columns,
    lexeme,
    lexemes,
    quote,
)
from keepstone.engine.match import tags_storable, words
from keepstone.engine.spi import Cmp, In, Table
from keepstone.engine.tables import ALL_TABLES
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps

_SQL_OPS = {">": ">", ">=": ">=", "<": "<", "<=": "<="}

TSVECTOR_MAX_BYTES = 1_000_000
"""Lexeme bytes above which a row's words go to ``words text[]`` instead of
``tsv`` (PostgreSQL refuses a tsvector of 1 MB or more)."""


class Params:
    """Positional parameters of one statement (``$1``, ``$2``, ...)."""

    def __init__(self, start: int = 0) -> None:
        self.start = start
        self.values: list[Any] = []

    def add(self, value: Any, cast: str | None = None) -> str:
        self.values.append(value)
        mark = f"${self.start + len(self.values)}"
        return f"{mark}::{cast}" if cast else mark


@dataclass(frozen=True)
class PgColumn:
    """A stored field: its name in rows, its SQL column and type."""

    field: str
    column: str
    type: str


# --------------------------------------------------------------------------- values


def pg_text(value: str) -> str:
    """``value`` as a text column holds it. PostgreSQL text cannot hold NUL,
    so U+0000 is stored as U+0001 U+0001 and U+0001 as U+0001 U+0002: one to
    one, and order-preserving in code-point order (what ``COLLATE "C"``
    compares), so equality, ranges and keyset paging over an escaped column
    answer as over the original strings. Values bound to filters are escaped
    the same way; bodies (``bytea``) keep the original text."""
    if "\x00" not in value and "\x01" not in value:
        return value
    return value.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01")


def text_value(value: Any) -> str | None:
    """A value bound to a text column (non-strings as canonical JSON text),
    escaped by :func:`pg_text`."""
    if value is None:
        return None
    return pg_text(value if isinstance(value, str) else dumps(value).decode())


def int_value(value: Any, what: str) -> int | None:
    """A value bound to a bigint column.

    Raises:
        StorageError: ``invalid`` when the value is not an integer.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise StorageError("invalid", f"{what} must be an integer, not {value!r}", {"field": what})
    return value


def tag_key(key: str) -> str:
    """A tag name as a jsonb key: ``\\`` and NUL escaped (jsonb cannot hold NUL)."""
    return key.replace("\\", "\\\\").replace("\x00", "\\0")


def tags_json(values: Mapping[str, Any]) -> str:
    """The ``tags`` jsonb text of a tags mapping: ``{key: canonical JSON of the value}``."""
    return dumps({tag_key(str(k)): dumps(v).decode() for k, v in values.items()}).decode()


def _quoted(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector_text(words: Sequence[str]) -> str:
    """A tsvector literal of exactly ``words`` (no parsing, no stemming)."""
    return " ".join(_quoted(w) for w in words)


def tsquery_text(text: str) -> str | None:
    """A tsquery matching rows holding every word of ``text`` (``None``: no words)."""
    found = sorted({lexeme(w) for w in words(text)})
    if not found:
        return None
    return " & ".join(_quoted(w) for w in found)


def text_array(words: Iterable[str]) -> str:
    """A text[] literal of ``words`` (used with ``::text[]``)."""
    return (
        "{" + ",".join('"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in words) + "}"
    )


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True, eq=False)
class PgLayout:
    """The PostgreSQL shape of one :class:`Table`, with its prepared statements."""

    table: Table
    name: str
    key_column: str
    key_is_seq: bool
    stored: tuple[PgColumn, ...]
    has_tags: bool
    has_text: bool
    sql: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, table: Table) -> PgLayout:
        key_column, key_is_seq, pairs = key_and_columns(table)
        stored = [
            PgColumn(name, col, "bigint" if name in INT_FIELDS else "text") for name, col in pairs
        ]
        layout = cls(
            table=table,
            name=table.name,
            key_column=key_column,
            key_is_seq=key_is_seq,
            stored=tuple(stored),
            has_tags=table.tags is not None,
            has_text=bool(table.text),
        )
        layout._prepare()
        return layout

    @property
    def key_type(self) -> str:
        return "bigint" if self.key_is_seq else "text"

    def columns(self) -> list[tuple[str, str]]:
        """Every written column with the array type it is bound as, in order."""
        cols = [(self.key_column, self.key_type)]
        cols += [(c.column, c.type) for c in self.stored]
        if self.has_tags:
            cols.append(("tags", "jsonb"))
        if self.has_text:
            cols += [("tsv", "text"), ("words", "text")]
        cols.append(("body", "bytea"))
        return cols

    def _prepare(self) -> None:
        t, k = quote(self.name), quote(self.key_column)
        key_text = f"{k}::text" if self.key_is_seq else k
        self.sql.update(
            get=f"SELECT body FROM {t} WHERE {k} = $1",
            get_many=f"SELECT {key_text}, body FROM {t} WHERE {k} = ANY($1::{self.key_type}[])",
            count=f"SELECT count(*) FROM {t}",
        )

    def upsert_sql(self, start: int, gate: str = "") -> str:
        """Insert-or-replace rows bound as one array per column from ``$start+1``;
        ``gate`` is an SQL condition that must hold for anything to be written."""
        cached = self.sql.get(f"upsert:{start}:{gate}")
        if cached is None:
            cached = self.sql[f"upsert:{start}:{gate}"] = _upsert_sql(self, start, gate)
        return cached

    def delete_sql(self, start: int, gate: str = "") -> str:
        """Delete rows whose keys are the array ``$start+1`` (if ``gate`` holds)."""
        return (
            f"DELETE FROM {quote(self.name)} WHERE {quote(self.key_column)} "
            f"= ANY(${start + 1}::{self.key_type}[])" + (f" AND {gate}" if gate else "")
        )

    # ------------------------------------------------------------------ values

    def key_param(self, key: str) -> Any:
        """The key column value for a key string (``None``: no row can match)."""
        if self.key_is_seq:
            return int(key) if key.isdigit() and str(int(key)) == key else None
        return None if "\x00" in key else key

    def key_of_row(self, row: Mapping[str, Any]) -> Any:
        if self.key_is_seq:
            return int(row["seq"])
        return self.table.key_of(row)

    def row_values(self, row: Mapping[str, Any], body: bytes) -> list[Any]:
        """The value of every column of :meth:`columns` for ``row``."""
        values: list[Any] = [self.key_of_row(row)]
        for col in self.stored:
            value = Table.value(row, col.field)
            if col.type == "bigint":
                values.append(int_value(value, col.field))
            else:
                values.append(text_value(value))
        if self.has_tags:
            tags = row.get(self.table.tags or "")
            values.append(tags_json(tags) if isinstance(tags, Mapping) else "{}")
        if self.has_text:
            values += self.text_values(row)
        values.append(body)
        return values

    def text_values(self, row: Mapping[str, Any]) -> list[str | None]:
        """The ``tsv`` and ``words`` columns of ``row``: its lexemes as a tsvector
        literal, or as a text[] literal when they do not fit a tsvector."""
        found: set[str] = set()
        any_text = False
        for name in self.table.text:
            value = Table.value(row, name)
            if isinstance(value, str):
                any_text = True
                found.update(lexemes(value))
        ordered = sorted(found)
        if not any_text:
            return [None, None]
        if sum(len(w.encode("utf-8")) for w in ordered) < TSVECTOR_MAX_BYTES:
            return [tsvector_text(ordered), None]
        return [None, text_array(ordered)]

    def column_expr(self, field_name: str) -> tuple[str, str]:
        """The SQL expression reading ``field_name`` of a row, and its type
        (``"text"``, ``"bigint"``, or ``"jsonb"`` for a field with no column)."""
        if field_name == "seq" and (self.key_is_seq or self.table.seq):
            return quote("seq"), "bigint"
        if len(self.table.key) == 1 and field_name == self.table.key[0]:
            return quote(self.key_column), self.key_type
        col = column_name(field_name)
        for c in self.stored:
            if c.column == col:
                return quote(col), c.type
        # A field with no column: read it from the JSON body (no index).
        path = (
            "{" + ",".join('"' + p.replace('"', '\\"') + '"' for p in field_name.split(".")) + "}"
        )
        return f"(convert_from(body, 'UTF8')::jsonb #> '{path}')", "jsonb"


def _upsert_sql(layout: PgLayout, start: int, gate: str) -> str:
    cols = layout.columns()
    names = ", ".join(quote(c) for c, _ in cols)
    arrays = ", ".join(f"${start + i + 1}::{t}[]" for i, (_, t) in enumerate(cols))
    aliases = ", ".join(f"c{i}" for i in range(len(cols)))
    picks = []
    for i, (c, _) in enumerate(cols):
        if c == "tsv":
            picks.append(f"u.c{i}::tsvector")
        elif c == "words":
            picks.append(f"u.c{i}::text[]")
        else:
            picks.append(f"u.c{i}")
    updates = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c, _ in cols[1:])
    return (
        f"INSERT INTO {quote(layout.name)} ({names}) SELECT {', '.join(picks)} "
        f"FROM unnest({arrays}) AS u({aliases}) "
        + (f"WHERE {gate} " if gate else "")
        + f"ON CONFLICT ({quote(layout.key_column)}) DO UPDATE SET {updates}"
    )


LAYOUTS: dict[str, PgLayout] = {t.name: PgLayout.of(t) for t in ALL_TABLES}


def layout_of(table: Table) -> PgLayout:
    """The layout of ``table``.

    Raises:
        StorageError: ``invalid`` for a table outside the schema.
    """
    found = LAYOUTS.get(table.name)
    if found is None or found.table != table:
        raise StorageError(
            "invalid",
            f"table {table.name!r} is not part of the PostgreSQL schema",
            {"table": table.name},
        )
    return found


# --------------------------------------------------------------------------- filters


def _bind(kind: str, value: Any, what: str) -> Any:
    if kind == "bigint":
        return int_value(value, what)
    if kind == "jsonb":
        return dumps(value).decode()
    return text_value(value)


def where_clause(layout: PgLayout, where: Mapping[str, Any] | None, params: Params) -> list[str]:
    """SQL conditions for a :data:`~keepstone.engine.spi.Where` (values in ``params``)."""
    conds: list[str] = []
    for name, cond in (where or {}).items():
        expr, kind = layout.column_expr(name)
        if isinstance(cond, tuple):
            for c in cond:
                conds.append(_cmp(expr, kind, name, c, params))
        elif isinstance(cond, Cmp):
            conds.append(_cmp(expr, kind, name, cond, params))
        elif isinstance(cond, In):
            values = [_bind(kind, v, name) for v in cond.values if v is not None]
            parts = []
            if values:
                parts.append(f"{expr} = ANY({params.add(values, kind + '[]')})")
            if len(values) != len(cond.values) and None in cond.values:
                parts.append(_is_null(expr, kind))
            conds.append("(" + " OR ".join(parts) + ")" if parts else "FALSE")
        elif cond is None:
            conds.append(_is_null(expr, kind))
        else:
            conds.append(f"{expr} = {params.add(_bind(kind, cond, name), kind)}")
    return conds


def _is_null(expr: str, kind: str) -> str:
    if kind == "jsonb":
        return f"({expr} IS NULL OR {expr} = 'null'::jsonb)"
    return f"{expr} IS NULL"


def _cmp(expr: str, kind: str, name: str, cond: Cmp, params: Params) -> str:
    op = _SQL_OPS.get(cond.op)
    if op is None:
        raise StorageError("invalid", f"unknown comparison {cond.op!r}", {"op": cond.op})
    if cond.value is None:
        return "FALSE"
    return f"{expr} {op} {params.add(_bind(kind, cond.value, name), kind)}"


def select_sql(
    layout: PgLayout,
    where: Mapping[str, Any] | None,
    *,
    what: str = "body",
    order: tuple[str, ...] = (),
    after: tuple[Any, ...] | None = None,
    desc: bool = False,
    limit: int | None = None,
    tags: Mapping[str, Any] | None = None,
    text: str | None = None,
    ordered: bool = True,
    exclude: Sequence[Any] = (),
) -> tuple[str, list[Any]]:
    """A SELECT of ``what`` over ``layout`` with every filter of ``find``
    (unordered when ``ordered`` is false, e.g. for counts and existence),
    leaving out the rows whose key column is in ``exclude``."""
    params = Params()
    conds = where_clause(layout, where, params)
    key = quote(layout.key_column)
    if exclude:
        conds.append(f"NOT ({key} = ANY({params.add(list(exclude), layout.key_type + '[]')}))")
    if tags:
        if layout.has_tags and tags_storable(tags):
            conds.append(f"tags @> {params.add(tags_json(tags), 'jsonb')}")
        else:
            conds.append("FALSE")
    if text is not None:
        query = tsquery_text(text)
        if query is None or not layout.has_text:
            conds.append("FALSE")
        else:
            wanted = text_array(sorted({lexeme(w) for w in words(text)}))
            conds.append(
                f"(tsv @@ {params.add(query, 'text')}::tsquery "
                f"OR words @> {params.add(wanted, 'text')}::text[])"
            )
    exprs = [layout.column_expr(c) for c in order]
    sort = [e for e, _ in exprs if e != key] + [key]
    if after is not None:
        conds.append(_after(layout, exprs, order, after, desc, params))
    sql = f"SELECT {what} FROM {quote(layout.name)}"
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    if ordered:
        direction = " DESC" if desc else ""
        sql += " ORDER BY " + ", ".join(e + direction for e in sort)
    if limit is not None:
        sql += f" LIMIT {params.add(max(int(limit), 0), 'bigint')}"
    return sql, params.values


def _after(
    layout: PgLayout,
    exprs: Sequence[tuple[str, str]],
    order: tuple[str, ...],
    after: tuple[Any, ...],
    desc: bool,
    params: Params,
) -> str:
    """The condition "strictly after the keyset ``after``" (before it when
    ``desc``), in ``order`` then key.

    PostgreSQL text cannot hold NUL, so no stored value equals a cursor value
    holding one: the comparison is decided at that column, the ones after it
    do not count, and in code-point order, for ``v = p + NUL + ...`` and a
    stored ``e``, ``e > v`` is ``e > p`` and ``e < v`` is ``e <= p``. That is
    the order the other engines give such a value.

    Raises:
        StorageError: ``invalid`` when ``after`` does not fit ``order``.
    """
    if len(after) != len(order) + 1:
        raise StorageError("invalid", "the cursor does not belong to this listing", {})
    key = quote(layout.key_column)
    bound: list[tuple[str, str, Any]] = []
    try:
        for (expr, kind), name, value in zip(exprs, order, after[:-1], strict=True):
            if expr != key:
                bound.append((expr, kind, _bind(kind, value, name)))
        key_value: Any = after[-1]
        if layout.key_is_seq:
            key_value = int(key_value)
        elif not isinstance(key_value, str):
            raise TypeError(key_value)
    except (TypeError, ValueError, StorageError) as exc:
        raise StorageError("invalid", "the cursor is not one keepstone made", {}) from exc
    bound.append((key, layout.key_type, key_value))
    decided: str | None = None
    for i, (expr, kind, value) in enumerate(bound):
        if kind == "text" and isinstance(value, str) and "\x00" in value:
            prefix = params.add(value[: value.index("\x00")], kind)
            decided = f"{expr} {'<=' if desc else '>'} {prefix}"
            bound = bound[:i]
            break
    if not bound and decided is not None:
        return decided
    lhs = "(" + ", ".join(e for e, _, _ in bound) + ")"
    rhs = "(" + ", ".join(params.add(v, k) for _, k, v in bound) + ")"
    before = f"{lhs} {'<' if desc else '>'} {rhs}"
    return before if decided is None else f"({before} OR ({lhs} = {rhs} AND {decided}))"
