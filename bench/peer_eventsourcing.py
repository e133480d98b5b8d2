"""eventsourcing, the way its docs show it: an ``Application`` whose
aggregates record events, persisted by ``eventsourcing.sqlite`` in a file
database (WAL; SQLite's default synchronous=FULL), read back through the
application's notification log and decoded by its mapper.

Importing this module raises ImportError when eventsourcing is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench.peer_raw import SYNCHRONOUS


class Conversation(Aggregate):
    """One aggregate per writer; each ``record`` is one domain event."""

    def __init__(self) -> None:
        self.count = 0

    @event("Recorded")
    def record(self, data: dict[str, Any]) -> None:
        self.count += 1


class BenchApplication(Application):
    """Reads its notification log in sections of 5,000 (the default is 10)."""

    log_section_size = 5000


def open_app(path: Path) -> BenchApplication:
    return BenchApplication(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )


def durability(app: BenchApplication) -> str:
    """The journal mode and ``synchronous`` level its connections run with."""
    with app.factory.datastore.transaction(commit=False) as cur:
        cur.execute("PRAGMA journal_mode")
        journal = cur.fetchone()[0]
        cur.execute("PRAGMA synchronous")
        level = cur.fetchone()[0]
    return f"journal_mode={journal} synchronous={SYNCHRONOUS.get(level, level)}"


def new_aggregate(app: BenchApplication) -> Conversation:
    agg = Conversation()
    app.save(agg)
    return agg


def save_one(app: BenchApplication, agg: Conversation, data: dict[str, Any]) -> None:
    """One event, one ``save`` (one transaction)."""
    agg.record(data)
    app.save(agg)


def save_batch(app: BenchApplication, agg: Conversation, batch: list[dict[str, Any]]) -> None:
    """``len(batch)`` pending events, one ``save``."""
    for data in batch:
        agg.record(data)
    app.save(agg)


def replay(app: BenchApplication) -> int:
    """Read the whole notification log and decode every event; returns the count."""
    log = app.notification_log
    to_domain_event = app.mapper.to_domain_event
    start, count = 1, 0
    while True:
        notifications = log.select(start, log.section_size)
        if not notifications:
            return count
        for n in notifications:
            to_domain_event(n)
        count += len(notifications)
        start = notifications[-1].id + 1
