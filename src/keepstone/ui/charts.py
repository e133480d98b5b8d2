"""Geometry for the pictures drawn as SVG by the templates: a run's step
timeline and sparklines. Only numbers and stored names come out of here;
the templates escape the names."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from keepstone.schemas import Run
from keepstone.schemas.runs import RunStep
from keepstone.ui.render import seconds_text

WIDTH = 760.0
"""Width of a chart's drawing area, in SVG units (the SVG scales to fit)."""


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    label: str
    title: str


@dataclass(frozen=True)
class Timeline:
    rows: list[Bar]
    height: float
    ticks: list[tuple[float, str]]
    span: str


def step_timeline(run: Run, now: datetime, row_height: float = 26.0) -> Timeline | None:
    """One bar per step, from its start to its end (or now, while it runs)."""
    spans = [(s.started_at, _step_end(s, now)) for s in run.steps if s.started_at is not None]
    if not spans:
        return None
    start = min([run.started_at or now, *(a for a, _ in spans)])
    end = max([run.ended_at or now, *(b for _, b in spans)])
    total = max((end - start).total_seconds(), 1e-6)
    rows = []
    for i, step in enumerate(run.steps):
        if step.started_at is None:
            continue
        stop = _step_end(step, now)
        x = (step.started_at - start).total_seconds() / total * WIDTH
        w = max((stop - step.started_at).total_seconds() / total * WIDTH, 2.0)
        took = seconds_text((stop - step.started_at).total_seconds())
        attempts = f", {step.attempts} attempts" if step.attempts > 1 else ""
        rows.append(
            Bar(
                x=round(x, 2),
                y=i * row_height,
                width=round(min(w, WIDTH - x) if x < WIDTH else 2.0, 2),
                height=row_height - 6,
                css=f"st-{step.status}",
                label=step.name + (f" ×{step.attempts}" if step.attempts > 1 else ""),
                title=f"{step.name}: {step.status}, {took}{attempts}",
            )
        )
    ticks = [(round(WIDTH * k / 4, 2), seconds_text(total * k / 4)) for k in range(5)]
    return Timeline(rows, len(run.steps) * row_height, ticks, seconds_text(total))


def _step_end(step: RunStep, now: datetime) -> datetime:
    if step.ended_at is not None:
        return step.ended_at
    if step.status == "running" or step.started_at is None:
        return now
    return step.started_at


def duration_sparkline(runs: Sequence[Run], now: datetime, height: float = 36.0) -> list[Bar]:
    """One bar per run (oldest on the left), as tall as its duration."""
    ordered = list(reversed(runs))
    if not ordered:
        return []
    took = [
        ((r.ended_at or now) - r.started_at).total_seconds() if r.started_at else 0.0
        for r in ordered
    ]
    longest = max(took) or 1.0
    step = WIDTH / max(len(ordered), 1)
    bars = []
    for i, (run, seconds) in enumerate(zip(ordered, took, strict=True)):
        h = max(seconds / longest * height, 2.0)
        bars.append(
            Bar(
                x=round(i * step, 2),
                y=round(height - h, 2),
                width=round(max(step - 1.0, 1.0), 2),
                height=round(h, 2),
                css=f"st-{run.status}",
                label=run.id,
                title=f"{run.name} {run.status} {seconds_text(seconds) if run.started_at else ''}",
            )
        )
    return bars


def rate_sparkline(
    samples: Sequence[tuple[float, int]], buckets: int = 40, height: float = 36.0
) -> tuple[list[Bar], str]:
    """Bars of items per time bucket, from samples of (time, cumulative count)
    taken along a log (its seq against its timestamps)."""
    pts = sorted(samples)
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
        return [], ""
    t0, t1 = pts[0][0], pts[-1][0]
    width = (t1 - t0) / buckets

    def cumulative(t: float) -> float:
        for (ta, ca), (tb, cb) in itertools.pairwise(pts):
            if ta <= t <= tb:
                return ca if tb == ta else ca + (cb - ca) * (t - ta) / (tb - ta)
        return float(pts[-1][1])

    counts = [cumulative(t0 + (k + 1) * width) - cumulative(t0 + k * width) for k in range(buckets)]
    top = max(counts) or 1.0
    step = WIDTH / buckets
    bars = []
    for k, count in enumerate(counts):
        h = max(count / top * height, 1.0 if count > 0 else 0.0)
        bars.append(
            Bar(
                x=round(k * step, 2),
                y=round(height - h, 2),
                width=round(step - 1.0, 2),
                height=round(h, 2),
                css="spark",
                label="",
                title=f"≈{count:,.0f}",
            )
        )
    return bars, f"{seconds_text(t1 - t0)} span"
