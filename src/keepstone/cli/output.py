"""Output for the CLI: one JSON document for scripts, rich tables for people.

JSON goes to stdout with sorted keys, models in their JSON form (the same
shape the Python API's ``model_dump(mode="json")`` gives); a listing is a
JSON array. Tables, trees and progress bars are rich; progress, spinners and
hints go to stderr so stdout stays clean.

The terminal is not an input: every stored string reaches people through
:func:`inert`, which spells control characters (ESC sequences, carriage
returns, C1 controls, bidi overrides) as visible escapes such as ``\\x1b``,
and nothing stored is ever read as rich markup or emoji codes. The console
itself (:class:`InertConsole`) applies the same rule to whatever it draws,
as a second line of defence. JSON stays exact: it is only made
terminal-safe by writing those characters as ``\\u`` escapes, which any JSON
parser reads back as the same characters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import typer
from pydantic import BaseModel
from rich.console import Console, ConsoleOptions, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "succeeded": "green",
    "applied": "green",
    "active": "green",
    "running": "cyan",
    "pending": "yellow",
    "merged": "blue",
    "skipped": "dim",
    "failed": "red",
    "denied": "yellow",
    "cancelled": "magenta",
    "abandoned": "magenta",
    "error": "red",
    "warning": "yellow",
    "info": "dim",
}


# --------------------------------------------------------------------------- inert text

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Characters a terminal acts on instead of showing: C0 and C1 controls (ESC
starts a sequence that can clear the screen or rewrite the title), DEL, line
and paragraph separators, and the bidi marks that reorder what is shown."""
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: str, *, newlines: bool = False) -> str:
    """``text`` with every character a terminal would act on written as a
    visible escape (``\\x1b``, ``\\n``, ``\\u202e``); with ``newlines``,
    line breaks are kept as they are."""
    if newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class InertConsole(Console):
    """A console that draws every segment of text inert (see :func:`inert`),
    whatever renderable it came from; rich's own control sequences (colours,
    cursor moves of progress bars) are untouched."""

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None and _UNSAFE.search(segment.text):
                yield Segment(inert(segment.text, newlines=True), segment.style)
            else:
                yield segment


# --------------------------------------------------------------------------- JSON


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: models by their JSON form, dataclasses as
    dicts, datetimes as RFC 3339 UTC."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def json_text_of(value: Any, *, indent: bool = True) -> str:
    """``value`` as JSON text with sorted keys; characters a terminal would act
    on are written as ``\\u`` escapes (the same string to any JSON parser)."""
    option = orjson.OPT_SORT_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    text = orjson.dumps(jsonable(value), option=option).decode("utf-8")
    return _JSON_UNSAFE.sub(_json_escape, text)


def print_json(value: Any) -> None:
    """Print ``value`` as one indented JSON document with sorted keys."""
    typer.echo(json_text_of(value))


def print_json_line(value: Any) -> None:
    """Print ``value`` as one compact JSON line (``--jsonl`` streams)."""
    sys.stdout.write(json_text_of(value, indent=False) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- people


def console(*, stderr: bool = False) -> Console:
    """An :class:`InertConsole` on stdout (or stderr) that reads no markup and
    no emoji codes; wide when not a terminal, so ids and digests are not
    folded in captured output."""
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 160
    return InertConsole(
        file=stream, highlight=False, markup=False, emoji=False, width=width, soft_wrap=False
    )


def plain(value: Any, style: str = "") -> Text:
    """A stored value as inert text (never markup, no control characters)."""
    return Text(inert(str(value)), style=style)


def cell(value: Any) -> Text:
    """A table cell as inert plain text; ``None`` shows as ``-``."""
    if isinstance(value, Text):
        return value
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, datetime):
        return Text(when(value))
    return plain(value)


def hint(message: str) -> None:
    """A dim note for people on stderr (more pages, what to type next)."""
    console(stderr=True).print(Text(inert(message), style="dim"), soft_wrap=True)


def status_text(status: str | None) -> Text:
    """A status word, coloured by what it means."""
    if status is None:
        return Text("-", style="dim")
    return Text(status, style=STATUS_STYLES.get(status, ""))


