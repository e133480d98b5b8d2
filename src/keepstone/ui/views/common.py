"""Helpers shared by the views: reading query parameters."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request

from keepstone import StorageError

DEFAULT_PAGE = 50
MAX_PAGE = 500


def arg(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value.strip() if value is not None and value.strip() else None


def arg_int(
    request: Request, name: str, default: int | None = None, *, lo: int = 0, hi: int = 2**62
) -> int | None:
    text = arg(request, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise StorageError("invalid", f"{name} must be a whole number, not {text!r}") from None
    if not lo <= value <= hi:
        raise StorageError("invalid", f"{name} must be between {lo} and {hi}")
    return value


def page_size(request: Request, default: int = DEFAULT_PAGE) -> int:
    value = arg_int(request, "n", default, lo=1, hi=MAX_PAGE)
    assert value is not None
    return value


def arg_time(request: Request, name: str) -> datetime | None:
    """A ``YYYY-MM-DD[THH:MM[:SS]]`` parameter, read as UTC."""
    text = arg(request, name)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StorageError(
            "invalid", f"{name} must be a date and time like 2026-01-31T12:00, not {text!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)
