"""LangGraph threads: the thread list, a thread's checkpoint history as a
tree with forks, the state at a checkpoint, and a diff between two.

Everything is read through :class:`keepstone.langgraph.inspect.ThreadInspector`,
what ``keepstone threads list/show/state/diff`` use (no LangGraph needed).
One inspector serves every request: it keeps recently read thread indexes
and values by digest, so a thread read once costs one short read after.

These pages are routed (and linked from the navigation) only when
``keepstone.langgraph`` can be imported (see ``app.langgraph_available``).
A thread id is any text: it is the last part of the path (quoted), so ids
holding ``/`` work too; the rest is in the query string.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from keepstone import StorageError
from keepstone.langgraph.inspect import CheckpointNode, CheckpointState, ThreadInspector, diff
from keepstone.langgraph.layout import RUN_NAME
from keepstone.schemas import RunQuery
from keepstone.ui.checkpoint_tree import ROW_HEIGHT, Layout, Row, layout, width
from keepstone.ui.diffs import json_diff
from keepstone.ui.paging import newest_runs
from keepstone.ui.render import page, query_with, state
from keepstone.ui.views.common import arg, arg_int, now, page_size

VALUE_CHARS = 1500
"""A value longer than this (as indented JSON) is cut, with a link to it whole."""
TREE_PAGE = 100


def inspector(request: Request) -> ThreadInspector:
    """The app's thread reader (made on first use, kept with its caches)."""
    ui = state(request)
    found = ui.kept.get("threads")
    if not isinstance(found, ThreadInspector):
        found = ui.kept["threads"] = ThreadInspector(ui.store)
    return found


@dataclass(frozen=True)
class Shown:
    """A value as the page shows it: indented JSON, cut when long."""

    text: str
    total: int

    @property
    def cut(self) -> bool:
        return len(self.text) < self.total


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def shown(value: Any, limit: int = VALUE_CHARS) -> Shown:
    text = pretty(value)
    return Shown(text if len(text) <= limit else text[:limit], len(text))


_VERSION = re.compile(r"0*(\d+)\.")


def version_label(version: Any) -> str:
    """A channel version as a person reads it: LangGraph's padded
    ``000...0002.0.123`` is version ``2``; anything else as it is."""
    if version is None:
        return "—"
    found = _VERSION.match(version) if isinstance(version, str) else None
    return found.group(1) if found else str(version)


# --------------------------------------------------------------------------- list


async def threads(request: Request) -> Response:
    ui = state(request)
    with_deleted = arg(request, "deleted") is not None
    query = RunQuery(name=RUN_NAME, status=None if with_deleted else "running")
    found = await newest_runs(
        ui.store, query, before=arg(request, "before"), n=page_size(request), now=now()
    )
    reader = inspector(request)
    summaries = await asyncio.gather(*(reader.summary(run) for run in found.items))
    context = {
        "threads": summaries,
        "next_before": found.before,
        "with_deleted": with_deleted,
    }
    return page(request, "langgraph/threads.html", context, title="LangGraph threads")


# --------------------------------------------------------------------------- a thread


