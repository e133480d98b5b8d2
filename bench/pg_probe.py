"""What the PostgreSQL server did for keepstone during one timed loop.

Scenario 9 opens keepstone with an ``application_name`` of its own, so that
its server sessions can be found in ``pg_stat_activity`` from a separate
monitoring connection, without touching keepstone's connections:

* **server CPU**: user + system time of those sessions' backend processes,
  read from ``/proc/<pid>/stat`` before and after the loop (only when the
  server runs on this machine and ``/proc`` shows them as ``postgres``);
* **where the writer's session spends its time**: ``pg_stat_activity`` is
  sampled every :data:`INTERVAL` seconds during the loop; each sample of the
  writer's session (the one whose last statement touched
  ``keepstone_counters``) is counted as running (on CPU or waiting for it),
  waiting on a named event (``IO:WALSync``, ``Lock:relation``...), or idle,
  i.e. waiting for keepstone to send the next statement;
* **WAL** written by the whole server during the loop
  (``pg_current_wal_lsn``) and **checkpoints** started
  (``pg_stat_bgwriter``): both server-wide, so other clients count too.

The sampling runs on the bench's own event loop: about one short query per
:data:`INTERVAL`, a percent or so of the loop's client CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

INTERVAL = 0.01
"""Seconds between two samples of ``pg_stat_activity``."""

IDLE = "idle (waiting for keepstone)"
RUNNING = "running (CPU)"


@dataclass
class Probe:
    """The server side of one loop (see the module docstring)."""

    server_cpu_seconds: float | None = None
    wal_bytes: int | None = None
    checkpoints: int | None = None
    states: Counter[str] = field(default_factory=Counter)

    @property
    def samples(self) -> int:
        return sum(self.states.values())

    def shares(self, top: int = 4) -> str:
        """The most frequent states of the writer's session, as percentages."""
        if not self.samples:
            return "no samples of the writer's session"
        parts = [
            f"{state} {100 * n / self.samples:.0f}%" for state, n in self.states.most_common(top)
        ]
        return ", ".join(parts) + f" of {self.samples} samples"

    def as_dict(self) -> dict[str, Any]:
        return {
            "server_cpu_seconds": self.server_cpu_seconds,
            "wal_bytes": self.wal_bytes,
            "checkpoints_started": self.checkpoints,
            "writer_states": dict(self.states),
        }


def classify(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
    """One sample of a session: idle, running, or waiting on a named event.

    An active session waiting on ``Client:ClientRead`` is between the
    messages of one extended-protocol query: it waits for keepstone too.
    """
    if state != "active":
        return IDLE if state and state.startswith("idle") else str(state)
    if wait_type is None:
        return RUNNING
    if wait_type == "Client":
        return IDLE
    return f"{wait_type}:{wait_event}"


def backend_cpu(pid: int) -> float | None:
    """User + system CPU seconds of the local process ``pid`` if it is a
    PostgreSQL backend, else ``None``."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return None
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class WriterProbe:
    """``async with WriterProbe(url, application_name) as probe:`` around a
    loop, then read ``probe.result``."""

    def __init__(self, url: str, application_name: str, *, interval: float = INTERVAL) -> None:
        self.url = url
        self.application_name = application_name
        self.interval = interval
        self.result = Probe()
        self._conn: asyncpg.Connection | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._cpu_before: dict[int, float | None] = {}
        self._wal_before: str | None = None
        self._checkpoints_before: int | None = None

    async def __aenter__(self) -> WriterProbe:
        self._conn = await asyncpg.connect(self.url, timeout=10)
        self._cpu_before = await self._backend_cpu()
        self._wal_before = await self._fetch("SELECT pg_current_wal_lsn()::text")
        self._checkpoints_before = await self._fetch(
            "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        )
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        try:
            after = await self._backend_cpu()
            self.result.server_cpu_seconds = _cpu_delta(self._cpu_before, after)
            if self._wal_before is not None:
                self.result.wal_bytes = await self._fetch(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
                    self._wal_before,
                )
            checkpoints = await self._fetch(
                "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
            )
            if checkpoints is not None and self._checkpoints_before is not None:
                self.result.checkpoints = int(checkpoints) - int(self._checkpoints_before)
        finally:
            if self._conn is not None:
                await self._conn.close()

    async def _fetch(self, sql: str, *args: Any) -> Any:
        """One value, or ``None`` when the server will not tell (privileges,
        a standby, an older server)."""
        assert self._conn is not None
        try:
            return await self._conn.fetchval(sql, *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError):
            return None

    async def _backend_cpu(self) -> dict[int, float | None]:
        assert self._conn is not None
        rows = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            self.application_name,
        )
        return {r["pid"]: backend_cpu(r["pid"]) for r in rows}

    async def _sample(self) -> None:
        assert self._conn is not None
        sql = (
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
            "WHERE application_name = $1 AND query LIKE '%keepstone_counters%'"
        )
        while not self._stop.is_set():
            for row in await self._conn.fetch(sql, self.application_name):
                self.result.states[classify(row[0], row[1], row[2])] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)


def _cpu_delta(before: dict[int, float | None], after: dict[int, float | None]) -> float | None:
    """CPU the sessions spent between the two readings; ``None`` when it
    cannot be read (a remote server, /proc hidden)."""
    if not after or any(v is None for v in after.values()):
        return None
    total = 0.0
    for pid, cpu in after.items():
        assert cpu is not None
        start = before.get(pid)
        total += cpu - (start or 0.0)
    return total
