"""How each :class:`Table` maps onto SQLite, the SQL built from filters, and migrations.

Every table gets:

* a key column: ``seq INTEGER PRIMARY KEY`` for tables keyed by seq, the key
  field itself (``id TEXT PRIMARY KEY``) for a single-field key, else
  ``pk TEXT PRIMARY KEY`` holding the joined key string (ids may contain
  ``:``, so composite keys are never split back);
* one column per key field, ``seq`` and ``columns`` entry (``payload.kind`` ->
  ``payload_kind``), declared without a type so values keep their JSON type;
* ``body``: the canonical JSON bytes of the row;
* ``rid INTEGER PRIMARY KEY`` when the table has ``text`` fields, so that its
  contentless FTS5 table (``<name>_fts``) has a stable rowid to point at (it
  indexes keepstone's words, not the raw text: see
  :mod:`~keepstone.backends.sql.sqlite_fts`);
* ``<name>_tags(key, tag, value)`` when the table has a ``tags`` field.

The DDL lives in ``migrations/sqlite/NNNN_*.sql``; a test checks it against
:data:`~keepstone.engine.tables.ALL_TABLES`.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from keepstone.backends.sql.common import column_name, key_and_columns, quote, read_migrations
from keepstone.engine.match import tags_storable, words
from keepstone.engine.spi import Cmp, In, Table
from keepstone.engine.tables import ALL_TABLES
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps

_IN_INLINE_MAX = 500
"""``In`` filters with more values than this bind one JSON array (json_each)."""

_FIELD = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
"""Field names that may be read from the JSON body (they are spliced into SQL)."""

_SQL_OPS = {">": ">", ">=": ">=", "<": "<", "<=": "<="}


def stored_bytes(value: Any) -> bytes:
    """A ``body`` (or blob ``data``) as read back: bytes even if an edit behind
    keepstone's back (an SQL ``replace()``, say) left it as TEXT or a number."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return bytes(value) if isinstance(value, bytearray | memoryview) else str(value).encode()


_CONTAINERS = (dict, list)


def sql_value(value: Any) -> Any:
    """A field value as bound to SQLite: objects and arrays as canonical JSON."""
    if isinstance(value, _CONTAINERS):
        return dumps(value)
    return value


