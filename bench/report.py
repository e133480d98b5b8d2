"""Result rows (goal, measured, PASS/MISS) and the printed table."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.timing import Measurement

PASS, MISS, SKIP, INFO, ERROR = "PASS", "MISS", "SKIP", "info", "ERROR"
NOT_INSTALLED = "peer not installed"


def fmt_rate(value: float, unit: str = "/s") -> str:
    if value != value or value == float("inf"):
        return "n/a"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M{unit}"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k{unit}"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.1f}{unit}"


def fmt_seconds(value: float) -> str:
    if value != value:
        return "n/a"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.0f} µs"


def fmt_bytes(value: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


def fmt_ratio(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return "n/a"
    if value >= 10:
        return f"{value:.1f}×"
    return f"{value:.2f}×"


@dataclass
class Row:
    """One line of the results table."""

    id: str
    scenario: str
    keepstone: str
    versus: str
    goal: str
    measured: str
    result: str
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    cpu: str = "—"
    """keepstone's CPU microseconds per write (write rows only)."""


def fmt_cpu(us: float) -> str:
    if us != us or us in (float("inf"), float("-inf")):
        return "n/a"
    return f"{us:,.0f}" if us >= 10 else f"{us:.1f}"


def with_cpu(row: Row, ks: Measurement | None, peer: Measurement | None = None) -> Row:
    """Fill ``row``'s CPU column (when ``ks`` measured writes) and record both
    sides' CPU per item, where measured, in its data."""
    if ks is not None:
        if ks.writes:
            row.cpu = fmt_cpu(ks.cpu_us_per_item)
        if ks.cpu_seconds is not None:
            row.data["keepstone_cpu_us"] = _finite(ks.cpu_us_per_item)
    if peer is not None and peer.cpu_seconds is not None:
        row.data["peer_cpu_us"] = _finite(peer.cpu_us_per_item)
    return row


def _finite(value: float) -> float | None:
    return None if value != value else round(value, 1)


def ratio_row(
    id: str,
    scenario: str,
    ks: Measurement | None,
    peer: Measurement | None,
    peer_name: str,
    at_least: float,
    *,
    per: str = "items",
    unit: str = " ev/s",
    peer_note: str = NOT_INSTALLED,
) -> Row:
    """keepstone's rate over ``peer``'s must be at least ``at_least``."""
    goal = f"≥ {at_least:g}× {peer_name}"
    if ks is None:
        return Row(id, scenario, "failed", peer_name, goal, "n/a", MISS, "keepstone did not run")
    ks_rate = _rate(ks, per)
    ks_txt = fmt_rate(ks_rate, unit)
    if peer is None:
        return with_cpu(Row(id, scenario, ks_txt, peer_name, goal, "n/a", SKIP, peer_note), ks)
    peer_rate = _rate(peer, per)
    ratio = ks_rate / peer_rate if peer_rate else float("nan")
    row = Row(
        id,
        scenario,
        ks_txt,
        f"{peer_name} {fmt_rate(peer_rate, unit)}",
        goal,
        fmt_ratio(ratio),
        PASS if ratio >= at_least else MISS,
        data={"keepstone": ks_rate, "peer": peer_rate, "ratio": ratio, "goal": at_least},
    )
    return with_cpu(row, ks, peer)


def latency_ratio_row(
    id: str,
    scenario: str,
    ks: Measurement | None,
    peer: Measurement | None,
    peer_name: str,
    at_most: float,
    *,
    peer_note: str = NOT_INSTALLED,
) -> Row:
    """keepstone's median latency over ``peer``'s must be at most ``at_most``."""
    goal = f"≤ {at_most:g}× {peer_name} median"
    if ks is None:
        return Row(id, scenario, "failed", peer_name, goal, "n/a", MISS, "keepstone did not run")
    ks_txt = f"p50 {fmt_seconds(ks.p50)}"
    if peer is None:
        return with_cpu(Row(id, scenario, ks_txt, peer_name, goal, "n/a", SKIP, peer_note), ks)
    ratio = ks.p50 / peer.p50 if peer.p50 else float("nan")
    row = Row(
        id,
        scenario,
        ks_txt,
        f"{peer_name} p50 {fmt_seconds(peer.p50)}",
        goal,
        fmt_ratio(ratio),
        PASS if ratio <= at_most else MISS,
        data={"keepstone_p50_s": ks.p50, "peer_p50_s": peer.p50, "ratio": ratio, "goal": at_most},
    )
    return with_cpu(row, ks, peer)


