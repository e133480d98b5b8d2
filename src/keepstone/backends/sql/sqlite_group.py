"""One SQLite group commit, set-wise: read what staging needs, write the net effect.

Inside the writer's ``BEGIN IMMEDIATE`` transaction, :meth:`SQLiteGroup.read`
fetches everything the stager will ask (:func:`~keepstone.engine.stager.plan_reads`):
the counters and every row a precondition names, in ONE statement, plus one
query per ``CheckNone``. The batches are then staged in Python by the shared
:class:`~keepstone.engine.stager.GroupStager`, and :meth:`SQLiteGroup.write`
writes what the accepted batches leave: per table one ``executemany`` of
upserts and one of deletes (with their tag rows and full-text entries), the
blob rows, and the counters that moved, once per group.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from keepstone.backends.sql.common import quote
from keepstone.backends.sql.sqlite_schema import LAYOUTS, Layout, select_sql, stored_bytes
from keepstone.engine.stager import NetEffect, PrefetchedView, ReadPlan

_INLINE_KEYS = 200
"""Key lists longer than this are bound as one JSON array (``json_each``)."""


class SQLiteGroup:
    """Reads and writes of one group transaction on the writer's connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.counters: dict[str, tuple[int, str | None]] = {}

    # ------------------------------------------------------------------ reading

    def read(self, plan: ReadPlan) -> PrefetchedView:
        """The committed state ``plan`` names, as a view the stager reads."""
        view = PrefetchedView()
        parts = ["SELECT -1, name, seq, hash FROM keepstone_counters"]
        params: list[Any] = []
        names: list[str] = []
        for name, keys in plan.keys.items():
            layout = LAYOUTS[name]
            wanted = [p for p in (layout.key_param(k) for k in keys) if p is not None]
            for key in keys:
                view.rows[(name, key)] = None
            if not wanted:
                continue
            k = quote(layout.key_column)
            match, values = _in_list(k, wanted)
            parts.append(f"SELECT {len(names)}, {k}, body, NULL FROM {quote(name)} WHERE {match}")
            params += values
            names.append(name)
        for tag, key, value, head in self.conn.execute(" UNION ALL ".join(parts), params):
            if tag < 0:
                view.counters[key] = (int(value), head)
            else:
                view.rows[(names[tag], str(key))] = stored_bytes(value)
        self.counters = dict(view.counters)
        for op, limit in plan.absent:
            layout = LAYOUTS[op.table.name]
            sql, args = select_sql(
                layout, op.where, what=quote(layout.key_column), limit=limit, ordered=False
            )
            view.matches[id(op)] = [str(r[0]) for r in self.conn.execute(sql, args)]
        return view

    # ------------------------------------------------------------------ writing

    def write(self, net: NetEffect) -> list[str]:
        """Write ``net``; returns the digests whose blob files go after ``COMMIT``."""
        conn = self.conn
        for name, staged in net.rows.items():
            layout = LAYOUTS[name]
            puts: list[tuple[str, dict[str, Any], bytes]] = []
            gone: list[str] = []
            for key, (_, row, body) in staged.items():
                if row is None or body is None:
                    gone.append(key)
                else:
                    puts.append((key, row, body))
            if layout.has_rid:
                self._write_text_table(layout, puts, gone)
                continue
            if gone:
                params = [(p,) for p in (layout.key_param(k) for k in gone) if p is not None]
                conn.executemany(layout.sql["delete"], params)
            if puts:
                conn.executemany(
                    layout.sql["upsert"], [layout.row_params(row, body) for _, row, body in puts]
                )
            if layout.tags_table:
                touched = [(k,) for k in gone] + [(k,) for k, _, _ in puts]
                conn.executemany(layout.sql["tags_delete"], touched)
                conn.executemany(
                    layout.sql["tags_insert"],
                    [tag for key, row, _ in puts for tag in layout.tag_rows(key, row)],
                )
        unlink: list[str] = []
        stored: list[tuple[str, int, bytes | None]] = []
        forgotten: list[tuple[str]] = []
        for digest, change in net.blobs.items():
            if change.kind == "forget":
                forgotten.append((digest,))
                unlink.append(digest)
            elif change.kind == "put":
                stored.append((digest, change.size, change.data))
            else:
                stored.append((digest, change.size, None))
        if forgotten:
            conn.executemany("DELETE FROM blobs WHERE digest = ?", forgotten)
        if stored:
            conn.executemany(
                "INSERT INTO blobs (digest, size, data) VALUES (?, ?, ?) "
                "ON CONFLICT (digest) DO NOTHING",
                stored,
            )
        moved = [
            (name, seq, head)
            for name, (seq, head) in net.counters.items()
            if self.counters.get(name) != (seq, head)
        ]
        if moved:
            conn.executemany(
                "INSERT INTO keepstone_counters (name, seq, hash) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                moved,
            )
        return unlink

    def _write_text_table(
        self, layout: Layout, puts: list[tuple[str, dict[str, Any], bytes]], gone: list[str]
    ) -> None:
        """Rows with full text: the contentless FTS index needs the old text to
        forget a row, so the old rows are read (one query) before the writes."""
        conn = self.conn
        keys = [k for k in gone] + [k for k, _, _ in puts]
        params = [p for p in (layout.key_param(k) for k in keys) if p is not None]
        old: dict[str, tuple[int, bytes]] = {}
        if params:
            k = quote(layout.key_column)
            match, values = _in_list(k, params)
            sql = f"SELECT {k}, rid, body FROM {quote(layout.name)} WHERE {match}"
            old = {
                str(key): (rid, stored_bytes(body)) for key, rid, body in conn.execute(sql, values)
            }
        forget = [
            (rid, *texts)
            for rid, body in old.values()
            if (texts := layout.fts_values(orjson.loads(body))) is not None
        ]
        if forget:
            conn.executemany(layout.sql["fts_delete"], forget)
        if gone:
            conn.executemany(layout.sql["delete"], [(k,) for k in gone if k in old])
        updates: list[list[Any]] = []
        inserts: list[list[Any]] = []
        index: list[tuple[Any, ...]] = []
        next_rid: int | None = None
        for key, row, body in puts:
            values = layout.row_params(row, body)
            found = old.get(key)
            if found is not None:
                rid = found[0]
                updates.append([*values[1:], values[0]])
            else:
                if next_rid is None:
                    top = conn.execute(f"SELECT max(rid) FROM {quote(layout.name)}").fetchone()
                    next_rid = int(top[0] or 0)
                next_rid += 1
                rid = next_rid
                inserts.append([rid, *values])
            texts = layout.fts_values(row)
            if texts is not None:
                index.append((rid, *texts))
        if updates:
            conn.executemany(layout.sql["update"], updates)
        if inserts:
            conn.executemany(layout.sql["insert_with_rid"], inserts)
        if index:
            conn.executemany(layout.sql["fts_insert"], index)


def _in_list(column: str, values: list[Any]) -> tuple[str, list[Any]]:
    """``column IN (...)`` with its parameters; long lists bind one JSON array."""
    if len(values) > _INLINE_KEYS:
        return f"{column} IN (SELECT value FROM json_each(?))", [orjson.dumps(values).decode()]
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)