@dataclass(frozen=True)
class Layout:
    """The SQLite shape of one :class:`Table`, with its prepared statements."""

    table: Table
    name: str
    key_column: str
    key_is_seq: bool
    stored: tuple[tuple[str, str], ...]
    """(field, column) pairs written beside the key column on every put."""
    fts: tuple[tuple[str, str], ...]
    has_rid: bool
    tags_table: str | None
    sql: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, table: Table) -> Layout:
        key_column, key_is_seq, stored = key_and_columns(table)
        layout = cls(
            table=table,
            name=table.name,
            key_column=key_column,
            key_is_seq=key_is_seq,
            stored=tuple(stored),
            fts=tuple((f, column_name(f)) for f in table.text),
            has_rid=bool(table.text),
            tags_table=f"{table.name}_tags" if table.tags else None,
        )
        layout._prepare()
        return layout

    # ------------------------------------------------------------------ statements

    def _prepare(self) -> None:
        t, k = quote(self.name), quote(self.key_column)
        cols = [k, *(quote(c) for _, c in self.stored), '"body"']
        marks = ", ".join("?" for _ in cols)
        insert = f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({marks})"
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
        sets = ", ".join(f"{c} = ?" for c in cols[1:])
        self.sql.update(
            get=f"SELECT body FROM {t} WHERE {k} = ?",
            upsert=f"{insert} ON CONFLICT ({k}) DO UPDATE SET {updates}",
            insert_with_rid=(
                f"INSERT INTO {t} (rid, {', '.join(cols)}) VALUES (?, {marks})"
                if self.has_rid
                else ""
            ),
            update=f"UPDATE {t} SET {sets} WHERE {k} = ?",
            delete=f"DELETE FROM {t} WHERE {k} = ?",
        )
        if self.fts:
            fts = quote(f"{self.name}_fts")
            fcols = ", ".join(quote(c) for _, c in self.fts)
            fmarks = ", ".join("?" for _ in self.fts)
            self.sql["fts_insert"] = f"INSERT INTO {fts} (rowid, {fcols}) VALUES (?, {fmarks})"
            self.sql["fts_delete"] = (
                f"INSERT INTO {fts} ({fts}, rowid, {fcols}) VALUES ('delete', ?, {fmarks})"
            )
        if self.tags_table:
            tt = quote(self.tags_table)
            self.sql["tags_delete"] = f"DELETE FROM {tt} WHERE key = ?"
            self.sql["tags_insert"] = f"INSERT INTO {tt} (key, tag, value) VALUES (?, ?, ?)"

    # ------------------------------------------------------------------ values

    def key_param(self, key: str) -> Any:
        """The key column value for a key string (``None``: no row can match)."""
        if self.key_is_seq:
            return int(key) if key.isdigit() and str(int(key)) == key else None
        return key

    def row_params(self, row: Mapping[str, Any], body: bytes | None = None) -> list[Any]:
        """Key column value, stored column values, then the body (``body``, or
        ``row``'s canonical bytes), for ``row``."""
        key: Any = int(row["seq"]) if self.key_is_seq else self.table.key_of(row)
        values = [sql_value(Table.value(row, f)) for f, _ in self.stored]
        return [key, *values, dumps(row) if body is None else body]

    def fts_values(self, row: Mapping[str, Any]) -> list[str | None] | None:
        """What the FTS table holds for ``row``, one value per text field: the
        field's :func:`~keepstone.engine.match.words` joined by spaces (``None``
        for a field that is not a string; ``None`` overall when none is).

        Deleting a row from a contentless FTS5 table takes these same values,
        so they are recomputed from the stored body, never from elsewhere.
        """
        values = [Table.value(row, f) for f, _ in self.fts]
        texts = [" ".join(words(v)) if isinstance(v, str) else None for v in values]
        return texts if any(v is not None for v in texts) else None

    def tag_rows(self, key: str, row: Mapping[str, Any]) -> list[tuple[str, str, bytes]]:
        """Rows of the tags side table for ``row``."""
        values = row.get(self.table.tags or "")
        if not isinstance(values, Mapping):
            return []
        return [(key, str(tag), dumps(value)) for tag, value in values.items()]

    def column_expr(self, field_name: str) -> str:
        """The SQL expression reading ``field_name`` of a row."""
        if field_name == "seq" and (self.key_is_seq or self.table.seq):
            return quote("seq")
        if len(self.table.key) == 1 and field_name == self.table.key[0]:
            return quote(self.key_column)
        col = column_name(field_name)
        if any(c == col for _, c in self.stored):
            return quote(col)
        # A field with no column: read it from the JSON body (no index).
        if not _FIELD.fullmatch(field_name):
            raise StorageError(
                "invalid", f"cannot filter on field {field_name!r}", {"field": field_name}
            )
        path = "$." + ".".join(f'"{p}"' for p in field_name.split("."))
        return f"json_extract(CAST(body AS TEXT), '{path}')"


LAYOUTS: dict[str, Layout] = {t.name: Layout.of(t) for t in ALL_TABLES}


def layout_of(table: Table) -> Layout:
    """The layout of ``table``.

    Raises:
        StorageError: ``invalid`` for a table that is not in the schema.
    """
    found = LAYOUTS.get(table.name)
    if found is None or (found.table is not table and found.table != table):
        raise StorageError(
            "invalid",
            f"table {table.name!r} is not part of the SQLite schema",
            {"table": table.name},
        )
    return found


# --------------------------------------------------------------------------- filters