def min_rate_row(
    id: str,
    scenario: str,
    ks: Measurement | None,
    at_least: float,
    *,
    per: str = "items",
    unit: str = " ev/s",
) -> Row:
    goal = f"≥ {fmt_rate(at_least, unit)}"
    if ks is None:
        return Row(id, scenario, "failed", "—", goal, "n/a", MISS, "keepstone did not run")
    rate = _rate(ks, per)
    row = Row(
        id,
        scenario,
        fmt_rate(rate, unit),
        "—",
        goal,
        fmt_rate(rate, unit),
        PASS if rate >= at_least else MISS,
        data={"keepstone": rate, "goal": at_least},
    )
    return with_cpu(row, ks)


def max_value_row(
    id: str,
    scenario: str,
    value: float | None,
    at_most: float,
    fmt: Any,
    *,
    versus: str = "—",
    note: str = "",
) -> Row:
    goal = f"≤ {fmt(at_most)}"
    if value is None:
        return Row(id, scenario, "n/a", versus, goal, "n/a", SKIP, note)
    return Row(
        id,
        scenario,
        fmt(value),
        versus,
        goal,
        fmt(value),
        PASS if value <= at_most else MISS,
        note,
        data={"keepstone": value, "goal": at_most},
    )


def growth_row(
    id: str, scenario: str, small: Measurement, large: Measurement, n_small: int, n_large: int
) -> Row:
    """Median latency may grow at most like log(n): the ratio of the medians
    must not exceed log(n_large) / log(n_small)."""
    bound = math.log(n_large) / math.log(n_small)
    ratio = large.p50 / small.p50 if small.p50 else float("nan")
    return Row(
        id,
        scenario,
        f"p50 {fmt_seconds(small.p50)} → {fmt_seconds(large.p50)}",
        "—",
        f"≤ {bound:.2f}× (log growth)",
        fmt_ratio(ratio),
        PASS if ratio <= bound else MISS,
        data={"small_p50_s": small.p50, "large_p50_s": large.p50, "ratio": ratio, "goal": bound},
    )


def info_ratio_row(
    id: str,
    scenario: str,
    ks: Measurement,
    peer: Measurement,
    peer_name: str,
    note: str,
    *,
    per: str = "items",
    unit: str = " ev/s",
) -> Row:
    """A reference figure: the ratio is printed, no goal is set."""
    ks_rate, peer_rate = _rate(ks, per), _rate(peer, per)
    ratio = ks_rate / peer_rate if peer_rate else float("nan")
    row = Row(
        id,
        scenario,
        fmt_rate(ks_rate, unit),
        f"{peer_name} {fmt_rate(peer_rate, unit)}",
        "—",
        fmt_ratio(ratio),
        INFO,
        note,
        data={"keepstone": ks_rate, "peer": peer_rate, "ratio": ratio},
    )
    return with_cpu(row, ks, peer)


def info_row(
    id: str,
    scenario: str,
    keepstone: str,
    versus: str = "—",
    note: str = "",
    *,
    data: dict[str, Any] | None = None,
) -> Row:
    return Row(id, scenario, keepstone, versus, "—", "—", INFO, note, data=dict(data or {}))


def skip_row(id: str, scenario: str, goal: str, note: str) -> Row:
    return Row(id, scenario, "—", "—", goal, "n/a", SKIP, note)


def _rate(m: Measurement, per: str) -> float:
    if per == "items":
        return m.items_per_s
    if per == "ops":
        return m.ops_per_s
    if per == "mb":
        return m.mb_per_s
    raise ValueError(per)


HEADERS = ("#", "scenario", "keepstone", "CPU µs/write", "versus", "goal", "measured", "result")


def _cells(r: Row) -> tuple[str, ...]:
    return (r.id, r.scenario, r.keepstone, r.cpu, r.versus, r.goal, r.measured, r.result)


def render_table(rows: list[Row]) -> str:
    """A plain-text table; notes follow the result column."""
    cells = [HEADERS] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    lines = []
    for n, c in enumerate(cells):
        line = "  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip()
        if n and rows[n - 1].note:
            line += f"  ({rows[n - 1].note})"
        lines.append(line)
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEADERS) + " | note |", "|" + "---|" * (len(HEADERS) + 1)]
    for r in rows:
        cells = (*_cells(r), r.note)
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def summary(rows: list[Row]) -> dict[str, int]:
    counts = {PASS: 0, MISS: 0, SKIP: 0, INFO: 0, ERROR: 0}
    for r in rows:
        counts[r.result] = counts.get(r.result, 0) + 1
    return counts


def rows_as_dicts(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
