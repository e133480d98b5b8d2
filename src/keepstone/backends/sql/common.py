"""Dialect-neutral pieces of the SQL backends: names, full-text words, migrations.

The SQLite and PostgreSQL backends store every
:class:`~keepstone.engine.spi.Table` with the same table and column names
(a key column, one column per filterable field with dots turned into
underscores, ``body`` holding the canonical JSON). What they share lives here;
what differs (types, JSON vs JSONB, FTS5 vs tsvector, how seqs are assigned)
stays in each dialect's modules.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from keepstone.engine.match import words
from keepstone.engine.spi import Table

INT_FIELDS = frozenset({"seq", "number"})
"""Fields stored as integers (everything else filterable is text)."""

MAX_LEXEME_BYTES = 1000
"""Full-text words longer than this (UTF-8 bytes) are indexed by their hash."""


def column_name(field_name: str) -> str:
    """The SQL column of a field (dots become underscores)."""
    return field_name.replace(".", "_")


def key_and_columns(table: Table) -> tuple[str, bool, list[tuple[str, str]]]:
    """How a table is laid out in SQL, the same in every dialect.

    Returns:
        The key column (``seq`` for seq-keyed tables, the field's column for a
        single-field key, else ``pk`` holding the joined key), whether the key
        is the seq, and the (field, column) pairs stored beside the key: the
        key fields, ``seq``, then the table's columns, each once.
    """
    key_is_seq = table.keyed_by_seq
    if key_is_seq:
        key_column = "seq"
    elif len(table.key) == 1:
        key_column = column_name(table.key[0])
    else:
        key_column = "pk"
    wanted: list[str] = list(table.key)
    if table.seq:
        wanted.append("seq")
    wanted += table.columns
    stored: list[tuple[str, str]] = []
    for name in wanted:
        col = column_name(name)
        if col != key_column and all(col != c for _, c in stored):
            stored.append((name, col))
    return key_column, key_is_seq, stored


def quote(name: str) -> str:
    """An SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def lexeme(word: str) -> str:
    """The indexed form of one lowercased word: itself, or ``#<sha256>`` when
    it is too long for an index entry (``#`` never occurs inside a word, so
    the two forms cannot collide)."""
    if len(word.encode("utf-8")) <= MAX_LEXEME_BYTES:
        return word
    return "#" + hashlib.sha256(word.encode("utf-8")).hexdigest()


def lexemes(text: str) -> list[str]:
    """The distinct indexed words of ``text``, sorted."""
    return sorted({lexeme(w) for w in words(text)})


@dataclass(frozen=True)
class MigrationScript:
    """One versioned migration file ``NNNN_name.sql`` of a dialect."""

    version: int
    name: str
    script: str


_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def read_migrations(dialect: str) -> list[MigrationScript]:
    """The migrations shipped for ``dialect``, in version order, without gaps.

    Raises:
        RuntimeError: the package ships a gap in the version numbers (a bug).
    """
    folder = resources.files("keepstone.backends.sql").joinpath("migrations", dialect)
    found: list[MigrationScript] = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match is not None:
            found.append(
                MigrationScript(int(match[1]), match[2], entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(
                f"{dialect} migrations skip from {expected - 1} to {migration.version}"
            )
    return found
