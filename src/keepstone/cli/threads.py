"""``keepstone threads``: LangGraph threads kept by ``keepstone.langgraph``.

Reading commands (list, show, state, diff) need only keepstone; ``prune``
needs the ``langgraph`` extra.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text
from rich.tree import Tree

from keepstone.cli.app import run_with_store
from keepstone.cli.options import ApproveOption, JsonOption, approval
from keepstone.cli.output import console, fields, json_text, print_json, table, when
from keepstone.errors import StorageError
from keepstone.langgraph.inspect import CheckpointNode, ThreadInspector, diff
from keepstone.store import Store

app = typer.Typer(
    help="LangGraph threads kept by keepstone.langgraph: list them, show a thread's "
    "checkpoints as a tree (forks included), the state at a checkpoint, what changed "
    "between two, and prune them."
)

ThreadArg = Annotated[str, typer.Argument(metavar="THREAD_ID", help="The LangGraph thread id.")]
NsOption = Annotated[
    str,
    typer.Option("--ns", metavar="NAMESPACE", help="The checkpoint namespace (subgraphs)."),
]


@app.command("list")
def list_threads(
    ctx: typer.Context,
    deleted: Annotated[
        bool, typer.Option("--deleted", help="Also list deleted threads (their tombstones).")
    ] = False,
    json: JsonOption = False,
) -> None:
    """List the threads: checkpoints, pending writes, latest step, last write."""

    async def body(store: Store) -> None:
        found = await ThreadInspector(store).threads(deleted=deleted)
        if json:
            print_json(found)
            return
        rows = [
            (
                t.thread_id,
                t.status,
                t.checkpoints,
                t.pending_writes,
                t.namespaces,
                t.latest_step,
                when(t.updated_at),
                t.run_id,
            )
            for t in found
        ]
        columns = ["thread", "status", "checkpoints", "writes", "ns", "step", "updated", "run"]
        console().print(table("LangGraph threads", columns, rows))

    run_with_store(ctx, body)


def _label(node: CheckpointNode) -> Text:
    text = Text(f"step {node.step} ", style="bold")
    text.append(f"{node.source or '-'} ", style="cyan")
    text.append(node.checkpoint_id)
    if node.writes:
        text.append(f"  {node.writes} pending write set(s)", style="dim")
    if len(node.children) > 1:
        text.append(f"  fork: {len(node.children)} branches", style="yellow")
    return text


def _grow(tree: Tree, node: CheckpointNode) -> None:
    # A line of history stays flat; at a fork, each branch nests under it.
    while True:
        added = tree.add(_label(node))
        if len(node.children) == 1:
            node = node.children[0]
            continue
        for i, child in enumerate(node.children, 1):
            _grow(added.add(Text(f"branch {i}", style="yellow")), child)
        return


def _node_json(node: CheckpointNode) -> dict[str, Any]:
    return {
        "checkpoint_id": node.checkpoint_id,
        "checkpoint_ns": node.checkpoint_ns,
        "parent_id": node.parent_id,
        "step": node.step,
        "source": node.source,
        "created_at": node.created_at,
        "pending_writes": node.writes,
        "children": [_node_json(c) for c in node.children],
    }


@app.command("show")
def show(ctx: typer.Context, thread_id: ThreadArg, json: JsonOption = False) -> None:
    """Show a thread's checkpoint history as a tree: forks are branches."""

    async def body(store: Store) -> None:
        roots = await ThreadInspector(store).history(thread_id)
        if json:
            print_json({"thread_id": thread_id, "roots": [_node_json(r) for r in roots]})
            return
        out = console()
        for ns in dict.fromkeys(r.checkpoint_ns for r in roots):
            tree = Tree(Text(f"thread {thread_id}" + (f"  namespace {ns}" if ns else ""), "bold"))
            for root in (r for r in roots if r.checkpoint_ns == ns):
                _grow(tree, root)
            out.print(tree)
        if not roots:
            out.print(Text(f"thread {thread_id} has no checkpoints", style="dim"))

    run_with_store(ctx, body)


