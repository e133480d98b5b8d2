"""``make run``: a tour of keepstone on a real store, then where to look.

1. A four-phase pipeline (fetch, clean, summarize, publish) runs in a child
   process, which is killed with SIGKILL in the middle of ``summarize``; the
   run is then resumed with the same id: the finished phases are skipped,
   ``summarize`` runs again from the last checkpoint.
2. A knowledge artifact is written, revised, related to the pipeline's output
   and found by full-text search.
3. An agent's memory gets facts on a main path, a what-if branch that is
   merged back, and a dead end that is abandoned through the review gate.
4. The audit chain is verified, the store exported to a snapshot, and the
   doctor run; then the ``keepstone`` commands to look at all of it, the
   last one ``keepstone ui``, the web inspector.

The store is ``sqlite:///.keepstone/demo.db`` (a previous demo store there is
removed first), or ``$KEEPSTONE_DEMO_STORE``. A store that cannot outlive a
process (``memory://``) skips the kill and runs the pipeline straight through.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keepstone
from keepstone.schemas import ArtifactQuery, ProfilePolicy, Provenance
from keepstone.services.runs import PipelineRun
from keepstone.urls import redact

DEFAULT_URL = "sqlite:///.keepstone/demo.db"
SNAPSHOT = Path(".keepstone") / "demo-snapshot.tar"
PHASES = ("fetch", "clean", "summarize", "publish")
CRASH_IN = "summarize"
CRASH_MARKER = "CRASH-POINT"
APPROVAL = keepstone.ApprovalMarker(approved_by="demo", reason="the user asked for it")

ARTICLES: list[dict[str, Any]] = [
    {"id": 1, "title": "Cats  prefer  warm laps ", "text": "A cat is a chat in French."},
    {"id": 2, "title": "Dogs fetch", "text": "A dog is a chien in French."},
    {"id": 3, "title": "Birds sing at dawn", "text": "A bird is an oiseau in French."},
]


# --------------------------------------------------------------------------- the pipeline


async def pipeline(store: keepstone.Store, run_id: str, crash_in: str | None = None) -> list[str]:
    """Run (or resume) the digest pipeline; returns the phases it executed.

    With ``crash_in``, announce :data:`CRASH_MARKER` inside that phase and wait
    to be killed (the parent process sends SIGKILL).
    """
    executed: list[str] = []
    async with store.runs.start("nightly-digest", params={"source": "demo"}, id=run_id) as run:
        logger = logging.getLogger("keepstone.demo.pipeline")
        logger.addHandler(run.logging_handler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
        state: dict[str, Any] = dict(run.state or {})
        for phase in PHASES:
            if not run.should_run(phase):
                await run.log("phase.skipped", f"{phase} finished before the crash")
                continue
            executed.append(phase)
            async with run.step(phase):
                logger.info("%s started (attempt %d)", phase, _attempt(run, phase))
                state = await _PHASES[phase](run, state)
                if phase == crash_in:
                    print(CRASH_MARKER, flush=True)
                    await asyncio.sleep(120)  # killed here, mid-step
                await run.checkpoint(state)
        logger.handlers.clear()
    return executed


def _attempt(run: PipelineRun, phase: str) -> int:
    step = run.run.step(phase)
    return 0 if step is None else step.attempts


async def _fetch(run: PipelineRun, state: dict[str, Any]) -> dict[str, Any]:
    await run.save_output("articles", records=ARTICLES)
    return {**state, "fetched": len(ARTICLES)}


async def _clean(run: PipelineRun, state: dict[str, Any]) -> dict[str, Any]:
    clean = [{**a, "title": " ".join(a["title"].split())} for a in ARTICLES]
    await run.save_output("clean", records=clean)
    return {**state, "clean": len(clean)}


async def _summarize(run: PipelineRun, state: dict[str, Any]) -> dict[str, Any]:
    summary = "\n".join(f"- {a['title']}: {a['text']}" for a in ARTICLES) + "\n"
    await run.save_output("summary", summary, type="qa_report")
    return {**state, "summary": summary}


async def _publish(run: PipelineRun, state: dict[str, Any]) -> dict[str, Any]:
    body = "# Nightly digest\n\n" + str(state.get("summary", ""))
    await run.save_output("digest.md", body, type="export", media_type="text/markdown")
    return {**state, "published": True}


_PHASES = {"fetch": _fetch, "clean": _clean, "summarize": _summarize, "publish": _publish}


def crash_and_resume_in_a_child(url: str, run_id: str) -> None:
    """Start the pipeline in a child process and SIGKILL it mid-``summarize``."""
    child = subprocess.Popen(
        [sys.executable, "-m", "keepstone.demo", "--pipeline", url, run_id, "--crash-in", CRASH_IN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    for line in child.stdout:
        if line.strip() == CRASH_MARKER or time.monotonic() > deadline:
            break
    child.kill()  # SIGKILL: no cleanup, no finally, no flush
    child.wait(timeout=30)
    if child.returncode == 0:
        raise SystemExit("the pipeline child finished instead of waiting to be killed")


# --------------------------------------------------------------------------- the tour


def say(text: str = "") -> None:
    print(text, flush=True)


async def tour(url: str) -> dict[str, str]:
    shown = redact(url)
    say(f"keepstone {keepstone.__version__}: demo store {shown}\n")
    run_id = f"run_demo_{time.strftime('%Y%m%d%H%M%S')}"
    async with keepstone.open(url) as store:
        durable = "durable" in store.capabilities

    say("1. A pipeline that crashes and resumes")
    if durable:
        crash_and_resume_in_a_child(url, run_id)
    async with keepstone.open(url) as store:
        if durable:
            run = await store.runs.get(run_id)
            steps = ", ".join(f"{s.name}={s.status}" for s in run.steps)
            say(f"   killed the pipeline (SIGKILL) mid-{CRASH_IN}: run {run.status}; {steps}")
            point = await store.runs.resume_point(run_id)
            say(
                f"   resume point: snapshot #{point.snapshot.number if point.snapshot else '-'}, "
                f"completed {', '.join(point.completed_steps)}"
            )
        else:
            say(f"   ({shown} cannot outlive a process: no crash, one straight run)")
        executed = await pipeline(store, run_id)
        run = await store.runs.get(run_id)
        attempts = run.step(CRASH_IN)
        say(
            f"   resumed {run_id}: ran {', '.join(executed)}; status {run.status}; "
            f"{CRASH_IN} attempts: {attempts.attempts if attempts else 0}"
        )

        say("\n2. A knowledge artifact, revised, related and searched")
        knowledge = await _collection(store, "knowledge")
        made_by = Provenance(run_id=run_id, step="publish", producer="demo")
        try:
            glossary = await store.artifacts.get_by_name(knowledge.id, "glossary")
        except keepstone.StorageError:
            glossary = await store.artifacts.create(
                knowledge.id, "glossary", "cat: chat\n", type="knowledge", provenance=made_by
            )
        glossary = await store.artifacts.update(
            glossary.id, f"cat: chat\ndog: chien\n# revised by {run_id}\n", provenance=made_by
        )
        digest = (await store.artifacts.query(ArtifactQuery(run_id=run_id, type="export"))).items
        if digest:
            await store.artifacts.relate(glossary.id, digest[0].id, "explains")
        hits = await store.artifacts.query(ArtifactQuery(text="chien"))
        say(
            f"   knowledge/glossary ({glossary.id}): revision {glossary.revision}; "
            f"'chien' found in {len(hits.items)} artifact(s)"
        )

        say("\n3. Agent memory: a branch merged back, a dead end abandoned")
        agent = await store.memory.create_profile(
            "demo-agent", policy=ProfilePolicy(review_required=["abandon_path", "forget_node"])
        )
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
        dead = await store.memory.create_path(agent.id, name="dead-end", parent_path_id=main.id)
        await store.memory.put_node(agent.id, "idea", content="answer in Klingon", path_id=dead.id)
        try:
            await store.memory.abandon_path(agent.id, dead.id, "not useful")
        except keepstone.StorageError as exc:
            say(f"   abandoning without approval: refused ({exc.code}), and audited")
        await store.memory.abandon_path(agent.id, dead.id, "not useful", approval=APPROVAL)
        graph = await store.memory.graph(agent.id)  # the main line: no dead end
        everything = await store.memory.graph(agent.id, view="all")
        same = graph == await store.memory.replay(agent.id)
        say(
            f"   memory {agent.id}, main line: {len(graph.nodes)} nodes, "
            f"{len(graph.edges)} edges ({len(everything.nodes)} nodes on all paths)"
        )
        say(f"   graph == replay: {same}")

        say("\n4. Audit, snapshot, doctor")
        verdict = await store.audit.verify()
        say(f"   audit chain: {'verified' if verdict.ok else 'BROKEN'} ({verdict.checked} records)")
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.unlink(missing_ok=True)
        manifest = await store.snapshots.export_to(SNAPSHOT)
        say(
            f"   snapshot: {SNAPSHOT} ({sum(manifest.counts.values())} records, "
            f"{manifest.blobs} blobs)"
        )
        report = await store.diagnose()
        problems = [d for d in report.diagnostics if d.severity != "info"]
        say(f"   doctor: {'healthy' if report.ok else 'DAMAGED'}, {len(problems)} finding(s)")
        return {"run": run_id, "profile": agent.id}


async def _collection(store: keepstone.Store, name: str) -> Any:
    try:
        return await store.artifacts.get_collection_by_name(name)
    except keepstone.StorageError:
        return await store.artifacts.create_collection(name)


def command_prefix() -> str:
    """How to call ``keepstone`` from here: on PATH, or the venv's script."""
    beside = Path(sys.executable).parent / "keepstone"
    on_path = shutil.which("keepstone")
    if on_path and beside.exists() and Path(on_path).resolve() == beside.resolve():
        return "keepstone"
    if beside.exists():
        try:
            return str(beside.absolute().relative_to(Path.cwd()))
        except ValueError:
            return str(beside)
    return f"{shlex.quote(sys.executable)} -m keepstone.cli"


