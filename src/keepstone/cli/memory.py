"""``keepstone memory``: profiles, nodes, edges, paths, events, replay.

A PROFILE argument is a profile id, or a profile's name when exactly one
profile has it; a ``--path`` is a path id, or the name of one of the
profile's paths (``--path main``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.text import Text
from rich.tree import Tree

from keepstone.cli.app import run_with_store
from keepstone.cli.listing import Listing, every, read, read_by_seq, show_more
from keepstone.cli.options import CursorOption, JsonOption, LimitOption, OldestFirstOption
from keepstone.cli.output import (
    console,
    inert,
    json_text,
    plain,
    print_json,
    spinner,
    status_text,
    table,
    when,
)
from keepstone.errors import StorageError
from keepstone.schemas import (
    EventQuery,
    GraphSnapshot,
    MemoryEdge,
    MemoryEvent,
    MemoryNode,
    MemoryPath,
    Profile,
)
from keepstone.services.paths import PathNode
from keepstone.store import Store

T = TypeVar("T")

app = typer.Typer(help="Agent memory: profiles, graphs, the event log and conversation paths.")

ProfileArg = Annotated[
    str, typer.Argument(metavar="PROFILE", help="A profile id, or a profile's unique name.")
]
PathOption = Annotated[
    str | None,
    typer.Option(
        "--path",
        metavar="PATH",
        help="As seen from this conversation path: its id, or its name in the profile.",
    ),
]


async def resolve_profile(store: Store, ref: str) -> Profile:
    """The profile with id ``ref``, else the one profile named ``ref``.

    Raises:
        StorageError: ``not_found``; ``conflict`` when several share the name.
    """
    try:
        return await store.memory.get_profile(ref)
    except StorageError as exc:
        if exc.code not in ("not_found", "invalid"):
            raise
    named = [
        p
        async for p in every(lambda c, n: store.memory.list_profiles(cursor=c, limit=n))
        if p.name == ref
    ]
    if not named:
        raise StorageError("not_found", f"no profile has the id or name {ref!r}", {"profile": ref})
    if len(named) > 1:
        raise StorageError(
            "conflict",
            f"{len(named)} profiles are named {ref!r}; use an id: "
            + ", ".join(p.id for p in named),
            {"profile": ref, "ids": [p.id for p in named]},
        )
    return named[0]


async def resolve_path(store: Store, profile: Profile, ref: str) -> MemoryPath:
    """The path of ``profile`` with id ``ref``, else the one named ``ref``.

    Raises:
        StorageError: ``not_found``; ``conflict`` when several share the name.
    """
    try:
        return await store.memory.get_path(profile.id, ref)
    except StorageError as exc:
        if exc.code not in ("not_found", "invalid"):
            raise
    named = [
        p
        async for p in every(lambda c, n: store.memory.list_paths(profile.id, cursor=c, limit=n))
        if p.name == ref
    ]
    if not named:
        raise StorageError(
            "not_found",
            f"profile {profile.name!r} ({profile.id}) has no path with the id or name {ref!r}",
            {"profile": profile.id, "path": ref},
        )
    if len(named) > 1:
        raise StorageError(
            "conflict",
            f"{len(named)} paths of {profile.name!r} are named {ref!r}; use an id: "
            + ", ".join(p.id for p in named),
            {"profile": profile.id, "path": ref, "ids": [p.id for p in named]},
        )
    return named[0]


@app.command("profiles")
def profiles(
    ctx: typer.Context,
    limit: LimitOption = 100,
    oldest_first: OldestFirstOption = False,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List memory profiles, newest first."""

    async def body(store: Store) -> None:
        found = await read(
            lambda c, n: store.memory.list_profiles(cursor=c, limit=n),
            limit=limit,
            cursor=cursor,
            oldest_first=oldest_first,
        )
        if json:
            print_json(found.items)
        else:
            rows = [
                (p.id, p.name, when(p.created_at), when(p.updated_at), json_text(p.attributes))
                for p in found.items
            ]
            console().print(table(None, ["id", "name", "created", "updated", "attributes"], rows))
        show_more(found)

    run_with_store(ctx, body)


def _node_rows(nodes: list[MemoryNode]) -> list[tuple[Any, ...]]:
    return [(n.id, n.kind, n.content, json_text(n.attributes), when(n.updated_at)) for n in nodes]


def _edge_rows(edges: list[MemoryEdge]) -> list[tuple[Any, ...]]:
    return [(e.id, e.source_id, e.kind, e.target_id, json_text(e.attributes)) for e in edges]


_NODE_COLUMNS = ["id", "kind", "content", "attributes", "updated"]
_EDGE_COLUMNS = ["id", "source", "kind", "target", "attributes"]


