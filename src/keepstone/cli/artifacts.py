"""``keepstone artifacts``: list, show, get, put, history, search, related.

An ARTIFACT argument is an artifact id (``art_...``) or ``COLLECTION/NAME``:
ids never hold a ``/``, so the first ``/`` splits the collection's name from
the artifact's (``outputs/translate/run_1/lines`` is ``translate/run_1/lines``
in ``outputs``).
"""

from __future__ import annotations

import mimetypes
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer

from keepstone.cli.app import run_with_store
from keepstone.cli.options import CursorOption, JsonOption, LimitOption
from keepstone.cli.output import (
    console,
    fields,
    json_text,
    more,
    page_json,
    print_json,
    short,
    size,
    status_text,
    table,
    when,
)
from keepstone.errors import StorageError
from keepstone.schemas import (
    Artifact,
    ArtifactQuery,
    ArtifactType,
    Collection,
    Relationship,
    sha256_digest,
)
from keepstone.services.paging import PAGE_SIZE, every
from keepstone.store import Store

app = typer.Typer(help="Artifacts: named, revised, content-addressed, related, searchable.")

ArtifactArg = Annotated[
    str,
    typer.Argument(metavar="ARTIFACT", help="An artifact id, or COLLECTION/NAME."),
]
CollectionOption = Annotated[
    str | None, typer.Option("--collection", help="Only artifacts in this collection (by name).")
]
TypeOption = Annotated[
    ArtifactType | None, typer.Option("--type", help="Only artifacts of this type.")
]


async def resolve(store: Store, ref: str) -> Artifact:
    """The artifact named by an id or ``COLLECTION/NAME``.

    Raises:
        StorageError: ``not_found``.
    """
    if "/" not in ref:
        return await store.artifacts.get(ref)
    collection, _, name = ref.partition("/")
    coll = await store.artifacts.get_collection_by_name(collection)
    return await store.artifacts.get_by_name(coll.id, name)


async def _collection_id(store: Store, name: str | None) -> str | None:
    if name is None:
        return None
    return (await store.artifacts.get_collection_by_name(name)).id


async def _collection_names(store: Store, artifacts: list[Artifact]) -> dict[str, str]:
    names: dict[str, str] = {}
    for coll_id in sorted({a.collection_id for a in artifacts}):
        names[coll_id] = (await store.artifacts.get_collection(coll_id)).name
    return names


def _artifact_rows(artifacts: list[Artifact], names: dict[str, str]) -> list[tuple[Any, ...]]:
    return [
        (
            a.id,
            names.get(a.collection_id, a.collection_id),
            a.name,
            a.type,
            a.revision,
            size(a.size),
            when(a.updated_at),
            status_text("deleted") if a.deleted_at else None,
        )
        for a in artifacts
    ]


_ARTIFACT_COLUMNS = ["id", "collection", "name", "type", "rev", "size", "updated", "deleted"]


async def _print_artifacts(
    store: Store, query: ArtifactQuery, limit: int, cursor: str | None, json: bool
) -> None:
    page = await store.artifacts.query(query, cursor=cursor, limit=limit)
    if json:
        print_json(page_json(page))
        return
    names = await _collection_names(store, page.items)
    console().print(table(None, _ARTIFACT_COLUMNS, _artifact_rows(page.items, names)))
    more(page)