def next_steps(url: str, made: dict[str, str]) -> list[str]:
    """The ``keepstone`` commands that show what the tour made."""
    base = f"{command_prefix()} --store {shlex.quote(redact(url))}"
    glossary = "knowledge/glossary"
    return [
        f"{base} runs list",
        f"{base} runs show {made['run']}",
        f"{base} runs logs {made['run']}",
        f"{base} artifacts list",
        f"{base} artifacts history {glossary}",
        f"{base} artifacts search chien",
        f"{base} artifacts related {glossary}",
        f"{base} memory paths {made['profile']}",
        f"{base} memory replay {made['profile']}",
        f"{base} audit list --limit 20",
        f"{base} audit verify",
        f"{base} doctor",
        f"{base} gc",
        f"{base} ui",
    ]


def _fresh(url: str) -> None:
    """Remove a previous demo store (only the default one)."""
    if url != DEFAULT_URL:
        return
    folder = Path(".keepstone")
    folder.mkdir(exist_ok=True)
    for old in folder.glob("demo.db*"):
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keepstone.demo", description=__doc__)
    parser.add_argument("--pipeline", nargs=2, metavar=("URL", "RUN_ID"), help=argparse.SUPPRESS)
    parser.add_argument("--crash-in", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pipeline:  # the child process of step 1
        url, run_id = args.pipeline

        async def child() -> None:
            async with keepstone.open(url) as store:
                await pipeline(store, run_id, crash_in=args.crash_in)

        asyncio.run(child())
        return 0

    url = os.environ.get("KEEPSTONE_DEMO_STORE") or DEFAULT_URL
    started = time.monotonic()
    try:
        _fresh(url)
        made = asyncio.run(tour(url))
    except keepstone.StorageError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 1
    say(f"\ndone in {time.monotonic() - started:.1f}s.")
    if url.startswith("memory:"):
        say("The memory:// store is gone now; unset KEEPSTONE_DEMO_STORE to keep one to look at.")
        return 0
    say("Look at what it made (run these from this directory):\n")
    for command in next_steps(url, made):
        say(f"  {command}")
    if command_prefix() != "keepstone":
        say("\n(`source .venv/bin/activate` puts `keepstone` itself on your PATH.)")
    say("\nEvery command takes --json for scripts; `keepstone --help` lists them all.")
    say("The last one serves a read-only web inspector of the store (Ctrl-C stops it).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