@app.command("nodes")
def nodes(
    ctx: typer.Context,
    profile: ProfileArg,
    kind: Annotated[str | None, typer.Option("--kind", help="Only nodes of this kind.")] = None,
    search: Annotated[
        str | None, typer.Option("--search", metavar="TEXT", help="Only nodes holding these words.")
    ] = None,
    path: PathOption = None,
    limit: LimitOption = 100,
    oldest_first: OldestFirstOption = False,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List a profile's memory nodes, newest first: every path's, or those one --path sees."""

    async def body(store: Store) -> None:
        prof = await resolve_profile(store, profile)
        found: Listing[MemoryNode]
        title = None
        if path is not None:
            at = await resolve_path(store, prof, path)
            graph = await store.memory.graph(prof.id, path_id=at.id)
            items = [n for n in graph.nodes if kind is None or n.kind == kind]
            found = _in_memory(items, limit, oldest_first, key=lambda n: (n.created_at, n.id))
            title = f"nodes at path {at.name or at.id}"
        elif search is not None:
            found = await read(
                lambda c, n: store.memory.search_nodes(prof.id, search, cursor=c, limit=n),
                limit=limit,
                cursor=cursor,
                oldest_first=oldest_first,
            )
        else:
            found = await read(
                lambda c, n: store.memory.list_nodes(prof.id, kind=kind, cursor=c, limit=n),
                limit=limit,
                cursor=cursor,
                oldest_first=oldest_first,
            )
        if json:
            print_json(found.items)
        else:
            console().print(table(title, _NODE_COLUMNS, _node_rows(found.items)))
        show_more(found)

    run_with_store(ctx, body)


@app.command("edges")
def edges(
    ctx: typer.Context,
    profile: ProfileArg,
    kind: Annotated[str | None, typer.Option("--kind", help="Only edges of this kind.")] = None,
    node: Annotated[
        str | None, typer.Option("--node", metavar="NODE_ID", help="Only edges from this node.")
    ] = None,
    limit: LimitOption = 100,
    oldest_first: OldestFirstOption = False,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List a profile's memory edges, newest first."""

    async def body(store: Store) -> None:
        prof = await resolve_profile(store, profile)
        found = await read(
            lambda c, n: store.memory.list_edges(
                prof.id, source_id=node, kind=kind, cursor=c, limit=n
            ),
            limit=limit,
            cursor=cursor,
            oldest_first=oldest_first,
        )
        if json:
            print_json(found.items)
        else:
            console().print(table(None, _EDGE_COLUMNS, _edge_rows(found.items)))
        show_more(found)

    run_with_store(ctx, body)


def _path_label(path: MemoryPath, names: dict[str, str]) -> Text:
    label = Text()
    label.append_text(plain(path.name or "(unnamed)", style="bold"))
    label.append(f" {inert(path.id)} ", style="dim")
    label.append_text(status_text(path.status))
    if path.fork_seq is not None:
        label.append(f"  forked at seq {path.fork_seq}")
    if path.merged_into is not None:
        at = "" if path.merged_at_seq is None else f" at seq {path.merged_at_seq}"
        into = names.get(path.merged_into, path.merged_into)
        label.append(f"  merged into {inert(into)}{at}", style="blue")
    if path.abandoned_reason is not None:
        label.append(f"  abandoned: {inert(path.abandoned_reason)}", style="magenta")
    if path.compacted_through_seq is not None:
        label.append(f"  compacted through seq {path.compacted_through_seq}", style="dim")
    return label


def _tree_json(node: PathNode) -> dict[str, Any]:
    data = node.path.model_dump(mode="json")
    data["children"] = [_tree_json(child) for child in node.children]
    return data


def _grow(tree: Tree, node: PathNode, names: dict[str, str]) -> None:
    branch = tree.add(_path_label(node.path, names))
    for child in node.children:
        _grow(branch, child, names)


def _names(nodes: list[PathNode]) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in nodes:
        names[node.path.id] = node.path.name or node.path.id
        names.update(_names(node.children))
    return names


@app.command("paths")
def paths(ctx: typer.Context, profile: ProfileArg, json: JsonOption = False) -> None:
    """Show the tree of a profile's conversation paths: branches, merges, abandons.

    --json prints the root paths as an array, each path with its "children".
    """

    async def body(store: Store) -> None:
        prof = await resolve_profile(store, profile)
        roots = await store.paths.tree(prof.id)
        if json:
            print_json([_tree_json(r) for r in roots])
            return
        tree = Tree(plain(f"{prof.name} ({prof.id})", style="bold"))
        names = _names(roots)
        for root in roots:
            _grow(tree, root, names)
        if not roots:
            tree.add(Text("no paths", style="dim"))
        console().print(tree)

    run_with_store(ctx, body)


def _summary(event: MemoryEvent) -> str:
    payload = event.payload.model_dump(mode="json", exclude={"kind"}, exclude_none=True)
    return json_text(payload).plain


@app.command("events")
def events(
    ctx: typer.Context,
    profile: ProfileArg,
    path: PathOption = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Only events of this kind, e.g. node.put (repeat)."),
    ] = None,
    after: Annotated[
        int | None, typer.Option("--after", metavar="SEQ", min=0, help="Only events after SEQ.")
    ] = None,
    compacted: Annotated[
        bool,
        typer.Option(
            "--compacted", help="With --path: show compaction summaries instead of the events."
        ),
    ] = False,
    limit: LimitOption = 100,
    oldest_first: OldestFirstOption = False,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List a profile's memory events, newest first (or those a path sees).

    --oldest-first lists them in sequence order, the order a replay folds them.
    """

    async def body(store: Store) -> None:
        prof = await resolve_profile(store, profile)
        found: Listing[MemoryEvent]
        if path is not None:
            at = await resolve_path(store, prof, path)
            seen = store.memory.iterate_events(prof.id, path_id=at.id, compacted=compacted)
            items = [
                e
                async for e in seen
                if (not kind or e.kind in kind) and (after is None or (e.seq or 0) > after)
            ]
            found = _in_memory(items, limit, oldest_first, key=lambda e: (e.seq or 0, e.id))
        elif oldest_first or cursor is not None:
            query = EventQuery(profile_id=prof.id, kinds=kind or None, after_seq=after)
            found = await read(
                lambda c, n: store.events.list(query, cursor=c, limit=n),
                limit=limit,
                cursor=cursor,
                oldest_first=True,
            )
        else:
            query = EventQuery(profile_id=prof.id, kinds=kind or None)
            found = await read_by_seq(
                lambda seq, c, n: store.events.list(
                    query.model_copy(update={"after_seq": seq}), cursor=c, limit=n
                ),
                last_seq=await store.events.last_seq(),
                floor=after or 0,
                limit=limit,
            )
        if json:
            print_json(found.items)
        else:
            rows = [
                (e.seq, when(e.at), e.path_id, e.kind, e.actor, _summary(e)) for e in found.items
            ]
            console().print(
                table(
                    None,
                    ["seq", "at", "path", "kind", "actor", "payload"],
                    rows,
                    clipped={"payload": 80},
                )
            )
        show_more(found)

    run_with_store(ctx, body)


def _in_memory(
    items: list[T], limit: int, oldest_first: bool, *, key: Callable[[T], Any]
) -> Listing[T]:
    """A listing of items already read whole: newest (or oldest) ``limit``."""
    ordered = sorted(items, key=key, reverse=not oldest_first)
    return Listing(ordered[:limit], older=len(ordered) > limit, newest_first=not oldest_first)


def _graph_json(graph: GraphSnapshot) -> dict[str, Any]:
    return graph.model_dump(mode="json")


@app.command("replay")
def replay(
    ctx: typer.Context,
    profile: ProfileArg,
    through: Annotated[
        int | None,
        typer.Option("--through", metavar="SEQ", min=0, help="Replay events up to SEQ only."),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Fold all of a profile's events into its graph and compare it with the stored one.

    Every event counts, whatever its path (abandoned branches included): this
    checks the stored graph, which every path writes to.

    Exits with status 1 when a full replay differs from the stored graph.
    """

    async def body(store: Store) -> None:
        prof = await resolve_profile(store, profile)
        with spinner(f"replaying the events of {prof.id}"):
            replayed = await store.memory.replay(prof.id, view="all", through_seq=through)
            stored = None if through is not None else await store.memory.graph(prof.id, view="all")
        equal = None if stored is None else stored == replayed
        if json:
            print_json(
                {"profile_id": prof.id, "graph": _graph_json(replayed), "equals_stored": equal}
            )
        else:
            out = console()
            out.print(table("nodes", _NODE_COLUMNS, _node_rows(replayed.nodes)))
            out.print(table("edges", _EDGE_COLUMNS, _edge_rows(replayed.edges)))
            verdict = {
                None: Text("not compared (partial replay)", style="dim"),
                True: Text("yes", style="green"),
                False: Text("NO", style="bold red"),
            }[equal]
            out.print(
                Text(
                    f"replayed {prof.id} through seq {replayed.through_seq}: "
                    f"{len(replayed.nodes)} nodes, {len(replayed.edges)} edges, "
                    f"{len(replayed.paths)} paths; equals the stored graph: "
                ).append_text(verdict)
            )
        if equal is False:
            raise StorageError(
                "corrupt",
                f"the stored graph of {prof.id} differs from the replay of its events; "
                "run `keepstone doctor` to diagnose and repair",
                {"profile": prof.id},
            )

    run_with_store(ctx, body)
