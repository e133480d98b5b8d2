"""``keepstone export`` and ``keepstone import``: whole-store snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from keepstone.cli.app import run_with_store
from keepstone.cli.options import JsonOption
from keepstone.cli.output import console, print_json, progress_bar, table
from keepstone.schemas import SnapshotManifest
from keepstone.store import Store
from keepstone.urls import redact


def _summary(verb: str, where: str, manifest: SnapshotManifest) -> None:
    out = console()
    counts = [(name, n) for name, n in sorted(manifest.counts.items()) if n]
    out.print(table(None, ["records", "count"], [*counts, ("blobs", manifest.blobs)]))
    out.print(Text(f"{verb} {where} (keepstone {manifest.keepstone_version} snapshot)"))


def export(
    ctx: typer.Context,
    dest: Annotated[
        Path,
        typer.Argument(
            metavar="DEST", help="A new (or empty) directory, or a file path ending in .tar."
        ),
    ],
    json: JsonOption = False,
) -> None:
    """Export the whole store as a deterministic, verifiable snapshot."""

    async def body(store: Store) -> None:
        with progress_bar("export") as progress:
            manifest = await store.snapshots.export_to(dest, progress=progress)
        if json:
            print_json(manifest)
        else:
            _summary("exported to", str(dest), manifest)

    run_with_store(ctx, body)


def import_(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE", help="A snapshot directory or .tar made by keepstone export."
        ),
    ],
    json: JsonOption = False,
) -> None:
    """Import a snapshot into an empty store (created if it does not exist).

    Every digest is checked before anything is written; the import is
    all-or-nothing, and ids, sequence numbers and the audit chain survive.
    """

    async def body(store: Store) -> None:
        with progress_bar("import") as progress:
            manifest = await store.snapshots.import_from(source, progress=progress)
        if json:
            print_json(manifest)
        else:
            _summary("imported into", redact(store.url), manifest)

    run_with_store(ctx, body, create=True)
