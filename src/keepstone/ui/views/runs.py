"""Runs: the newest-first list, a run's page, its logs and snapshots."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keepstone import StorageError
from keepstone.schemas import Artifact, ArtifactQuery, ArtifactRef, LogQuery, Run, RunQuery
from keepstone.schemas.logs import LOG_LEVELS
from keepstone.schemas.runs import TERMINAL_RUN_STATUSES
from keepstone.ui.charts import duration_sparkline, step_timeline
from keepstone.ui.diffs import json_diff
from keepstone.ui.paging import newest_runs
from keepstone.ui.render import page, state
from keepstone.ui.views.common import arg, arg_int, arg_time, now, page_size

STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
LOG_PAGE = 500


def _query(request: Request) -> tuple[RunQuery, list[str]]:
    labels: dict[str, str] = {}
    raw = [v.strip() for v in request.query_params.getlist("label") if v.strip()]
    for pair in raw:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise StorageError("invalid", f"a label filter reads KEY=VALUE, not {pair!r}")
        labels[key] = value
    status = arg(request, "status")
    if status is not None and status not in STATUSES:
        raise StorageError("invalid", f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    query = RunQuery.model_validate(
        {
            "name": arg(request, "name"),
            "status": status,
            "labels": labels or None,
            "created_after": arg_time(request, "since"),
            "created_before": arg_time(request, "until"),
        }
    )
    return query, raw


async def _list_context(request: Request) -> dict[str, Any]:
    ui = state(request)
    query, labels = _query(request)
    before = arg(request, "before")
    n = page_size(request)
    at = now()
    found = await newest_runs(ui.store, query, before=before, n=n, now=at)
    live = before is None or any(r.status not in TERMINAL_RUN_STATUSES for r in found.items)
    return {
        "runs": found.items,
        "next_before": found.before,
        "labels": labels,
        "statuses": STATUSES,
        "live": live,
        "now": at,
        "sparkline": duration_sparkline(found.items, at),
        "table_url": "/runs/_table" + (f"?{request.url.query}" if request.url.query else ""),
    }


async def runs_list(request: Request) -> Response:
    return page(request, "runs/list.html", await _list_context(request), title="Runs")


async def runs_table(request: Request) -> Response:
    """The table alone: what the live list polls."""
    return page(request, "runs/_table.html", await _list_context(request))


async def _run_context(request: Request) -> tuple[Run, dict[str, Any]]:
    ui = state(request)
    run_id = request.path_params["run_id"]
    run = await ui.store.runs.get(run_id)
    at = now()
    return run, {
        "run": run,
        "now": at,
        "live": run.status not in TERMINAL_RUN_STATUSES,
        "timeline": step_timeline(run, at),
    }


async def run_detail(request: Request) -> Response:
    ui = state(request)
    run, context = await _run_context(request)
    manifest, snapshots, outputs, logs = await asyncio.gather(
        ui.store.runs.get_manifest(run.id),
        ui.store.runs.list_snapshots(run.id, limit=100),
        ui.store.artifacts.query(ArtifactQuery(run_id=run.id), limit=100),
        ui.store.logs.read(run.id, limit=50),
    )
    inputs: list[tuple[ArtifactRef, Artifact | None]] = []
    if manifest is not None and manifest.inputs and manifest.inputs.artifacts:
        for ref in manifest.inputs.artifacts[:100]:
            try:
                inputs.append((ref, await ui.store.artifacts.get(ref.artifact_id)))
            except StorageError:
                inputs.append((ref, None))
    context.update(
        manifest=manifest,
        snapshots=snapshots,
        outputs=outputs,
        inputs=inputs,
        lines=logs.items,
        logs_more=logs.next_cursor is not None,
    )
    return page(request, "runs/detail.html", context, title=f"Run {run.name}")


async def run_live(request: Request) -> Response:
    """The status, timeline and steps of a run: what its page polls."""
    _, context = await _run_context(request)
    return page(request, "runs/_live.html", context)


def _log_query(request: Request, after: int | None = None) -> LogQuery:
    level = arg(request, "level")
    if level is not None and level not in LOG_LEVELS:
        raise StorageError("invalid", f"unknown level {level!r}; one of {', '.join(LOG_LEVELS)}")
    return LogQuery.model_validate(
        {
            "min_level": level,
            "step": arg(request, "step"),
            "event": arg(request, "event"),
            "after_seq": after,
        }
    )


async def run_logs(request: Request) -> Response:
    ui = state(request)
    run = await ui.store.runs.get(request.path_params["run_id"])
    cursor = arg(request, "cursor")
    found = await ui.store.logs.read(run.id, _log_query(request), cursor=cursor, limit=LOG_PAGE)
    last = found.items[-1].seq if found.items else arg_int(request, "after", 0)
    context = {
        "run": run,
        "lines": found.items,
        "next_cursor": found.next_cursor,
        "levels": LOG_LEVELS,
        "tail": found.next_cursor is None and run.status not in TERMINAL_RUN_STATUSES,
        "after": last or 0,
    }
    return page(request, "runs/logs.html", context, title=f"Logs of {run.name}")


async def run_logs_tail(request: Request) -> Response:
    """New lines after ``after``, and the next poller while the run runs."""
    ui = state(request)
    run = await ui.store.runs.get(request.path_params["run_id"])
    after = arg_int(request, "after", 0) or 0
    found = await ui.store.logs.read(run.id, _log_query(request, after), limit=LOG_PAGE)
    last = found.items[-1].seq if found.items else after
    context = {
        "run": run,
        "lines": found.items,
        "after": last or after,
        "tail": found.next_cursor is not None or run.status not in TERMINAL_RUN_STATUSES,
    }
    return page(request, "runs/_logtail.html", context)


async def snapshot(request: Request) -> Response:
    ui = state(request)
    run = await ui.store.runs.get(request.path_params["run_id"])
    number = int(request.path_params["number"])
    snap = await ui.store.runs.get_snapshot(run.id, number)
    return page(
        request, "runs/snapshot.html", {"run": run, "snap": snap}, title=f"Snapshot {number}"
    )


async def snapshot_diff(request: Request) -> Response:
    ui = state(request)
    run = await ui.store.runs.get(request.path_params["run_id"])
    a = arg_int(request, "a", lo=1)
    b = arg_int(request, "b", lo=1)
    if a is None or b is None:
        raise StorageError("invalid", "choose two snapshots to compare (a and b)")
    old, new = await asyncio.gather(
        ui.store.runs.get_snapshot(run.id, a), ui.store.runs.get_snapshot(run.id, b)
    )
    changed = sorted(
        k for k in set(old.state) | set(new.state) if old.state.get(k) != new.state.get(k)
    )
    context = {
        "run": run,
        "old": old,
        "new": new,
        "changed": changed,
        "diff": json_diff(old.state, new.state),
    }
    return page(request, "runs/snapdiff.html", context, title=f"Snapshots {a} → {b}")


routes = [
    Route("/runs", runs_list),
    Route("/runs/_table", runs_table),
    Route("/runs/{run_id}", run_detail),
    Route("/runs/{run_id}/_live", run_live),
    Route("/runs/{run_id}/logs", run_logs),
    Route("/runs/{run_id}/logs/_tail", run_logs_tail),
    Route("/runs/{run_id}/snapshots/diff", snapshot_diff),
    Route("/runs/{run_id}/snapshots/{number:int}", snapshot),
]