def _namespaces(roots: list[CheckpointNode]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for root in roots:
        stack = [root]
        while stack:
            node = stack.pop()
            counts[node.checkpoint_ns] = counts.get(node.checkpoint_ns, 0) + 1
            stack.extend(node.children)
    return dict(sorted(counts.items()))


def _state_context(found: CheckpointState) -> dict[str, Any]:
    return {
        "state": found,
        "values": [
            (
                channel,
                found.versions.get(channel),
                version_label(found.versions.get(channel)),
                shown(value),
            )
            for channel, value in sorted(found.values.items())
        ],
        "writes": [(i, w, shown(w["value"])) for i, w in enumerate(found.writes)],
        "metadata": shown(found.metadata),
    }


def _first_row(request: Request, tree: Layout, n: int) -> int:
    """Where the page starts: after ``before`` (a checkpoint id, for
    "Older"), or on the page holding the chosen checkpoint, or at the top."""
    before = arg(request, "before")
    if before is not None:
        return next(
            (i for i, r in enumerate(tree.rows) if r.checkpoint_id < before), len(tree.rows)
        )
    selected = arg(request, "checkpoint")
    if selected is not None and selected in tree.row_of:
        return tree.row_of[selected] // n * n
    return 0


def _compared(rows: list[Row], current: str | None) -> tuple[str | None, str | None]:
    """The pair the compare form starts with: the checkpoint shown (else the
    newest on the page) and its parent (else its neighbour on the page)."""
    b = next((r for r in rows if r.checkpoint_id == current), rows[0] if rows else None)
    if b is None:
        return None, None
    on_page = [r.checkpoint_id for r in rows]
    if b.node.parent_id in on_page:
        return b.node.parent_id, b.checkpoint_id
    others = [c for c in on_page if c != b.checkpoint_id]
    return (others[0] if others else None), b.checkpoint_id


async def thread(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    reader = inspector(request)
    summary = await reader.thread(thread_id)
    roots = await reader.history(thread_id)
    namespaces = _namespaces(roots)
    ns = arg(request, "ns") or ""
    if ns == "" and namespaces and ns not in namespaces:  # only subgraphs checkpointed
        ns = next(iter(namespaces))
    tree = layout([r for r in roots if r.checkpoint_ns == ns])
    n = page_size(request, TREE_PAGE)
    start = _first_row(request, tree, n)
    rows = tree.draw(start, start + n)
    found = None
    if tree.rows:
        found = await reader.state(thread_id, arg(request, "checkpoint"), ns)
    current = found.checkpoint_id if found is not None else None
    a_id, b_id = _compared(rows, current)
    newer = max(0, start - n)
    link = query_with(request, checkpoint=None)
    context: dict[str, Any] = {
        "summary": summary,
        "thread_id": thread_id,
        "namespaces": namespaces,
        "ns": ns,
        "tree": tree,
        "rows": rows,
        "row_height": ROW_HEIGHT,
        "lanes_width": width(max((r.lane for r in rows), default=0) + 1),
        "link_base": link + ("&" if "?" in link else "?") + "checkpoint=",
        "first_row": start + 1,
        "older": rows[-1].checkpoint_id if start + n < len(tree.rows) else None,
        "newer": None if start == 0 else (tree.rows[newer - 1].checkpoint_id if newer else ""),
        "current": current,
        "a_id": a_id,
        "b_id": b_id,
    }
    if found is not None:
        context.update(_state_context(found))
    return page(request, "langgraph/thread.html", context, title=f"Thread {thread_id}")


# --------------------------------------------------------------------------- diff, value


async def checkpoint_diff(request: Request) -> Response:
    thread_id = request.path_params["thread_id"]
    ns = arg(request, "ns") or ""
    a, b = arg(request, "a"), arg(request, "b")
    if a is None or b is None:
        raise StorageError("invalid", "choose two checkpoints to compare (a and b)")
    reader = inspector(request)
    old = await reader.state(thread_id, a, ns)
    new = await reader.state(thread_id, b, ns)
    changes = diff(old, new)
    context = {
        "thread_id": thread_id,
        "ns": ns,
        "old": old,
        "new": new,
        "added": [(ch, shown(v)) for ch, v in changes["added"].items()],
        "removed": [(ch, shown(v)) for ch, v in changes["removed"].items()],
        "changed": [(ch, json_diff(c["from"], c["to"])) for ch, c in changes["changed"].items()],
        "unchanged": changes["unchanged"],
        "metadata": json_diff(old.metadata, new.metadata),
    }
    return page(request, "langgraph/diff.html", context, title=f"Thread {thread_id}: diff")


async def value(request: Request) -> Response:
    """One value at a checkpoint, whole: a channel, a pending write, or the metadata."""
    thread_id = request.path_params["thread_id"]
    ns = arg(request, "ns") or ""
    checkpoint = arg(request, "checkpoint")
    if checkpoint is None:
        raise StorageError("invalid", "name the checkpoint (checkpoint=...)")
    found = await inspector(request).state(thread_id, checkpoint, ns)
    channel = arg(request, "channel")
    write = arg_int(request, "write", lo=0)
    what: str
    if channel is not None:
        if channel not in found.values:
            raise StorageError("not_found", f"checkpoint {checkpoint!r} has no channel {channel!r}")
        what, data = f"channel {channel}", found.values[channel]
    elif write is not None:
        if write >= len(found.writes):
            raise StorageError(
                "not_found", f"checkpoint {checkpoint!r} has {len(found.writes)} pending writes"
            )
        entry = found.writes[write]
        what, data = f"pending write to {entry['channel']}", entry["value"]
    else:
        what, data = "metadata", found.metadata
    context = {"thread_id": thread_id, "ns": ns, "state": found, "what": what, "text": pretty(data)}
    return page(request, "langgraph/value.html", context, title=f"Thread {thread_id}: {what}")


routes: list[BaseRoute] = [
    Route("/langgraph", threads),
    Route("/langgraph/threads/{thread_id:path}", thread),
    Route("/langgraph/diff/{thread_id:path}", checkpoint_diff),
    Route("/langgraph/value/{thread_id:path}", value),
]