@app.command("state")
def state(
    ctx: typer.Context,
    thread_id: ThreadArg,
    checkpoint: Annotated[
        str | None,
        typer.Option("--checkpoint", metavar="ID", help="The checkpoint (default: the latest)."),
    ] = None,
    ns: NsOption = "",
    json: JsonOption = False,
) -> None:
    """Show the state at a checkpoint: channel values, metadata, pending writes."""

    async def body(store: Store) -> None:
        found = await ThreadInspector(store).state(thread_id, checkpoint, ns)
        if json:
            print_json(found)
            return
        out = console()
        out.print(
            fields(
                [
                    ("thread", found.thread_id),
                    ("checkpoint", found.checkpoint_id),
                    ("namespace", found.checkpoint_ns or None),
                    ("parent", found.parent_id),
                    ("metadata", json_text(found.metadata, clip=200)),
                ]
            )
        )
        rows = [
            (ch, found.versions.get(ch), json_text(v, clip=120))
            for ch, v in sorted(found.values.items())
        ]
        out.print(table("channels", ["channel", "version", "value"], rows))
        writes = [
            (w["task_id"], w["task_path"], w["channel"], json_text(w["value"], clip=80))
            for w in found.writes
        ]
        out.print(table("pending writes", ["task", "path", "channel", "value"], writes))

    run_with_store(ctx, body)


@app.command("diff")
def diff_cmd(
    ctx: typer.Context,
    thread_id: ThreadArg,
    first: Annotated[str, typer.Argument(metavar="FROM", help="The older checkpoint id.")],
    second: Annotated[str, typer.Argument(metavar="TO", help="The newer checkpoint id.")],
    ns: NsOption = "",
    json: JsonOption = False,
) -> None:
    """Show what changed between two checkpoints of a thread, channel by channel."""

    async def body(store: Store) -> None:
        inspector = ThreadInspector(store)
        a = await inspector.state(thread_id, first, ns)
        b = await inspector.state(thread_id, second, ns)
        changes = diff(a, b)
        if json:
            print_json(changes)
            return
        rows: list[tuple[Any, ...]] = []
        rows += [(ch, "added", "-", json_text(v, clip=80)) for ch, v in changes["added"].items()]
        rows += [
            (ch, "removed", json_text(v, clip=80), "-") for ch, v in changes["removed"].items()
        ]
        rows += [
            (ch, "changed", json_text(c["from"], clip=80), json_text(c["to"], clip=80))
            for ch, c in changes["changed"].items()
        ]
        out = console()
        out.print(table(f"{first} -> {second}", ["channel", "change", "from", "to"], rows))
        if changes["unchanged"]:
            out.print(Text("unchanged: " + ", ".join(changes["unchanged"]), style="dim"))

    run_with_store(ctx, body)


@app.command("prune")
def prune(
    ctx: typer.Context,
    thread_ids: Annotated[
        list[str], typer.Argument(metavar="THREAD_ID...", help="The threads to prune.")
    ],
    delete: Annotated[
        bool, typer.Option("--delete", help="Remove every checkpoint, not all but the latest.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
    approve: ApproveOption = None,
    json: JsonOption = False,
) -> None:
    """Keep only the latest checkpoint of each namespace (and what delta channels
    need), or --delete all of them, through the review gate (--approve)."""
    marker = approval(approve)

    async def body(store: Store) -> None:
        try:
            from keepstone.langgraph.saver import KeepstoneSaver
        except ImportError as exc:
            raise StorageError(
                "config",
                f"pruning needs LangGraph's checkpoint package ({exc}); "
                "install it with: pip install 'keepstone[langgraph]'",
            ) from exc
        saver = KeepstoneSaver(store, approval=None)
        plan = await saver.aplan_prune(thread_ids, strategy="delete" if delete else "keep_latest")
        removed = 0 if dry_run else await saver.aapply(plan, approval=marker)
        if json:
            print_json({"plan": plan, "applied": not dry_run, "snapshots_removed": removed})
            return
        out = console()
        out.print(Text(plan.describe()))
        if dry_run:
            out.print(Text("dry run: nothing was removed", style="dim"))
        else:
            out.print(Text(f"removed {removed} snapshot(s)", style="green"))

    run_with_store(ctx, body)
