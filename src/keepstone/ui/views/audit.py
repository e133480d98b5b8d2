"""Audit: the chain newest first with filters, one record, verification on
demand, and the doctor's findings with their proposed repairs (applying a
repair stays in the CLI: this inspector never changes the store)."""

from __future__ import annotations

import time
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keepstone import StorageError
from keepstone.schemas import AuditQuery, AuditRecord
from keepstone.schemas.diagnostics import DIAGNOSTIC_CODES
from keepstone.ui.activity import audit_activity
from keepstone.ui.paging import newest_audit
from keepstone.ui.render import href, page, state
from keepstone.ui.views.common import arg, arg_int, page_size

OUTCOMES = ("applied", "denied", "failed")


def target_link(record: AuditRecord) -> str | None:
    """Where an audit record's target can be seen, when the UI knows."""
    area, _, verb = record.action.partition(".")
    target = record.target
    if area in ("run", "log"):
        return href("runs", target)
    if area == "artifact" and verb not in ("relate", "unrelate"):
        return href("artifacts", target)
    if area == "collection":
        return href("artifacts", collection=target)
    if area == "memory":
        return href("memory", target)
    return None


async def audit_list(request: Request) -> Response:
    ui = state(request)
    outcome = arg(request, "outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise StorageError("invalid", f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
    query = AuditQuery.model_validate(
        {
            "actor": arg(request, "actor"),
            "action": arg(request, "action"),
            "target": arg(request, "target"),
            "outcome": outcome,
        }
    )
    found = await newest_audit(
        ui.store, query, before=arg_int(request, "before", lo=1), n=page_size(request)
    )
    context = {
        "records": found.items,
        "next_before": found.before,
        "outcomes": OUTCOMES,
        "links": {r.seq: target_link(r) for r in found.items},
        "spark": await audit_activity(ui.store),
    }
    return page(request, "audit/list.html", context, title="Audit")


async def audit_record(request: Request) -> Response:
    ui = state(request)
    record = await ui.store.audit.get(int(request.path_params["seq"]))
    head = await ui.store.audit.head()
    context = {
        "r": record,
        "link": target_link(record),
        "last": head.seq if head else record.seq,
    }
    return page(request, "audit/record.html", context, title=f"Audit #{record.seq}")


async def _verify_context(request: Request) -> dict[str, object]:
    ui = state(request)
    started = time.perf_counter()
    verdict = await ui.store.audit.verify()
    head = await ui.store.audit.head()
    return {
        "verdict": verdict,
        "head": head,
        "took": time.perf_counter() - started,
    }


async def verify_page(request: Request) -> Response:
    context: dict[str, object] = {"verdict": None}
    if arg(request, "run") == "1":
        context = await _verify_context(request)
    return page(request, "audit/verify.html", context, title="Verify the audit chain")


async def verify_result(request: Request) -> Response:
    return page(request, "audit/_verify_result.html", await _verify_context(request))


async def _doctor_context(request: Request) -> dict[str, object]:
    ui = state(request)
    thorough = arg(request, "thorough") == "1"
    stale = arg_int(request, "stale_minutes", 60, lo=1, hi=525_600) or 60
    started = time.perf_counter()
    report = await ui.store.diagnose(verify_blobs=thorough, stale_after=timedelta(minutes=stale))
    return {
        "report": report,
        "meanings": DIAGNOSTIC_CODES,
        "thorough": thorough,
        "took": time.perf_counter() - started,
        "shown_url": ui.shown_url,
    }


async def doctor_page(request: Request) -> Response:
    context: dict[str, object] = {"report": None, "thorough": arg(request, "thorough") == "1"}
    if arg(request, "run") == "1":
        context = await _doctor_context(request)
    return page(request, "audit/doctor.html", context, title="Doctor")


async def doctor_result(request: Request) -> Response:
    return page(request, "audit/_doctor_result.html", await _doctor_context(request))


routes = [
    Route("/audit", audit_list),
    Route("/audit/verify", verify_page),
    Route("/audit/verify/_result", verify_result),
    Route("/audit/doctor", doctor_page),
    Route("/audit/doctor/_result", doctor_result),
    Route("/audit/{seq:int}", audit_record),
]