@app.command("list")
def list_artifacts(
    ctx: typer.Context,
    collection: CollectionOption = None,
    type: TypeOption = None,
    run: Annotated[str | None, typer.Option("--run", help="Only outputs of this run.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Only artifacts with this name.")
    ] = None,
    deleted: Annotated[
        bool, typer.Option("--deleted", help="Include deleted artifacts (tombstones).")
    ] = False,
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List artifacts, in creation order."""

    async def body(store: Store) -> None:
        query = ArtifactQuery(
            collection_id=await _collection_id(store, collection),
            type=type,
            run_id=run,
            name=name,
            include_deleted=deleted,
        )
        await _print_artifacts(store, query, limit, cursor, json)

    run_with_store(ctx, body)


@app.command("collections")
def collections(
    ctx: typer.Context,
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List collections by name."""

    async def body(store: Store) -> None:
        page = await store.artifacts.list_collections(cursor=cursor, limit=limit)
        if json:
            print_json(page_json(page))
            return
        rows = [(c.id, c.name, when(c.created_at), json_text(c.metadata)) for c in page.items]
        console().print(table(None, ["id", "name", "created", "metadata"], rows))
        more(page)

    run_with_store(ctx, body)


@app.command("show")
def show(ctx: typer.Context, artifact: ArtifactArg, json: JsonOption = False) -> None:
    """Show an artifact: metadata, head revision and relationships."""

    async def body(store: Store) -> None:
        art = await resolve(store, artifact)
        coll = await store.artifacts.get_collection(art.collection_id)
        head = await store.artifacts.get_revision(art.id, art.revision)
        rels = await store.artifacts.relationships(art.id, limit=10_000)
        if json:
            print_json(
                {"artifact": art, "collection": coll, "head": head, "relationships": rels.items}
            )
            return
        out = console()
        prov = head.provenance
        out.print(
            fields(
                [
                    ("id", art.id),
                    ("collection", f"{coll.name} ({coll.id})"),
                    ("name", art.name),
                    ("type", art.type),
                    ("revision", art.revision),
                    ("digest", art.digest),
                    ("size", size(art.size)),
                    ("media type", art.media_type),
                    ("metadata", json_text(art.metadata)),
                    ("run", art.run_id),
                    ("provenance", None if prov is None else json_text(prov)),
                    ("created", when(art.created_at)),
                    ("updated", when(art.updated_at)),
                    ("deleted", when(art.deleted_at) if art.deleted_at else None),
                ]
            )
        )
        if rels.items:
            rows = [(r.id, r.source_id, r.kind, r.target_id) for r in rels.items]
            out.print(table("relationships", ["id", "source", "kind", "target"], rows))

    run_with_store(ctx, body)


@app.command("get")
def get(
    ctx: typer.Context,
    artifact: ArtifactArg,
    revision: Annotated[
        int | None, typer.Option("--revision", "-r", min=1, help="This revision, not the head.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write to FILE, not to stdout."),
    ] = None,
) -> None:
    """Write an artifact's bytes to stdout (or to a file), verified."""

    async def body(store: Store) -> None:
        art = await resolve(store, artifact)
        stream = store.artifacts.read_stream(art.id, revision=revision)
        if output is None:
            sink = sys.stdout.buffer
            async for chunk in stream:
                sink.write(chunk)
            sink.flush()
            return
        partial = output.with_name(output.name + ".part")
        try:
            with partial.open("wb") as fh:
                async for chunk in stream:
                    fh.write(chunk)
            partial.replace(output)
        except OSError as exc:
            raise StorageError("invalid", f"cannot write {output}: {exc.strerror or exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        console(stderr=True).print(f"wrote {output}", markup=False)

    run_with_store(ctx, body)


_STREAM_ABOVE = 16 << 20
"""Files larger than this are streamed (and not indexed for full-text search)."""


def _media_type(path: Path | None, data: bytes | None) -> str:
    guessed = None if path is None else mimetypes.guess_type(path.name)[0]
    if guessed is not None:
        return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed
    if data is not None:
        try:
            data.decode("utf-8")
            return "text/plain; charset=utf-8"
        except UnicodeDecodeError:
            pass
    return "application/octet-stream"


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


def _file_digest(path: Path) -> str:
    import hashlib

    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


@app.command("put")
def put(
    ctx: typer.Context,
    collection: Annotated[
        str,
        typer.Argument(
            metavar="COLLECTION", help="The collection's name (created if it does not exist)."
        ),
    ],
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The artifact's name in the collection.")
    ],
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="The content: a file, or - for stdin.")
    ],
    type: Annotated[
        ArtifactType, typer.Option("--type", help="The artifact type (when creating).")
    ] = "document",
    media_type: Annotated[
        str | None,
        typer.Option("--media-type", help="The media type (default: guessed from FILE)."),
    ] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", metavar="JSON", help="Metadata, a JSON object.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """Create an artifact, or add a revision when its content changed."""
    meta: dict[str, Any] | None = None
    if metadata is not None:
        try:
            meta = orjson.loads(metadata)
        except orjson.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from exc
        if not isinstance(meta, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--metadata")

    async def body(store: Store) -> None:
        path = None if file == "-" else Path(file)
        data: bytes | AsyncIterator[bytes]
        try:
            if path is None:
                raw = sys.stdin.buffer.read()
                digest, data = sha256_digest(raw), raw
            elif path.stat().st_size > _STREAM_ABOVE:
                digest, data = _file_digest(path), _chunks(path)
            else:
                raw = path.read_bytes()
                digest, data = sha256_digest(raw), raw
        except OSError as exc:
            raise StorageError("invalid", f"cannot read {file}: {exc.strerror or exc}") from exc
        media = media_type or _media_type(path, data if isinstance(data, bytes) else None)
        coll = await _ensure_collection(store, collection)
        action: Literal["created", "revised", "unchanged"]
        try:
            existing = await store.artifacts.get_by_name(coll.id, name)
        except StorageError as exc:
            if exc.code != "not_found":
                raise
            art = await store.artifacts.create(
                coll.id, name, data, type=type, media_type=media, metadata=meta
            )
            action = "created"
        else:
            if existing.digest == digest and meta is None:
                art, action = existing, "unchanged"
            else:
                art = await store.artifacts.update(
                    existing.id,
                    data,
                    media_type=media,
                    metadata=meta,
                    expected_revision=existing.revision,
                )
                action = "revised"
        if json:
            print_json({"action": action, "artifact": art})
            return
        console().print(
            f"{action} {art.id} ({coll.name}/{art.name}) revision {art.revision}, "
            f"{size(art.size)}, {art.digest}",
            markup=False,
        )

    run_with_store(ctx, body)


async def _ensure_collection(store: Store, name: str) -> Collection:
    try:
        return await store.artifacts.get_collection_by_name(name)
    except StorageError as exc:
        if exc.code != "not_found":
            raise
    try:
        return await store.artifacts.create_collection(name)
    except StorageError as err:  # created meanwhile
        if err.code != "conflict":
            raise
        return await store.artifacts.get_collection_by_name(name)


@app.command("history")
def history(ctx: typer.Context, artifact: ArtifactArg, json: JsonOption = False) -> None:
    """Show an artifact's revisions and its change records."""

    async def body(store: Store) -> None:
        art = await resolve(store, artifact)
        revisions = [
            rev
            async for rev in every(
                lambda cursor: store.artifacts.revisions(art.id, cursor=cursor, limit=PAGE_SIZE)
            )
        ]
        changes = [
            change
            async for change in every(
                lambda cursor: store.artifacts.changes(
                    artifact_id=art.id, cursor=cursor, limit=PAGE_SIZE
                )
            )
        ]
        if json:
            print_json({"artifact": art, "revisions": revisions, "changes": changes})
            return
        out = console()
        rows = [
            (
                r.number,
                short(r.digest),
                size(r.size),
                r.media_type,
                None if r.provenance is None else r.provenance.run_id,
                None if r.provenance is None else r.provenance.step,
                when(r.created_at),
                "purged" if r.purged else None,
            )
            for r in revisions
        ]
        out.print(
            table(
                f"revisions of {art.name} ({art.id})",
                ["#", "digest", "size", "media type", "run", "step", "created", "purged"],
                rows,
            )
        )
        crow = [
            (
                c.seq,
                c.action,
                c.revision,
                short(c.old_digest),
                short(c.new_digest),
                c.actor,
                when(c.at),
            )
            for c in changes
        ]
        out.print(table("changes", ["seq", "action", "rev", "old", "new", "actor", "at"], crow))

    run_with_store(ctx, body)


@app.command("search")
def search(
    ctx: typer.Context,
    text: Annotated[
        str, typer.Argument(metavar="TEXT", help="Words that must all appear in the content.")
    ],
    collection: CollectionOption = None,
    type: TypeOption = None,
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """Full-text search over the text content of artifacts' head revisions."""

    async def body(store: Store) -> None:
        query = ArtifactQuery(
            text=text, collection_id=await _collection_id(store, collection), type=type
        )
        await _print_artifacts(store, query, limit, cursor, json)

    run_with_store(ctx, body)


@app.command("related")
def related(
    ctx: typer.Context,
    artifact: ArtifactArg,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only relationships of this kind.")
    ] = None,
    direction: Annotated[
        Literal["out", "in", "both"],
        typer.Option("--direction", help="out: from this artifact; in: to it; both."),
    ] = "both",
    json: JsonOption = False,
) -> None:
    """List an artifact's relationships and the artifacts at their other end."""

    async def body(store: Store) -> None:
        art = await resolve(store, artifact)
        rels = await store.artifacts.relationships(
            art.id, direction=direction, kind=kind, limit=10_000
        )
        items: list[tuple[Relationship, str, Artifact]] = []
        for rel in rels.items:
            outgoing = rel.source_id == art.id
            other = await store.artifacts.get(rel.target_id if outgoing else rel.source_id)
            items.append((rel, "out" if outgoing else "in", other))
        if json:
            print_json(
                {
                    "artifact_id": art.id,
                    "items": [
                        {
                            "relationship": rel,
                            "direction": way,
                            "other": {"id": other.id, "name": other.name, "type": other.type},
                        }
                        for rel, way, other in items
                    ],
                }
            )
            return
        rows = [
            (way, rel.kind, other.id, other.name, other.type, rel.id) for rel, way, other in items
        ]
        console().print(
            table(
                f"related to {art.name} ({art.id})",
                ["direction", "kind", "artifact", "name", "type", "relationship"],
                rows,
            )
        )

    run_with_store(ctx, body)