def where_clause(layout: Layout, where: Mapping[str, Any] | None) -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters for a :data:`~keepstone.engine.spi.Where`."""
    conds: list[str] = []
    params: list[Any] = []
    for name, cond in (where or {}).items():
        expr = layout.column_expr(name)
        if isinstance(cond, tuple):
            for c in cond:
                _cmp(expr, c, conds, params)
        elif isinstance(cond, Cmp):
            _cmp(expr, cond, conds, params)
        elif isinstance(cond, In):
            values = [v for v in cond.values if v is not None]
            parts = []
            if len(values) > _IN_INLINE_MAX:
                parts.append(f"{expr} IN (SELECT value FROM json_each(?))")
                params.append(orjson.dumps(values).decode())
            elif values:
                parts.append(f"{expr} IN ({', '.join('?' for _ in values)})")
                params += [sql_value(v) for v in values]
            if len(values) != len(cond.values):
                parts.append(f"{expr} IS NULL")
            conds.append("(" + " OR ".join(parts) + ")" if parts else "0")
        elif cond is None:
            conds.append(f"{expr} IS NULL")
        else:
            conds.append(f"{expr} = ?")
            params.append(sql_value(cond))
    return conds, params


def _cmp(expr: str, cond: Cmp, conds: list[str], params: list[Any]) -> None:
    op = _SQL_OPS.get(cond.op)
    if op is None:
        raise StorageError("invalid", f"unknown comparison {cond.op!r}", {"op": cond.op})
    conds.append(f"{expr} {op} ?")
    params.append(sql_value(cond.value))


def fts_query(text: str) -> str | None:
    """An FTS5 query where every word of ``text`` must occur; ``None`` when
    there are no words.

    Each word is quoted, so FTS5 syntax in ``text`` is matched literally; the
    ``ascii`` tokenizer keeps each word one token (see
    :mod:`keepstone.backends.sql.sqlite_fts`).
    """
    found = words(text)
    if not found:
        return None
    return " ".join('"' + w.replace('"', '""') + '"' for w in found)


def select_sql(
    layout: Layout,
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
) -> tuple[str, list[Any]]:
    """A SELECT of ``what`` over ``layout`` with every filter of ``find``
    (unordered when ``ordered`` is false, e.g. for counts and existence)."""
    conds, params = where_clause(layout, where)
    key = quote(layout.key_column)
    if tags:
        tt = quote(layout.tags_table or "")
        if not layout.tags_table or not tags_storable(tags):
            conds.append("0")
        else:
            for tag, value in tags.items():
                conds.append(f"{key} IN (SELECT key FROM {tt} WHERE tag = ? AND value = ?)")
                params += [str(tag), dumps(value)]
    if text is not None:
        query = fts_query(text)
        if query is None or not layout.fts:
            conds.append("0")
        else:
            fts = quote(f"{layout.name}_fts")
            conds.append(f"rid IN (SELECT rowid FROM {fts} WHERE {fts} MATCH ?)")
            params.append(query)
    exprs = [layout.column_expr(c) for c in order]
    sort = [e for e in exprs if e != key] + [key]
    if after is not None:
        if len(after) != len(order) + 1:
            raise StorageError("invalid", "the cursor does not belong to this listing", {})
        values = list(after)
        if layout.key_is_seq:
            try:
                values[-1] = int(values[-1])
            except (TypeError, ValueError) as exc:
                raise StorageError("invalid", "the cursor is not one keepstone made", {}) from exc
        pairs = [(e, v) for e, v in zip(exprs, values[:-1], strict=True) if e != key]
        pairs.append((key, values[-1]))
        lhs = ", ".join(e for e, _ in pairs)
        marks = ", ".join("?" for _ in pairs)
        conds.append(f"({lhs}) {'<' if desc else '>'} ({marks})")
        params += [sql_value(v) for _, v in pairs]
    sql = f"SELECT {what} FROM {quote(layout.name)}"
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    if ordered:
        direction = " DESC" if desc else ""
        sql += " ORDER BY " + ", ".join(e + direction for e in sort)
    if limit is not None:
        sql += " LIMIT ?"
        params.append(max(int(limit), 0))
    return sql, params


# --------------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migration:
    """One versioned schema change: ``NNNN_name.sql``."""

    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> list[str]:
    """The complete SQL statements of ``script``, in order."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending[:80]!r}")
    return statements


def load_migrations() -> list[Migration]:
    """The SQLite migrations shipped in the package, in version order."""
    return [
        Migration(m.version, m.name, tuple(split_statements(m.script)))
        for m in read_migrations("sqlite")
    ]
