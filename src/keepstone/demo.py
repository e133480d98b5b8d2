"""``make run``: a small tour of keepstone on a real store.

Runs a two-phase pipeline with a snapshot, writes and revises an artifact,
records memory events on a branch and merges it, then checks the audit chain.
The store URL comes from ``KEEPSTONE_DEMO_STORE`` (default: SQLite in
``./.keepstone/demo.db`` when that backend is installed, else ``memory://``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

import keepstone
from keepstone.schemas import ArtifactQuery, ArtifactRef, Provenance


def _default_url() -> str:
    if importlib.util.find_spec("keepstone.backends.sql.sqlite") is None:
        return "memory://"
    Path(".keepstone").mkdir(exist_ok=True)
    return "sqlite:///.keepstone/demo.db"


async def tour(url: str) -> None:
    async with keepstone.open(url) as store:
        print(f"keepstone {keepstone.__version__} — store {url}\n")

        run = await store.runs.create("translate", params={"lang": "fr"}, labels={"demo": "yes"})
        await store.runs.transition(run.id, "running")
        for step in ("extract", "translate"):
            await store.runs.set_step(run.id, step, "running")
            await store.logs.write(run.id, "step.started", step=step, message=f"{step} began")
            await store.runs.save_snapshot(run.id, {"done": step, "glossary": {"cat": "chat"}})
            await store.runs.set_step(run.id, step, "succeeded")
        snaps = await store.runs.list_snapshots(run.id)
        print(f"run {run.id}: 2 steps, {len(snaps.items)} snapshots")

        try:
            docs = await store.artifacts.get_collection_by_name("docs")
        except keepstone.StorageError:
            docs = await store.artifacts.create_collection("docs")
        name = f"glossary-{run.id}"
        art = await store.artifacts.create(
            docs.id,
            name,
            "cat: chat\n",
            type="knowledge",
            provenance=Provenance(run_id=run.id, step="translate"),
        )
        art = await store.artifacts.update(art.id, "cat: chat\ndog: chien\n")
        await store.logs.write(
            run.id, "artifact.persisted", data={"artifact": art.id, "digest": art.digest}
        )
        await store.runs.put_manifest(run.id, outputs=[ArtifactRef(artifact_id=art.id)])
        await store.runs.transition(run.id, "succeeded")
        found = await store.artifacts.query(ArtifactQuery(text="chien"))
        print(f"artifact {art.id}: revision {art.revision}, 'chien' found in {len(found.items)}")

        agent = await store.memory.create_profile("demo-agent")
        main = await store.memory.create_path(agent.id, name="main")
        fact = await store.memory.put_node(
            agent.id, "fact", content="the user prefers French", path_id=main.id
        )
        branch = await store.memory.create_path(agent.id, name="what-if", parent_path_id=main.id)
        idea = await store.memory.put_node(
            agent.id, "idea", content="offer Spanish too", path_id=branch.id
        )
        await store.memory.put_edge(agent.id, idea.id, fact.id, "refines", path_id=branch.id)
        await store.memory.merge_path(agent.id, branch.id, main.id)
        graph = await store.memory.graph(agent.id)
        same = graph == await store.memory.replay(agent.id)
        print(f"memory {agent.id}: {len(graph.nodes)} nodes, {len(graph.edges)} edges")
        print(f"graph == replay: {same}")

        verdict = await store.audit.verify()
        print(f"audit chain: {'verified' if verdict.ok else 'BROKEN'} ({verdict.checked} records)")


def main() -> int:
    url = os.environ.get("KEEPSTONE_DEMO_STORE") or _default_url()
    try:
        asyncio.run(tour(url))
    except keepstone.StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
