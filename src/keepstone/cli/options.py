"""Options and argument parsers shared by the CLI's commands."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import typer

from keepstone.errors import StorageError
from keepstone.schemas import ApprovalMarker

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document on stdout (sorted keys) for scripts; a listing is "
        "a JSON array. Errors become a JSON object on stderr.",
    ),
]
LimitOption = Annotated[
    int, typer.Option("--limit", min=1, max=10_000, help="Show at most this many items.")
]
OldestFirstOption = Annotated[
    bool,
    typer.Option(
        "--oldest-first",
        help="List oldest first, a page of --limit items at a time (default: the newest "
        "--limit items, newest first).",
    ),
]
CursorOption = Annotated[
    str | None,
    typer.Option(
        "--cursor",
        metavar="CURSOR",
        help="Continue an --oldest-first listing where its previous page ended "
        "(implies --oldest-first).",
    ),
]


def _check_approval(value: str | None) -> str | None:
    if value is not None:
        approval(value)
    return value


ApproveOption = Annotated[
    str | None,
    typer.Option(
        "--approve",
        metavar="'WHO: WHY'",
        help="Approve this lifecycle action, e.g. --approve 'alice: weekly cleanup'. "
        "Without it the action is refused (review_required) and the refusal is audited.",
        callback=_check_approval,
    ),
]


def approval(text: str | None) -> ApprovalMarker | None:
    """The approval marker of ``--approve 'who: why'``.

    Raises:
        typer.BadParameter: when it does not read ``who: why``.
    """
    if text is None:
        return None
    try:
        return ApprovalMarker.parse(text)
    except StorageError as exc:
        raise typer.BadParameter(exc.message, param_hint="--approve") from exc


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h30m``, ``7d``, ``2w`` as a timedelta.

    Raises:
        typer.BadParameter: for anything else.
    """
    compact = text.strip().replace(" ", "")
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact):
        raise typer.BadParameter(
            f"{text!r} is not a duration; use a number and a unit: 90s, 15m, 1h30m, 7d, 2w"
        )
    return timedelta(seconds=seconds)


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


def duration_option(flag: str, help: str) -> Any:
    """A ``--flag 1h`` option (for ``Annotated``) validated as a duration;
    the value stays text: convert it with :func:`parse_duration`."""
    return typer.Option(flag, metavar="DURATION", help=help, callback=_check_duration)


def labels(pairs: list[str] | None) -> dict[str, str] | None:
    """``["k=v", ...]`` as a dict.

    Raises:
        typer.BadParameter: for an item without ``=``.
    """
    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--label")
        out[key] = value
    return out
