"""``keepstone init`` and ``keepstone backends``: the store itself."""

from __future__ import annotations

import typer

import keepstone
from keepstone.cli.app import local_path, prepare_location, run_async, state
from keepstone.cli.options import JsonOption
from keepstone.cli.output import console, plain, print_json, table
from keepstone.errors import StorageError
from keepstone.urls import redact


def init(ctx: typer.Context, json: JsonOption = False) -> None:
    """Create an empty store at --store and print its URL.

    A bare path ending in .db, .sqlite or .sqlite3 makes a SQLite file, any
    other bare path a workspace directory. A local store (SQLite file,
    workspace directory) that already exists is refused, so a typo cannot
    shadow an existing store.
    """
    st = state(ctx)
    url = st.store_url

    async def main() -> None:
        path = local_path(url)
        if path is not None and path.exists():
            raise StorageError(
                "conflict", f"a store already exists at {redact(url)}", {"store": redact(url)}
            )
        prepare_location(url)
        async with keepstone.open(url) as store:
            data = {
                "store": redact(url),
                "backend": store.backend.name,
                "capabilities": sorted(store.capabilities),
            }
        if json:
            print_json(data)
        else:
            console().print(plain(f"created {data['store']} ({data['backend']})"))

    run_async(ctx, main)


def backends(json: JsonOption = False) -> None:
    """List the store URL schemes this installation knows."""
    from keepstone.store import _known_backends

    known = sorted(_known_backends().items())
    if json:
        print_json([{"scheme": s, "target": t} for s, t in known])
        return
    console().print(table(None, ["scheme", "backend"], known))
