"""The physical limit: stdlib sqlite3 with keepstone's pragmas, a JSONL file
with an fsync per line, and plain files with an fsync each."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench.keepstone_side import payload_data

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT), WAL, synchronous=FULL."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


EventRow = tuple[str, str, str, bytes]


def event_row(profile_id: str, event_id: str, i: int) -> EventRow:
    """What a hand-written event log stores for event ``i``: the JSON that
    keepstone's ``MemoryEvent`` serialises to, built from plain dicts (no
    model, no validation), as an application writing SQLite directly would."""
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "schema_version": 1,
        "id": event_id,
        "seq": None,
        "profile_id": profile_id,
        "path_id": None,
        "at": at,
        "actor": None,
        "payload": {"kind": "custom", "name": "x", "data": payload_data(i)},
    }
    return (event_id, profile_id, at, orjson.dumps(body))


SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def durability(conn: sqlite3.Connection) -> str:
    """The journal mode and ``synchronous`` level a connection runs with."""
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    level = conn.execute("PRAGMA synchronous").fetchone()[0]
    return f"journal_mode={journal} synchronous={SYNCHRONOUS.get(level, level)}"


class RawEventTable:
    """An event table as an application would write it by hand: a sequence
    number, a unique event id, and the event's JSON."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS events ("
            " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
            " profile_id TEXT NOT NULL, at TEXT NOT NULL, body BLOB NOT NULL)"
        )
        self._insert = "INSERT INTO events (id, profile_id, at, body) VALUES (?, ?, ?, ?)"

    def append_one(self, row: EventRow) -> None:
        """One row, one transaction, one fsync."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(self._insert, row)
        self.conn.execute("COMMIT")

    def append_many(self, rows: Sequence[EventRow]) -> None:
        """``executemany`` in one transaction."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self._insert, rows)
        self.conn.execute("COMMIT")

    def replay(self, batch: int = 5000) -> Iterator[dict[str, object]]:
        """Every event decoded to a dict (no typed model), in seq order."""
        after = 0
        while True:
            rows = self.conn.execute(
                "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, batch)
            ).fetchall()
            if not rows:
                return
            for _, body in rows:
                yield orjson.loads(body)
            after = rows[-1][0]

    def close(self) -> None:
        self.conn.close()


class JsonlLog:
    """A JSONL file, one line per event, fsync'd after each line."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, line: bytes) -> None:
        os.write(self.fd, line + b"\n")
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` as a new file and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_and_hash(path: Path) -> str:
    """Read ``path`` and SHA-256 its bytes: the verified limit of a content-
    addressed read (keepstone's ``artifacts.read`` checks the digest)."""
    return hashlib.sha256(read_file(path)).hexdigest()


def disk_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (or of the file ``path``)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total
