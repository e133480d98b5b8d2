"""SQLite full text: the FTS5 tables hold keepstone's words, and how they are rebuilt.

Each table with ``text`` fields has a contentless FTS5 table ``<name>_fts``
whose columns hold, per row, the :func:`~keepstone.engine.match.words` of each
text field joined by spaces (:meth:`Layout.fts_values
<keepstone.backends.sql.sqlite_schema.Layout.fts_values>`). Its tokenizer is
``ascii`` with ``_`` as a token character: every character of a word is an
ASCII letter or digit, ``_``, or not ASCII at all (a token character for that
tokenizer), and words are already lowercase, so FTS5 splits exactly at the
spaces keepstone put and changes nothing else. Queries quote each word of
:func:`~keepstone.engine.match.words` of the query text. SQLite therefore
matches the words the reference matches, whatever FTS5's own Unicode tables
say.

The index is derived data: :func:`rebuild_fts` empties it and fills it again
from the stored rows, and stamps ``keepstone_meta.words_rule`` with
:data:`~keepstone.schemas.fulltext.WORDS_RULE`. It runs as the Python step of
migration 3 (which moved stores off FTS5's ``unicode61`` tokenizer) and
whenever a store is opened by a keepstone whose rule or Unicode version
differs from the stamp: deleting a row from a contentless table needs the
very values that were indexed, so the index must never mix two rules.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from keepstone.backends.sql.common import quote
from keepstone.backends.sql.sqlite_schema import LAYOUTS
from keepstone.schemas.fulltext import WORDS_RULE

WORDS_RULE_KEY = "words_rule"
"""The ``keepstone_meta`` row naming the words rule the FTS tables were built with."""

_REBUILD_BATCH = 1000


def words_rule(conn: sqlite3.Connection) -> str | None:
    """The words rule stamped in the store (``None`` before migration 3)."""
    row = conn.execute("SELECT value FROM keepstone_meta WHERE name = ?", (WORDS_RULE_KEY,))
    found = row.fetchone()
    return None if found is None else str(found[0])


def rebuild_fts(conn: sqlite3.Connection) -> None:
    """Index every stored row's words again and stamp the rule (inside the
    caller's transaction)."""
    for layout in LAYOUTS.values():
        if not layout.fts:
            continue
        fts = quote(f"{layout.name}_fts")
        conn.execute(f"INSERT INTO {fts} ({fts}) VALUES ('delete-all')")
        rows = conn.execute(f"SELECT rid, body FROM {quote(layout.name)}")
        while batch := rows.fetchmany(_REBUILD_BATCH):
            index = []
            for rid, body in batch:
                texts = layout.fts_values(_parsed(body))
                if texts is not None:
                    index.append((rid, *texts))
            conn.executemany(layout.sql["fts_insert"], index)
    conn.execute(
        "INSERT INTO keepstone_meta (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (WORDS_RULE_KEY, WORDS_RULE),
    )


def _parsed(body: bytes) -> dict[str, Any]:
    """A stored row, or ``{}`` for a damaged one (not indexed; the doctor reports it)."""
    try:
        row = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return row if isinstance(row, dict) else {}


__all__ = ["WORDS_RULE_KEY", "rebuild_fts", "words_rule"]
