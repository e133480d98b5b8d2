"""A small timing helper: warm-up, then a timed loop of single operations.

Every wall-clock figure comes from ``time.perf_counter``. A measurement keeps
each operation's latency, so a result carries both a rate (operations, or
items, per second of wall time) and latency percentiles.

Every timed loop here also reads ``time.process_time`` before and after: the
CPU time of the whole process, all its threads (the event loop, writer
threads, the default executor), spent during the loop. Divided by the items
the loop handled (events for a batch append, calls otherwise) it is the CPU
cost per item, printed as the "CPU µs/write" column for write rows. Peers run
in the same process are measured the same way; a server's own CPU
(PostgreSQL) is not part of it.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Measurement:
    """What one timed loop measured."""

    label: str
    ops: int
    seconds: float
    items_per_op: int = 1
    bytes_per_op: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    cpu_seconds: float | None = None
    """``time.process_time`` spent during the loop (every thread of the process)."""
    writes: bool = False
    """Each item is one write: the goals table shows its CPU per item."""

    @property
    def items(self) -> int:
        return self.ops * self.items_per_op

    @property
    def cpu_us_per_item(self) -> float:
        """CPU microseconds per item (per event of a batch, per call otherwise)."""
        if self.cpu_seconds is None or not self.items:
            return float("nan")
        return self.cpu_seconds / self.items * 1e6

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("inf")

    @property
    def items_per_s(self) -> float:
        return self.ops_per_s * self.items_per_op

    @property
    def mb_per_s(self) -> float:
        return self.ops_per_s * self.bytes_per_op / 1e6

    @property
    def p50(self) -> float:
        """Median latency of one operation, in seconds."""
        if self.latencies:
            return statistics.median(self.latencies)
        return self.seconds / self.ops if self.ops else float("nan")

    @property
    def p90(self) -> float:
        return self.percentile(90)

    def percentile(self, pct: int) -> float:
        """The ``pct``-th percentile of single-call latency (the median when
        there are too few calls to tell), in seconds."""
        if len(self.latencies) >= 10:
            return statistics.quantiles(self.latencies, n=100, method="inclusive")[pct - 1]
        return self.p50

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "ops": self.ops,
            "seconds": round(self.seconds, 6),
            "items_per_op": self.items_per_op,
            "bytes_per_op": self.bytes_per_op,
            "ops_per_s": round(self.ops_per_s, 1),
            "items_per_s": round(self.items_per_s, 1),
            "mb_per_s": round(self.mb_per_s, 2) if self.bytes_per_op else None,
            "p50_us": round(self.p50 * 1e6, 1),
            "p90_us": round(self.p90 * 1e6, 1),
            "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 6),
            "cpu_us_per_item": _rounded(self.cpu_us_per_item),
            "writes": self.writes,
        }


def _rounded(value: float) -> float | None:
    return None if value != value else round(value, 1)


def warmup_count(n: int, warmup: int | None = None) -> int:
    """How many warm-up calls a loop of ``n`` makes (``warmup``, else 5% of n, 1 to 50)."""
    return max(1, min(50, n // 20)) if warmup is None else warmup


def run_sync(
    label: str,
    op: Callable[[int], Any],
    n: int,
    *,
    warmup: int | None = None,
    items_per_op: int = 1,
    bytes_per_op: int = 0,
    max_seconds: float | None = None,
    writes: bool = False,
) -> Measurement:
    """Call ``op(i)`` for i in 0..n-1 after ``warmup`` calls ``op(-k)``.

    Warm-up calls get negative indexes so that callers can keep their ids
    apart. With ``max_seconds``, stop early (after at least 5 calls) once the
    loop has run that long; the measurement records how many calls it made.
    ``writes`` marks each item as a write (see :class:`Measurement`).
    """
    for k in range(warmup_count(n, warmup)):
        op(-1 - k)
    gc.collect()
    lat: list[float] = []
    clock = time.perf_counter
    cpu_start = time.process_time()
    start = clock()
    done = 0
    for i in range(n):
        t0 = clock()
        op(i)
        t1 = clock()
        lat.append(t1 - t0)
        done += 1
        if max_seconds is not None and done >= 5 and t1 - start > max_seconds:
            break
    total = clock() - start
    cpu = time.process_time() - cpu_start
    return Measurement(label, done, total, items_per_op, bytes_per_op, lat, cpu, writes)


async def run_async(
    label: str,
    op: Callable[[int], Awaitable[Any]],
    n: int,
    *,
    warmup: int | None = None,
    items_per_op: int = 1,
    bytes_per_op: int = 0,
    max_seconds: float | None = None,
    writes: bool = False,
) -> Measurement:
    """The async twin of :func:`run_sync`: ``await op(i)`` one call at a time."""
    for k in range(warmup_count(n, warmup)):
        await op(-1 - k)
    gc.collect()
    lat: list[float] = []
    clock = time.perf_counter
    cpu_start = time.process_time()
    start = clock()
    done = 0
    for i in range(n):
        t0 = clock()
        await op(i)
        t1 = clock()
        lat.append(t1 - t0)
        done += 1
        if max_seconds is not None and done >= 5 and t1 - start > max_seconds:
            break
    total = clock() - start
    cpu = time.process_time() - cpu_start
    return Measurement(label, done, total, items_per_op, bytes_per_op, lat, cpu, writes)


def timed(
    label: str,
    ops: int,
    seconds: float,
    *,
    items_per_op: int = 1,
    cpu_seconds: float | None = None,
    writes: bool = False,
) -> Measurement:
    """A measurement of a loop timed as a whole (throughput only)."""
    return Measurement(label, ops, seconds, items_per_op, cpu_seconds=cpu_seconds, writes=writes)


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (wall) and
    ``sw.cpu_seconds`` (``time.process_time``, every thread), or
    ``sw.measurement(...)`` for a loop timed as a whole."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        gc.collect()
        self._cpu_start = time.process_time()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = time.process_time() - self._cpu_start

    def measurement(
        self, label: str, ops: int, *, items_per_op: int = 1, writes: bool = False
    ) -> Measurement:
        """What the block measured, as ``ops`` calls of ``items_per_op`` items."""
        return timed(
            label,
            ops,
            self.seconds,
            items_per_op=items_per_op,
            cpu_seconds=self.cpu_seconds,
            writes=writes,
        )
