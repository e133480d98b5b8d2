"""Graph data for the browser: the lineage of runs and artifacts, and a
profile's memory graph. Both come out as plain JSON (``nodes``, ``edges``)
that ``static/app.js`` hands to cytoscape; labels are drawn on a canvas as
text, and a node's link is always a path on this server."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from keepstone import StorageError, Store
from keepstone.schemas import ArtifactQuery, GraphSnapshot
from keepstone.ui.render import href

LABEL_CHARS = 48


def label(text: str | None, fallback: str) -> str:
    value = " ".join((text or "").split()) or fallback
    return value if len(value) <= LABEL_CHARS else value[: LABEL_CHARS - 1] + "…"


@dataclass
class GraphData:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    truncated: bool = False
    note: str = ""

    def node(self, key: str, **data: Any) -> None:
        if key not in self.nodes:
            self.nodes[key] = {"id": key, **data}

    def edge(self, source: str, target: str, kind: str) -> None:
        self.edges.setdefault(
            (source, target, kind),
            {"id": f"edge#{len(self.edges)}", "source": source, "target": target, "label": kind},
        )

    def as_json(self) -> dict[str, Any]:
        keep = set(self.nodes)
        edges = [e for e in self.edges.values() if e["source"] in keep and e["target"] in keep]
        return {
            "nodes": list(self.nodes.values()),
            "edges": edges,
            "truncated": self.truncated,
            "note": self.note,
        }


async def lineage(
    store: Store, kind: str, ident: str, *, depth: int = 2, max_nodes: int = 120
) -> dict[str, Any]:
    """Runs and artifacts around ``kind`` (``run``/``artifact``) ``ident``:
    what produced each artifact (revision provenance), what each run
    produced and consumed (outputs, manifest inputs), and relationships
    between artifacts, up to ``depth`` hops; at most ``max_nodes`` nodes.

    Raises:
        StorageError: ``not_found`` for an unknown root.
    """
    graph = GraphData()
    root = f"{kind}:{ident}"
    if kind == "run":
        await _add_run(store, graph, ident, focus=True)
    else:
        await _add_artifact(store, graph, ident, focus=True)
    queue: deque[tuple[str, int]] = deque([(root, 0)])
    expanded: set[str] = set()
    per_node = 30
    while queue:
        key, hops = queue.popleft()
        if key in expanded or hops >= depth:
            continue
        expanded.add(key)
        node_kind, _, node_id = key.partition(":")
        found = await (
            _run_neighbours(store, graph, node_id, per_node)
            if node_kind == "run"
            else _artifact_neighbours(store, graph, node_id, per_node)
        )
        for neighbour in found:
            if len(graph.nodes) >= max_nodes:
                graph.truncated = True
                break
            queue.append((neighbour, hops + 1))
    if graph.truncated:
        graph.note = f"showing the first {len(graph.nodes)} nodes"
    return graph.as_json()


async def _add_run(store: Store, graph: GraphData, run_id: str, *, focus: bool = False) -> str:
    key = f"run:{run_id}"
    if key in graph.nodes:
        return key
    try:
        run = await store.runs.get(run_id)
    except StorageError as exc:
        if focus:
            raise
        graph.node(key, kind="run", label=run_id, sub=exc.code, href=href("runs", run_id))
        return key
    graph.node(
        key,
        kind="run",
        label=label(run.name, run.id),
        sub=run.status,
        href=href("runs", run.id),
        focus=focus,
    )
    return key


async def _add_artifact(
    store: Store, graph: GraphData, artifact_id: str, *, focus: bool = False
) -> str:
    key = f"artifact:{artifact_id}"
    if key in graph.nodes:
        return key
    try:
        art = await store.artifacts.get(artifact_id)
    except StorageError:
        if focus:
            raise
        graph.node(key, kind="artifact", label=artifact_id, href=href("artifacts", artifact_id))
        return key
    graph.node(
        key,
        kind="artifact",
        label=label(art.name.rsplit("/", 1)[-1], art.id),
        sub=art.type + (" (deleted)" if art.deleted_at else ""),
        href=href("artifacts", art.id),
        focus=focus,
    )
    return key


async def _run_neighbours(store: Store, graph: GraphData, run_id: str, limit: int) -> list[str]:
    key = f"run:{run_id}"
    outputs, manifest = await asyncio.gather(
        store.artifacts.query(ArtifactQuery(run_id=run_id, include_deleted=True), limit=limit),
        store.runs.get_manifest(run_id),
    )
    found = []
    for art in outputs.items:
        graph.node(
            f"artifact:{art.id}",
            kind="artifact",
            label=label(art.name.rsplit("/", 1)[-1], art.id),
            sub=art.type,
            href=href("artifacts", art.id),
        )
        graph.edge(key, f"artifact:{art.id}", "produced")
        found.append(f"artifact:{art.id}")
    if outputs.next_cursor:
        graph.truncated = True
    refs = (manifest.inputs.artifacts or []) if manifest and manifest.inputs else []
    for ref in refs[:limit]:
        node = await _add_artifact(store, graph, ref.artifact_id)
        graph.edge(node, key, "input")
        found.append(node)
    return found


async def _artifact_neighbours(
    store: Store, graph: GraphData, artifact_id: str, limit: int
) -> list[str]:
    key = f"artifact:{artifact_id}"
    art = await store.artifacts.get(artifact_id)
    revisions, relations = await asyncio.gather(
        store.artifacts.revisions(artifact_id, limit=100),
        store.artifacts.relationships(artifact_id, limit=limit),
    )
    found = []
    producers = {art.run_id} if art.run_id else set()
    producers |= {
        r.provenance.run_id for r in revisions.items if r.provenance and r.provenance.run_id
    }
    for run_id in sorted(producers)[:limit]:
        node = await _add_run(store, graph, run_id)
        graph.edge(node, key, "produced")
        found.append(node)
    for rel in relations.items:
        other = rel.target_id if rel.source_id == artifact_id else rel.source_id
        node = await _add_artifact(store, graph, other)
        graph.edge(f"artifact:{rel.source_id}", f"artifact:{rel.target_id}", rel.kind)
        found.append(node)
    if relations.next_cursor:
        graph.truncated = True
    return found


def memory_graph(
    profile_id: str, snapshot: GraphSnapshot, *, kind: str | None = None, max_nodes: int = 400
) -> dict[str, Any]:
    """A profile's graph (or a view of it) for the browser, ``kind``
    filtering the nodes; at most ``max_nodes`` nodes (by id)."""
    nodes = [n for n in snapshot.nodes if kind is None or n.kind == kind]
    graph = GraphData()
    for node in nodes[:max_nodes]:
        graph.node(
            f"n:{node.id}",
            kind=node.kind,
            label=label(node.content, node.id),
            href=href("memory", profile_id, "nodes", node.id),
        )
    for edge in snapshot.edges:
        graph.edge(f"n:{edge.source_id}", f"n:{edge.target_id}", edge.kind)
    if len(nodes) > max_nodes:
        graph.truncated = True
        graph.note = f"showing {max_nodes} of {len(nodes)} nodes"
    data = graph.as_json()
    data["kinds"] = sorted({n.kind for n in snapshot.nodes})
    data["through_seq"] = snapshot.through_seq
    return data
