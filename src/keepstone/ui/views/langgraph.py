"""LangGraph threads: the place for the checkpoint browser.

This page is routed (and linked from the navigation) only when
``keepstone.langgraph`` can be imported (see ``app.langgraph_available``).
Its views belong here and nowhere else: thread list, checkpoint history as
a tree with forks, the state at a checkpoint, a diff between two. Until they
are written the page says so.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keepstone.ui.render import page


async def threads(request: Request) -> Response:
    return page(request, "langgraph.html", {}, title="LangGraph threads")


routes: list[BaseRoute] = [Route("/langgraph", threads)]
