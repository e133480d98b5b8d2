"""Output for the CLI: one JSON document for scripts, rich tables for people.

JSON goes to stdout with sorted keys, models in their JSON form (the same
shape the Python API's ``model_dump(mode="json")`` gives). Tables, trees and
progress bars are rich; progress and status spinners go to stderr so stdout
stays clean. User data is always printed as plain text, never as rich markup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from keepstone.schemas import Page

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


def print_json(value: Any) -> None:
    """Print ``value`` as one indented JSON document with sorted keys."""
    data = orjson.dumps(jsonable(value), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    typer.echo(data.decode("utf-8"))


def print_json_line(value: Any) -> None:
    """Print ``value`` as one compact JSON line (for streams: logs, follow)."""
    data = orjson.dumps(jsonable(value), option=orjson.OPT_SORT_KEYS)
    sys.stdout.write(data.decode("utf-8") + "\n")
    sys.stdout.flush()


def page_json(page: Page[Any]) -> dict[str, Any]:
    """A page of results as ``{"items": [...], "next_cursor": ...}``."""
    return {"items": page.items, "next_cursor": page.next_cursor}


# --------------------------------------------------------------------------- people


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr); wide when not a terminal, so ids and
    digests are not folded in captured output."""
    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = 160
    return Console(file=stream, highlight=False, width=width, soft_wrap=False)


def cell(value: Any) -> Text:
    """A table cell as plain text (never markup); ``None`` shows as ``-``."""
    if isinstance(value, Text):
        return value
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, datetime):
        return Text(when(value))
    return Text(str(value))


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


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table whose cells are plain text."""
    out = Table(title=title, title_justify="left", header_style="bold", expand=False)
    for name in columns:
        out.add_column(name, overflow="fold")
    for row in rows:
        out.add_row(*(cell(v) for v in row))
    if not out.row_count:
        out.caption = "(none)"
    return out


def fields(pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column ``key  value`` grid for ``show`` commands."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in pairs:
        grid.add_row(Text(key), cell(value))
    return grid


def more(page: Page[Any]) -> None:
    """Tell people how to get the next page, if there is one."""
    if page.next_cursor is not None:
        console().print(
            Text(f"more: repeat with --cursor {page.next_cursor}", style="dim"), soft_wrap=True
        )


def json_text(value: Any, *, clip: int | None = None) -> Text:
    """A JSON value rendered compactly for a table cell or a line; longer than
    ``clip`` characters, it is cut (``--json`` shows it whole)."""
    if value is None:
        return Text("-", style="dim")
    text = orjson.dumps(jsonable(value), option=orjson.OPT_SORT_KEYS).decode("utf-8")
    if clip is not None and len(text) > clip:
        out = Text(text[:clip])
        out.append(f"… ({len(text)} characters; --json shows all)", style="dim")
        return out
    return Text(text)


# --------------------------------------------------------------------------- progress


@contextlib.contextmanager
def progress_bar(title: str) -> Iterator[Any]:
    """A ``progress(stage, items_done)`` callback drawing one rich bar per
    stage on stderr (nothing when stderr is not a terminal)."""
    err = console(stderr=True)
    bars = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} items"),
        TimeElapsedColumn(),
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
                    bars.update(previous, total=bars.tasks[previous].completed or 1)
                tasks[stage] = bars.add_task(f"{title}: {stage}", total=None)
            bars.update(tasks[stage], completed=done)

    with bars:
        yield report


@contextlib.contextmanager
def spinner(message: str) -> Iterator[None]:
    """A status spinner on stderr while a call with no progress callback runs."""
    err = console(stderr=True)
    if not err.is_terminal:
        yield
        return
    with err.status(message):
        yield
