"""The ASGI application: routes, static files, errors, the store's lifetime."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

import keepstone
from keepstone import StorageError, Store
from keepstone.ui.redact import redact_url, scrub
from keepstone.ui.render import UiState, make_env, page
from keepstone.ui.security import ASGIApp, Guard
from keepstone.ui.views import artifacts, audit, home, langgraph, memory, runs

STATIC = Path(__file__).parent / "static"
STATUS_OF_CODE = {
    "not_found": 404,
    "invalid": 400,
    "conflict": 409,
    "unavailable": 503,
}
log = logging.getLogger("keepstone.ui")


def langgraph_available() -> bool:
    """Whether ``keepstone.langgraph`` is installed (its page shows only then)."""
    try:
        return importlib.util.find_spec("keepstone.langgraph") is not None
    except (ImportError, ValueError):
        return False


def routes(with_langgraph: bool) -> list[BaseRoute]:
    found: list[BaseRoute] = [
        *home.routes,
        *runs.routes,
        *artifacts.routes,
        *memory.routes,
        *audit.routes,
    ]
    if with_langgraph:
        found += langgraph.routes
    found.append(Mount("/static", app=StaticFiles(directory=STATIC), name="static"))
    return found


def create_app(
    url: str | None = None,
    *,
    store: Store | None = None,
    token: str | None = None,
    loopback_only: bool = False,
    poll_seconds: float = 2.0,
    shown_as: str | None = None,
) -> ASGIApp:
    """The inspector as an ASGI app.

    Args:
        url: the store to open when the app starts (closed when it stops).
        store: an already open store to show instead (the caller closes it).
        token: when given, every request must carry it (see
            :mod:`keepstone.ui.security`).
        loopback_only: refuse requests whose ``Host`` is not a loopback name.
        poll_seconds: how often live parts (running runs, log tails) refresh.
        shown_as: how pages name the store (default: its URL); secrets are
            removed either way.
    """
    if (url is None) == (store is None):
        raise ValueError("give create_app either a store URL or an open store")
    with_langgraph = langgraph_available()
    env = make_env()
    secret = url if url is not None else store.url if store is not None else ""
    shown = redact_url(shown_as or secret)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if store is not None:
            app.state.ui = UiState(
                store, shown, secret, env, with_langgraph, int(poll_seconds * 1000)
            )
            yield
            return
        assert url is not None
        async with keepstone.open(url) as opened:
            app.state.ui = UiState(
                opened, shown, secret, env, with_langgraph, int(poll_seconds * 1000)
            )
            yield

    async def storage_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StorageError)
        status = STATUS_OF_CODE.get(exc.code, 500)
        return page(
            request,
            "error.html",
            {"code": exc.code, "message": scrub(exc.message, secret), "status": status},
            status_code=status,
            title=f"{status} {exc.code}",
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return page(
            request,
            "error.html",
            {"code": "http", "message": exc.detail, "status": exc.status_code},
            status_code=exc.status_code,
            title=str(exc.status_code),
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("keepstone ui: unexpected error on %s", request.url.path)
        return page(
            request,
            "error.html",
            {
                "code": "internal",
                "message": scrub(f"{type(exc).__name__}: {exc}", secret),
                "status": 500,
            },
            status_code=500,
            title="500 internal",
        )

    handlers: dict[Any, Any] = {
        StorageError: storage_error,
        HTTPException: http_error,
        Exception: unexpected,
    }
    app = Starlette(routes=routes(with_langgraph), lifespan=lifespan, exception_handlers=handlers)
    if store is not None:  # usable without running the lifespan (in-process benchmarks)
        app.state.ui = UiState(store, shown, secret, env, with_langgraph, int(poll_seconds * 1000))
    return Guard(app, token=token, check_host=loopback_only)
