"""The overview: the newest runs, collections, profiles, and activity."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keepstone.schemas import RunQuery
from keepstone.ui.activity import audit_activity, event_activity
from keepstone.ui.paging import newest_runs
from keepstone.ui.render import page, state
from keepstone.ui.views.common import now


async def overview(request: Request) -> Response:
    ui = state(request)
    store = ui.store
    at = now()
    runs, collections, profiles, head, last_seq = await asyncio.gather(
        newest_runs(store, RunQuery(), before=None, n=10, now=at),
        store.artifacts.list_collections(limit=20),
        store.memory.list_profiles(limit=20),
        store.audit.head(),
        store.events.last_seq(),
    )
    events, audit = await asyncio.gather(event_activity(store), audit_activity(store))
    context = {
        "runs": runs.items,
        "more_runs": runs.before is not None,
        "collections": collections,
        "profiles": profiles,
        "head": head,
        "last_seq": last_seq,
        "events_spark": events,
        "audit_spark": audit,
        "now": at,
        "capabilities": sorted(store.capabilities),
    }
    return page(request, "home.html", context, title="Overview")


async def favicon(request: Request) -> Response:
    from starlette.responses import RedirectResponse

    return RedirectResponse("/static/favicon.svg", status_code=308)


routes = [Route("/", overview), Route("/favicon.ico", favicon)]
