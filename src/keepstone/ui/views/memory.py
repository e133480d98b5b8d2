"""Memory: profiles, a profile's graph (now, as of any seq, on any path),
its path tree, its event log, and a node with its history."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keepstone import StorageError, Store
from keepstone.schemas import EventQuery, GraphSnapshot, MemoryEvent, MemoryPath
from keepstone.schemas.memory import EVENT_KINDS
from keepstone.services.paths import PathNode
from keepstone.ui.activity import recent_activity
from keepstone.ui.graphs import GraphData, label, memory_graph
from keepstone.ui.paging import newest_events
from keepstone.ui.render import href, page, state
from keepstone.ui.views.common import arg, arg_int, page_size

MAX_GRAPH_NODES = 400
MAX_PATHS = 1000
HISTORY_SCAN = 50_000
PATH_EVENTS_SHOWN = 200


async def _all_paths(store: Store, profile_id: str) -> tuple[list[MemoryPath], bool]:
    paths: list[MemoryPath] = []
    cursor = None
    while len(paths) < MAX_PATHS:
        found = await store.memory.list_paths(profile_id, cursor=cursor, limit=500)
        paths += found.items
        cursor = found.next_cursor
        if cursor is None:
            return paths, False
    return paths[:MAX_PATHS], True


async def _seq_range(store: Store, profile_id: str) -> tuple[int, int]:
    first = await store.events.list(EventQuery(profile_id=profile_id), limit=1)
    if not first.items:
        return 0, 0
    last = await newest_events(store, EventQuery(profile_id=profile_id), before=None, n=1)
    return first.items[0].seq or 0, (last.items[0].seq or 0) if last.items else 0


async def profiles(request: Request) -> Response:
    ui = state(request)
    found = await ui.store.memory.list_profiles(
        cursor=arg(request, "cursor"), limit=page_size(request)
    )
    return page(
        request,
        "memory/profiles.html",
        {"profiles": found.items, "next_cursor": found.next_cursor},
        title="Memory",
    )


async def profile(request: Request) -> Response:
    """A profile's graph view: now, as of a seq, or on a path."""
    ui = state(request)
    pid = request.path_params["profile_id"]
    prof = await ui.store.memory.get_profile(pid)
    (paths, more_paths), (first, last), some_nodes, spark = await asyncio.gather(
        _all_paths(ui.store, pid),
        _seq_range(ui.store, pid),
        ui.store.memory.list_nodes(pid, limit=500),
        recent_activity(ui.store, pid),
    )
    as_of = arg_int(request, "as_of", lo=0)
    path_id = arg(request, "path")
    kind = arg(request, "kind")
    kinds = sorted({n.kind for n in some_nodes.items} | ({kind} if kind else set()))
    context = {
        "profile": prof,
        "paths": paths,
        "more_paths": more_paths,
        "first": first,
        "last": last,
        "as_of": as_of,
        "path_id": path_id,
        "kind": kind,
        "kinds": kinds,
        "spark": spark,
        "graph_src": href("api", "memory", pid, "graph", as_of=as_of, path=path_id, kind=kind),
    }
    return page(request, "memory/profile.html", context, title=f"Memory of {prof.name}")


async def graph_json(request: Request) -> Response:
    ui = state(request)
    pid = request.path_params["profile_id"]
    as_of = arg_int(request, "as_of", lo=0)
    path_id = arg(request, "path")
    kind = arg(request, "kind")
    snapshot: GraphSnapshot
    if path_id is not None:
        snapshot = await ui.store.memory.replay(pid, path_id=path_id, through_seq=as_of)
    elif as_of is not None:
        snapshot = await ui.store.memory.replay(pid, view="all", through_seq=as_of)
    else:  # the stored graph, read a page at a time (no fold)
        nodes, edges = await asyncio.gather(
            ui.store.memory.list_nodes(pid, kind=kind, limit=MAX_GRAPH_NODES + 1),
            ui.store.memory.list_edges(pid, limit=5 * MAX_GRAPH_NODES),
        )
        snapshot = GraphSnapshot(profile_id=pid, nodes=nodes.items, edges=edges.items, paths=[])
        data = memory_graph(pid, snapshot, kind=kind, max_nodes=MAX_GRAPH_NODES)
        if nodes.next_cursor:
            data["truncated"] = True
            data["note"] = f"showing the first {MAX_GRAPH_NODES} nodes (by id)"
        return JSONResponse(data)
    return JSONResponse(memory_graph(pid, snapshot, kind=kind, max_nodes=MAX_GRAPH_NODES))


async def path_tree(request: Request) -> Response:
    ui = state(request)
    pid = request.path_params["profile_id"]
    prof = await ui.store.memory.get_profile(pid)
    tree = await ui.store.paths.tree(pid)
    context = {"profile": prof, "tree": tree, "count": _count(tree)}
    return page(request, "memory/paths.html", context, title=f"Paths of {prof.name}")


