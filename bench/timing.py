"""A small timing helper: warm-up, then a timed loop of single operations.

Every figure comes from ``time.perf_counter``. A measurement keeps each
operation's latency, so a result carries both a rate (operations, or items,
per second of wall time) and latency percentiles.
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
        if len(self.latencies) >= 10:
            return statistics.quantiles(self.latencies, n=10)[-1]
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
        }


def _warmup_count(n: int, warmup: int | None) -> int:
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
) -> Measurement:
    """Call ``op(i)`` for i in 0..n-1 after ``warmup`` calls ``op(-k)``.

    Warm-up calls get negative indexes so that callers can keep their ids
    apart. With ``max_seconds``, stop early (after at least 5 calls) once the
    loop has run that long; the measurement records how many calls it made.
    """
    for k in range(_warmup_count(n, warmup)):
        op(-1 - k)
    gc.collect()
    lat: list[float] = []
    clock = time.perf_counter
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
    return Measurement(label, done, total, items_per_op, bytes_per_op, lat)


async def run_async(
    label: str,
    op: Callable[[int], Awaitable[Any]],
    n: int,
    *,
    warmup: int | None = None,
    items_per_op: int = 1,
    bytes_per_op: int = 0,
    max_seconds: float | None = None,
) -> Measurement:
    """The async twin of :func:`run_sync`: ``await op(i)`` one call at a time."""
    for k in range(_warmup_count(n, warmup)):
        await op(-1 - k)
    gc.collect()
    lat: list[float] = []
    clock = time.perf_counter
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
    return Measurement(label, done, total, items_per_op, bytes_per_op, lat)


def timed(label: str, ops: int, seconds: float, *, items_per_op: int = 1) -> Measurement:
    """A measurement of a loop timed as a whole (throughput only)."""
    return Measurement(label, ops, seconds, items_per_op)


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        gc.collect()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
