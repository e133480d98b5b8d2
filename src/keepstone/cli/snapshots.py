"""``keepstone export`` and ``keepstone import``: whole-store snapshots."""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer

from keepstone.cli.app import run_with_store
from keepstone.cli.listing import every
from keepstone.cli.options import JsonOption
from keepstone.cli.output import console, plain, print_json, progress_bar, table
from keepstone.errors import StorageError
from keepstone.schemas import SnapshotManifest
from keepstone.store import Store
from keepstone.urls import redact

MANIFEST_READ = 16 << 20
"""The largest manifest read ahead of an import to size its progress bars."""
SCAN_MEMBERS = 1_000_000
"""At most this many tar entries are listed ahead of an import."""


def _summary(verb: str, where: str, manifest: SnapshotManifest) -> None:
    out = console()
    counts = [(name, n) for name, n in sorted(manifest.counts.items()) if n]
    out.print(table(None, ["records", "count"], [*counts, ("blobs", manifest.blobs)]))
    out.print(plain(f"{verb} {where} (keepstone {manifest.keepstone_version} snapshot)"))


def _created_at(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not a date and time; use ISO 8601, e.g. 2026-01-01T00:00:00Z",
            param_hint="--created-at",
        ) from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_snapshot_dir(path: Path) -> bool:
    try:
        data = orjson.loads((path / "manifest.json").read_bytes()[:MANIFEST_READ])
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == "keepstone-snapshot"


@contextlib.contextmanager
def _replacing(dest: Path, force: bool) -> Iterator[Path]:
    """Where to export so that ``dest`` is replaced only once the new
    snapshot is complete (``--force``); ``dest`` itself otherwise."""
    exists = dest.exists() or dest.is_symlink()
    empty_dir = dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir())
    if not exists or empty_dir or not force:
        if exists and dest.suffix == ".tar":
            raise StorageError(
                "conflict",
                f"{dest} already exists; choose a new file, or replace it with --force",
                {"path": str(dest)},
            )
        if exists and dest.is_dir() and any(dest.iterdir()):
            raise StorageError(
                "conflict",
                f"{dest} exists and is not an empty directory; choose a new one, or replace "
                "a previous snapshot there with --force",
                {"path": str(dest)},
            )
        yield dest
        return
    if dest.is_dir() and not dest.is_symlink():
        if any(dest.iterdir()) and not _is_snapshot_dir(dest):
            raise StorageError(
                "conflict",
                f"{dest} is a directory that does not hold a keepstone snapshot; "
                "--force only replaces a snapshot",
                {"path": str(dest)},
            )
    elif dest.suffix != ".tar":
        raise StorageError(
            "conflict",
            f"{dest} is a file; export to a path ending in .tar, or to a directory",
            {"path": str(dest)},
        )
    fresh = dest.with_name(f".{dest.name}.new-{os.getpid()}{dest.suffix}")
    _remove(fresh)
    try:
        yield fresh
        if dest.is_dir() and not dest.is_symlink():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
            fresh.rename(dest)
            shutil.rmtree(old)
        else:
            fresh.replace(dest)
    finally:
        _remove(fresh)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


async def _blob_totals(store: Store) -> tuple[int, int]:
    count = size = 0
    async for info in every(lambda c, n: store.blobs.list(cursor=c, limit=n)):
        count += 1
        size += info.size
    return count, size


def export(
    ctx: typer.Context,
    dest: Annotated[
        Path,
        typer.Argument(
            metavar="DEST", help="A new (or empty) directory, or a file path ending in .tar."
        ),
    ],
    created_at: Annotated[
        str | None,
        typer.Option(
            "--created-at",
            metavar="WHEN",
            help="The time the manifest records (ISO 8601, e.g. 2026-01-01T00:00:00Z; default: "
            "now). The same store and time give a byte-identical snapshot.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace DEST if it is a .tar file or a snapshot directory; the old one is "
            "replaced only once the new one is complete.",
        ),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Export the whole store as a deterministic, verifiable snapshot."""
    when = _created_at(created_at)

    async def body(store: Store) -> None:
        blobs, blob_bytes = await _blob_totals(store)
        with (
            _replacing(dest, force) as target,
            progress_bar(
                "export", totals={"export blobs": blobs}, sizes={"export blobs": blob_bytes}
            ) as progress,
        ):
            manifest = await store.snapshots.export_to(target, progress=progress, created_at=when)
        if json:
            print_json(manifest)
        else:
            _summary("exported to", str(dest), manifest)

    run_with_store(ctx, body)


def _import_totals(source: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Item counts and blob bytes of each import stage, read from the
    snapshot's manifest and listing (empty when they cannot be read: the
    import itself then says what is wrong)."""
    try:
        if source.is_dir():
            data = (source / "manifest.json").read_bytes()[:MANIFEST_READ]
            blob_dir = source / "blobs"
            sizes = [p.stat().st_size for p in blob_dir.iterdir()] if blob_dir.is_dir() else []
        else:
            data, sizes = _scan_tar(source)
        manifest = SnapshotManifest.model_validate_json(data)
    except (OSError, ValueError, tarfile.TarError):
        return {}, {}
    totals = {f"import {name}": n for name, n in manifest.counts.items()}
    totals["verify records"] = sum(p.records for p in manifest.parts)
    totals["verify blobs"] = totals["import blobs"] = manifest.blobs
    blob_bytes = sum(sizes)
    return totals, {"verify blobs": blob_bytes, "import blobs": blob_bytes}


def _scan_tar(source: Path) -> tuple[bytes, list[int]]:
    """The manifest and the blob sizes of an uncompressed snapshot tar,
    from its headers (the bytes are not read)."""
    data = b""
    sizes: list[int] = []
    with tarfile.open(source, "r:") as tar:
        for i, member in enumerate(tar):
            if i >= SCAN_MEMBERS:
                break
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 2 and parts[1] == "manifest.json":
                handle = tar.extractfile(member)
                if handle is not None and member.size <= MANIFEST_READ:
                    data = handle.read(MANIFEST_READ)
            elif member.isfile() and len(parts) == 3 and parts[1] == "blobs":
                sizes.append(member.size)
    return data, sizes


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
        totals, sizes = _import_totals(source)
        with progress_bar("import", totals=totals, sizes=sizes) as progress:
            verified = 0

            def report(stage: str, done: int) -> None:
                nonlocal verified
                if stage == "verify records":  # reported part by part
                    verified += done
                    done = verified
                progress(stage, done)

            manifest = await store.snapshots.import_from(source, progress=report)
        if json:
            print_json(manifest)
        else:
            _summary("imported into", redact(store.url), manifest)

    run_with_store(ctx, body, create=True)


__all__ = ["export", "import_"]