def _count(nodes: list[PathNode]) -> int:
    return sum(1 + _count(n.children) for n in nodes)


async def paths_json(request: Request) -> Response:
    ui = state(request)
    pid = request.path_params["profile_id"]
    await ui.store.memory.get_profile(pid)
    paths, more = await _all_paths(ui.store, pid)
    graph = GraphData()
    for p in paths:
        graph.node(
            f"p:{p.id}",
            kind=p.status,
            label=label(p.name, p.id),
            sub=p.status + (" · compacted" if p.compacted_through_seq else ""),
            href=href("memory", pid, "paths", p.id),
            root=p.parent_path_id is None,
        )
    for p in paths:
        if p.parent_path_id:
            graph.edge(f"p:{p.parent_path_id}", f"p:{p.id}", f"fork @{p.fork_seq}")
        if p.merged_into:
            graph.edge(f"p:{p.id}", f"p:{p.merged_into}", "merged")
    data = graph.as_json()
    data["kinds"] = ["active", "merged", "abandoned"]
    if more:
        data["truncated"], data["note"] = True, f"showing the first {MAX_PATHS} paths"
    return JSONResponse(data)


async def path_view(request: Request) -> Response:
    """The graph and the events as seen from one path."""
    ui = state(request)
    pid = request.path_params["profile_id"]
    prof = await ui.store.memory.get_profile(pid)
    path = await ui.store.memory.get_path(pid, request.path_params["path_id"])
    events = [e async for e in ui.store.memory.iterate_events(pid, path_id=path.id, compacted=True)]
    shown = list(reversed(events[-PATH_EVENTS_SHOWN:]))
    context = {
        "profile": prof,
        "path": path,
        "events": shown,
        "total": len(events),
        "graph_src": href("api", "memory", pid, "graph", path=path.id),
    }
    return page(request, "memory/path.html", context, title=f"Path {path.name or path.id}")


async def events(request: Request) -> Response:
    ui = state(request)
    pid = request.path_params["profile_id"]
    prof = await ui.store.memory.get_profile(pid)
    kinds = [k for k in request.query_params.getlist("kind") if k]
    unknown = sorted(set(kinds) - set(EVENT_KINDS))
    if unknown:
        raise StorageError("invalid", f"unknown event kinds {unknown}; known: {list(EVENT_KINDS)}")
    query = EventQuery(profile_id=pid, path_id=arg(request, "path"), kinds=kinds or None)
    found = await newest_events(
        ui.store, query, before=arg_int(request, "before", lo=1), n=page_size(request)
    )
    context = {
        "profile": prof,
        "events": found.items,
        "next_before": found.before,
        "all_kinds": EVENT_KINDS,
        "kinds": kinds,
    }
    return page(request, "memory/events.html", context, title=f"Events of {prof.name}")


async def node(request: Request) -> Response:
    ui = state(request)
    pid = request.path_params["profile_id"]
    nid = request.path_params["node_id"]
    prof = await ui.store.memory.get_profile(pid)
    try:
        current = await ui.store.memory.get_node(pid, nid)
    except StorageError as exc:
        if exc.code != "not_found":
            raise
        current = None
    outgoing, incoming = await asyncio.gather(
        ui.store.memory.list_edges(pid, source_id=nid, limit=100),
        ui.store.memory.list_edges(pid, target_id=nid, limit=100),
    )
    history: list[MemoryEvent] = []
    scanned = 0
    query = EventQuery(profile_id=pid, kinds=["node.put", "node.forgotten"])
    async for event in ui.store.events.iterate(query, batch_size=2000):
        scanned += 1
        if getattr(event.payload, "node_id", None) == nid:
            history.append(event)
        if scanned >= HISTORY_SCAN:
            break
    if current is None and not history:
        raise StorageError("not_found", f"node {nid!r} is not in profile {prof.name!r}")
    context = {
        "profile": prof,
        "node_id": nid,
        "node": current,
        "outgoing": outgoing.items,
        "incoming": incoming.items,
        "history": list(reversed(history)),
        "scan_cut": scanned >= HISTORY_SCAN,
        "scanned": scanned,
    }
    return page(request, "memory/node.html", context, title=f"Node {nid}")


routes = [
    Route("/memory", profiles),
    Route("/memory/{profile_id}", profile),
    Route("/memory/{profile_id}/paths", path_tree),
    Route("/memory/{profile_id}/paths/{path_id}", path_view),
    Route("/memory/{profile_id}/events", events),
    Route("/memory/{profile_id}/nodes/{node_id}", node),
    Route("/api/memory/{profile_id}/graph", graph_json),
    Route("/api/memory/{profile_id}/paths", paths_json),
]