def when(value: datetime | None) -> str:
    """A timestamp for tables: ``2026-01-02 03:04:05Z``."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%SZ")


def short(digest: str | None) -> str:
    """A digest shortened for tables (``sha256:0123456789ab``)."""
    return "-" if digest is None else digest[:19]


def size(n: int | None) -> str:
    """A byte count for people (``1.2 MiB``)."""
    if n is None:
        return "-"
    amount = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{int(amount)} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{n} B"  # pragma: no cover


def duration(start: datetime | None, end: datetime | None) -> str:
    """How long from ``start`` to ``end`` for people: ``0.42s``, ``12.3s``,
    ``3m05s``, ``2h03m``, ``3d04h``; ``-`` without a start."""
    if start is None or end is None:
        return "-"
    seconds = max((end - start).total_seconds(), 0.0)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    clipped: Mapping[str, int] | None = None,
) -> Table:
    """A rich table whose cells are inert plain text. Long cells fold onto
    more lines, except in the ``clipped`` columns, which stay on one line of
    at most the given width and end in ``…``."""
    clipped = clipped or {}
    out = Table(
        title=None if title is None else plain(title),
        title_justify="left",
        header_style="bold",
        expand=False,
    )
    for name in columns:
        if name in clipped:
            out.add_column(name, no_wrap=True, overflow="ellipsis", max_width=clipped[name])
        else:
            out.add_column(name, overflow="fold")
    for row in rows:
        out.add_row(*(cell(v) for v in row))
    if not out.row_count:
        out.caption = "(none)"
    return out


def print_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Rows as aligned columns without borders, one line per row, like
    ``git log --oneline``: nothing is folded into a cell. The last column
    takes the rest of the line; on a terminal a line longer than the screen
    is cut with ``…`` (``--json`` shows everything), elsewhere it is whole."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(name), *(r[i].cell_len for r in cells)]) for i, name in enumerate(columns)]
    out = console()

    def line(items: Sequence[Text], style: str = "") -> Text:
        text = Text(style=style)
        for i, item in enumerate(items):
            text.append_text(item)
            if i < len(items) - 1:
                text.append(" " * (widths[i] - item.cell_len + 2))
        return text

    def emit(text: Text) -> None:
        if out.is_terminal:
            out.print(text, no_wrap=True, overflow="ellipsis", crop=True)
        else:
            out.print(text, soft_wrap=True)

    emit(line([Text(name) for name in columns], "bold"))
    for row_cells in cells:
        emit(line(row_cells))
    if not cells:
        out.print(Text("(none)", style="dim"))


def fields(pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column ``key  value`` grid for ``show`` commands."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in pairs:
        grid.add_row(Text(key), cell(value))
    return grid


def json_text(value: Any, *, clip: int | None = None) -> Text:
    """A JSON value rendered compactly (and inert) for a table cell or a
    line; longer than ``clip`` characters, it is cut (``--json`` shows it
    whole)."""
    if value is None:
        return Text("-", style="dim")
    text = inert(orjson.dumps(jsonable(value), option=orjson.OPT_SORT_KEYS).decode("utf-8"))
    if clip is not None and len(text) > clip:
        out = Text(text[:clip])
        out.append(f"… ({len(text)} characters; --json shows all)", style="dim")
        return out
    return Text(text)


def pairs_text(value: Mapping[str, Any] | None) -> Text:
    """A JSON object as ``key=value`` pairs on one line (values compact
    JSON, strings bare), for cells that must not wrap."""
    if not value:
        return Text("-", style="dim")
    parts = []
    for key, item in sorted(value.items()):
        shown = item if isinstance(item, str) else orjson.dumps(jsonable(item)).decode("utf-8")
        parts.append(f"{key}={shown}")
    return Text(inert(" ".join(parts)))


# --------------------------------------------------------------------------- progress


class _CountColumn(ProgressColumn):
    """``12/300 records`` (``12 records`` while the total is unknown), then
    the total size of the stage's bytes when known (``· 45.0 MiB``)."""

    def render(self, task: Task) -> Text:
        unit = str(task.fields.get("unit", "items"))
        done = f"{int(task.completed):,}"
        text = f"{done}/{int(task.total):,} {unit}" if task.total else f"{done} {unit}"
        total_bytes = task.fields.get("bytes")
        if total_bytes is not None:
            text += f" · {size(int(total_bytes))}"
        return Text(text)


@contextlib.contextmanager
def progress_bar(
    title: str,
    *,
    totals: Mapping[str, int] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> Iterator[Any]:
    """A ``progress(stage, items_done)`` callback drawing one rich bar per
    stage on stderr (nothing when stderr is not a terminal).

    Args:
        totals: the number of items of each stage, when known beforehand:
            the bar then shows ``done/total`` and an estimated time left.
        sizes: the total bytes of a stage (blobs), shown beside its count.
    """
    totals = totals or {}
    sizes = sizes or {}
    err = console(stderr=True)
    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False, style="bold"),
        BarColumn(),
        _CountColumn(),
        TimeElapsedColumn(),
        TextColumn("left", style="dim"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()

    def report(stage: str, done: int) -> None:
        with lock:
            if stage not in tasks:
                for previous in tasks.values():
                    finished = bars.tasks[previous].completed
                    bars.update(previous, total=max(finished, 1), completed=max(finished, 1))
                tasks[stage] = bars.add_task(
                    inert(f"{title}: {stage}"),
                    total=totals.get(stage),
                    unit="blobs" if stage.endswith("blobs") else "records",
                    bytes=sizes.get(stage),
                )
            bars.update(tasks[stage], completed=done)

    with bars:
        yield report


@contextlib.contextmanager
def spinner(message: str) -> Iterator[None]:
    """A status spinner with the time elapsed, on stderr, while a call with
    no progress callback runs (nothing when stderr is not a terminal)."""
    err = console(stderr=True)
    bars = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    with bars:
        bars.add_task(inert(message), total=None)
        yield
