"""Where each thing lives in a filesystem workspace (layout version 1).

Pure functions from rows, tables and digests to paths relative to the
workspace root; ``docs/storage-layout.md`` describes the same layout for
people and a test keeps the two in step.

* A table without ``seq`` stores one JSON file per record; the key fields are
  the path segments: ``runs/<id>.json``, ``snapshots/<run_id>/<number>.json``,
  ``nodes/<profile_id>/<id>.json``. Integers are zero-padded to 8 digits so
  that ``ls`` lists them in order.
* A ``seq`` table accumulates lines in JSONL: ``events.jsonl``,
  ``audit.jsonl``, ``changes.jsonl``; a partitioned one has one file per
  partition value: ``log_lines/<run_id>.jsonl``.
* Blobs live by digest: ``blobs/sha256/ab/cd/<hex>``.

A segment that is not a plain id (``[A-Za-z0-9][A-Za-z0-9._:-]*``, at most
200 characters) is written as ``~`` and 40 hex digits of its SHA-256, so no
key can escape its directory or collide with a control file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from keepstone.engine.spi import Table
from keepstone.engine.tables import ALL_TABLES

FORMAT = "keepstone-fs"
"""The ``format`` named in the stamp."""

LAYOUT_VERSION = 1
"""The layout this keepstone writes and the newest it reads."""

STAMP = "keepstone.json"
JOURNAL = "journal.jsonl"
INDEX = "index.json"
LOCK = "lock"
TMP = "tmp"
BLOBS = "blobs"
BLOB_ROOT = "blobs/sha256"

CONTROL_FILES = (STAMP, JOURNAL, INDEX, LOCK)
"""Files at the root that are not records."""

TABLES: dict[str, Table] = {t.name: t for t in ALL_TABLES}
"""The tables a workspace is rebuilt from (every table the domain layer uses)."""

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}\Z")
_HEX = frozenset("0123456789abcdef")


def segment(value: Any) -> str:
    """One path segment for a key or partition value."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return f"{value:08d}"
    text = value if isinstance(value, str) else repr(value)
    if _PLAIN.match(text) and not text.endswith(".tmp"):
        return text
    return "~" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def record_path(table: Table, row: Mapping[str, Any]) -> str:
    """The file of a record of a table without ``seq``."""
    parts = [segment(row.get(field)) for field in table.key]
    if table.partition is not None and table.partition not in table.key:
        parts.insert(0, segment(row.get(table.partition)))
    return "/".join((table.name, *parts[:-1], parts[-1] + ".json"))


def stream_path(table: Table, row: Mapping[str, Any]) -> str:
    """The JSONL file a row of a ``seq`` table is appended to."""
    if table.partition is None:
        return table.name + ".jsonl"
    return f"{table.name}/{segment(row.get(table.partition))}.jsonl"


def partition_path(table: Table, value: Any) -> str:
    """The JSONL file holding the rows whose partition field is ``value``."""
    return stream_path(table, {table.partition or "": value})


def key_from_path(table: Table, path: str) -> str | None:
    """Best-effort key of a record file whose content does not parse.

    Returns ``None`` when a segment was hashed (the key cannot be recovered).
    """
    parts = path[len(table.name) + 1 :].removesuffix(".json").split("/")
    if table.partition is not None and table.partition not in table.key:
        parts = parts[1:]
    if len(parts) != len(table.key) or any(p.startswith("~") for p in parts):
        return None
    return ":".join(str(int(p)) if p.isdigit() and len(p) >= 8 else p for p in parts)


def blob_path(digest: str) -> str | None:
    """The file of a blob, or ``None`` when ``digest`` is not a sha256 digest."""
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or not set(hexdigest) <= _HEX:
        return None
    return f"{BLOB_ROOT}/{hexdigest[:2]}/{hexdigest[2:4]}/{hexdigest}"


def stamp(version: str) -> dict[str, Any]:
    """The content of ``keepstone.json``."""
    return {"format": FORMAT, "keepstone_version": version, "layout_version": LAYOUT_VERSION}
