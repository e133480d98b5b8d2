"""Templates: the Jinja environment, its filters, and page responses.

Autoescaping is on for every template, and no filter marks stored data as
safe: every stored string (run names, artifact content, node content,
log messages, audit details) reaches the page as text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from keepstone import Store


@dataclass
class UiState:
    """What every view needs: the open store and how to show it."""

    store: Store
    shown_url: str
    """The store URL with its secrets replaced (the only form a page shows)."""
    secret_url: str
    """The URL as given: used to scrub error messages, never rendered."""
    env: Environment
    langgraph: bool
    poll_ms: int = 2000
    kept: dict[str, Any] = field(default_factory=dict)
    """Objects a view keeps between requests (the LangGraph thread reader
    and its caches), made on first use."""


def state(request: Request) -> UiState:
    found: UiState = request.app.state.ui
    return found


def href(*segments: object, **query: object) -> str:
    """An absolute path from segments (each quoted whole) and a query string
    (``None`` values left out)."""
    path = "/" + "/".join(quote(str(s), safe="") for s in segments if s != "")
    params = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
    return path + ("?" + urlencode(params) if params else "")


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime | None, end: datetime | None, now: datetime | None = None) -> str:
    """``1.25 s``, ``3 min 04 s``, ``2 h 05 min``; ``—`` when not started."""
    if start is None:
        return "—"
    stop = end or now or datetime.now(UTC)
    return seconds_text((stop - start).total_seconds())


def seconds_text(total: float) -> str:
    if total < 0:
        total = 0.0
    if total < 1:
        return f"{total * 1000:.0f} ms"
    if total < 60:
        return f"{total:.2f} s"
    minutes, seconds = divmod(int(total), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def pretty(value: Any) -> str:
    """JSON, indented, keys sorted (the template escapes it)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def compact(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short(value: str | None, keep: int = 12) -> str:
    if not value:
        return "—"
    return value if len(value) <= keep + 6 else value[: keep + 4] + "…"


def make_env() -> Environment:
    env = Environment(
        loader=PackageLoader("keepstone.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when, size=size, pretty=pretty, compact=compact, short=short, seconds=seconds_text
    )
    env.globals.update(href=href, duration=duration)
    return env


def query_with(request: Request, **changes: object) -> str:
    """The current page's URL with some query parameters changed (``None``
    removes one)."""
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    for key, change in changes.items():
        if change is None or change == "":
            params.pop(key, None)
        else:
            params[key] = [str(change)]
    pairs = [(k, v) for k, values in params.items() for v in values]
    return request.url.path + ("?" + urlencode(pairs) if pairs else "")


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    title: str = "",
) -> HTMLResponse:
    """Render ``template`` with the shared context."""
    ui = state(request)
    body = ui.env.get_template(template).render(
        ui=ui,
        title=title,
        here=request.url.path,
        params=request.query_params,
        qs=lambda **changes: query_with(request, **changes),
        **(context or {}),
    )
    return HTMLResponse(body, status_code=status_code)
