"""``keepstone artifacts``: list, show, get, put, history, search, related.

An ARTIFACT argument is what ``artifacts list`` shows: an artifact id
(``art_...``), ``COLLECTION/NAME``, or a NAME alone when one collection holds
it. Names may hold ``/`` (a run's outputs are named
``<pipeline>/<run id>/<output>``), so ``etl/run_etl_2/report.md`` is first
read as the artifact ``run_etl_2/report.md`` of a collection ``etl`` (or
``report.md`` of ``etl/run_etl_2``), and failing that as the name
``etl/run_etl_2/report.md`` in whichever collection has it.
"""

from __future__ import annotations

import mimetypes
import re
import sys
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer
from rich.text import Text

from keepstone.cli.app import run_with_store
from keepstone.cli.listing import every, read, show_more
from keepstone.cli.options import CursorOption, JsonOption, LimitOption, OldestFirstOption
from keepstone.cli.output import (
    console,
    fields,
    hint,
    inert,
    json_text,
    plain,
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
from keepstone.schemas.fulltext import fold
from keepstone.schemas.fulltext import words as words_of
from keepstone.store import Store

app = typer.Typer(help="Artifacts: named, revised, content-addressed, related, searchable.")

ArtifactArg = Annotated[
    str,
    typer.Argument(
        metavar="ARTIFACT",
        help="An artifact id, COLLECTION/NAME, or a NAME as artifacts list shows it.",
    ),
]
CollectionOption = Annotated[
    str | None, typer.Option("--collection", help="Only artifacts in this collection (by name).")
]
TypeOption = Annotated[
    ArtifactType | None, typer.Option("--type", help="Only artifacts of this type.")
]


async def resolve(store: Store, ref: str) -> Artifact:
    """The artifact named by an id, ``COLLECTION/NAME`` or a name alone.

    Raises:
        StorageError: ``not_found``; ``conflict`` when a name alone is in
            several collections (the message lists them as COLLECTION/NAME).
    """
    if "/" not in ref:
        try:
            return await store.artifacts.get(ref)
        except StorageError as exc:
            if exc.code not in ("not_found", "invalid"):
                raise
    for at in [m.start() for m in re.finditer("/", ref)]:
        try:
            coll = await store.artifacts.get_collection_by_name(ref[:at])
            return await store.artifacts.get_by_name(coll.id, ref[at + 1 :])
        except StorageError as exc:
            if exc.code not in ("not_found", "invalid"):
                raise
    named = [
        a
        async for a in every(
            lambda c, n: store.artifacts.query(ArtifactQuery(name=ref), cursor=c, limit=n)
        )
    ]
    if len(named) == 1:
        return named[0]
    if named:
        names = await _collection_names(store, named)
        refs = [f"{names[a.collection_id]}/{a.name}" for a in named]
        raise StorageError(
            "conflict",
            f"{len(named)} artifacts are named {ref!r}; name one as COLLECTION/NAME: "
            + ", ".join(refs),
            {"artifact": ref, "candidates": refs},
        )
    raise StorageError(
        "not_found",
        f"no artifact has the id, COLLECTION/NAME or name {ref!r}",
        {"artifact": ref},
    )


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
    store: Store,
    query: ArtifactQuery,
    limit: int,
    cursor: str | None,
    oldest_first: bool,
    json: bool,
) -> None:
    found = await read(
        lambda c, n: store.artifacts.query(query, cursor=c, limit=n),
        limit=limit,
        cursor=cursor,
        oldest_first=oldest_first,
    )
    if json:
        print_json(found.items)
    else:
        names = await _collection_names(store, found.items)
        console().print(table(None, _ARTIFACT_COLUMNS, _artifact_rows(found.items, names)))
    show_more(found)


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
    oldest_first: OldestFirstOption = False,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List artifacts, newest first (--oldest-first: in creation order)."""

    async def body(store: Store) -> None:
        query = ArtifactQuery(
            collection_id=await _collection_id(store, collection),
            type=type,
            run_id=run,
            name=name,
            include_deleted=deleted,
        )
        await _print_artifacts(store, query, limit, cursor, oldest_first, json)

    run_with_store(ctx, body)


@app.command("collections")
def collections(
    ctx: typer.Context,
    limit: LimitOption = 100,
    oldest_first: OldestFirstOption = False,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List collections, newest first (--oldest-first: in the API's order)."""

    async def body(store: Store) -> None:
        found = await read(
            lambda c, n: store.artifacts.list_collections(cursor=c, limit=n),
            limit=limit,
            cursor=cursor,
            oldest_first=oldest_first,
        )
        if json:
            print_json(found.items)
        else:
            rows = [(c.id, c.name, when(c.created_at), json_text(c.metadata)) for c in found.items]
            console().print(table(None, ["id", "name", "created", "metadata"], rows))
        show_more(found)

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
        console(stderr=True).print(plain(f"wrote {output}"))

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
            plain(
                f"{action} {art.id} ({coll.name}/{art.name}) revision {art.revision}, "
                f"{size(art.size)}, {art.digest}"
            )
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
                lambda c, n: store.artifacts.revisions(art.id, cursor=c, limit=n)
            )
        ]
        changes = [
            change
            async for change in every(
                lambda c, n: store.artifacts.changes(artifact_id=art.id, cursor=c, limit=n)
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


async def _all(list_page: Any, artifact_id: str) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        page = await list_page(artifact_id, cursor=cursor, limit=1000)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


async def _all_changes(store: Store, artifact_id: str) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        page = await store.artifacts.changes(artifact_id=artifact_id, cursor=cursor, limit=1000)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


SNIPPET_READ = 64 << 10
"""How much of an artifact's content is read to find a snippet."""
SNIPPET_BEFORE, SNIPPET_AFTER = 40, 80


def _find(text: str, words: list[str]) -> tuple[int, int] | None:
    """Where the first of ``words`` appears in ``text`` (start, end), case
    and accent insensitive, or ``None``."""
    best: tuple[int, int] | None = None
    for word in words:
        found = re.search(re.escape(word), text, re.IGNORECASE)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), found.end())
    if best is not None:
        return best
    folded: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        piece = fold(ch)
        folded.append(piece)
        origin += [i] * len(piece)
    flat = "".join(folded)
    for word in (fold(w) for w in words):
        at = flat.find(word)
        if at >= 0 and word and (best is None or origin[at] < best[0]):
            end = origin[at + len(word) - 1] + 1
            while end < len(text) and unicodedata.combining(text[end]):
                end += 1  # the accents of the last letter belong to the word
            best = (origin[at], end)
    return best


async def _snippet(store: Store, art: Artifact, words: list[str]) -> tuple[str, str, str] | None:
    """Some text around the first word found in ``art``'s content, as
    ``(before, word, after)`` with runs of whitespace made single spaces and
    ``…`` where the text goes on; ``None`` for binary or unreadable content,
    or no word found in the first :data:`SNIPPET_READ` bytes."""
    data = bytearray()
    stream = store.artifacts.read_stream(art.id)
    try:
        async for chunk in stream:
            data += chunk
            if len(data) >= SNIPPET_READ:
                break
    except StorageError:
        return None  # purged or damaged bytes: the search still lists the hit
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    try:
        text = bytes(data[:SNIPPET_READ]).decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < SNIPPET_READ - 4:  # not just a character cut at the end
            return None
        text = bytes(data[: exc.start]).decode("utf-8")
    where = _find(text, words)
    if where is None:
        return None
    start, end = where
    left = max(0, start - SNIPPET_BEFORE)
    right = min(len(text), end + SNIPPET_AFTER)
    before = " ".join(text[left:start].split())
    after = " ".join(text[end:right].split())
    if text[left:start][-1:].isspace() and before:
        before += " "
    if text[end:right][:1].isspace() and after:
        after = " " + after
    head = "…" if left > 0 else ""
    tail = "…" if right < len(text) else ""
    return head + before, text[start:end], after + tail


def _snippet_text(snippet: tuple[str, str, str]) -> Text:
    """A snippet for people: inert, the word found highlighted."""
    before, word, after = (inert(part) for part in snippet)
    out = Text(before)
    out.append(word, style="bold reverse")
    out.append(after)
    return out


@app.command("search")
def search(
    ctx: typer.Context,
    text: Annotated[
        str,
        typer.Argument(
            metavar="TEXT", help="Words that must all appear in the name or in the content."
        ),
    ],
    collection: CollectionOption = None,
    type: TypeOption = None,
    limit: LimitOption = 100,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Least recently updated first.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Find artifacts whose name, or whose text content, holds all of TEXT's words.

    A name matches when every word appears in COLLECTION/NAME, ignoring case
    and accents; content matches through the store's full-text search over
    the head revisions. Each hit says where it matched and shows a snippet
    of the content around the first word found. Newest (last updated) first.
    """
    folded = words_of(text)
    if not folded:
        raise typer.BadParameter("give at least one word", param_hint="TEXT")

    async def body(store: Store) -> None:
        base = ArtifactQuery(collection_id=await _collection_id(store, collection), type=type)
        names: dict[str, str] = {}
        hits: dict[str, tuple[Artifact, list[str]]] = {}
        async for art in every(lambda c, n: store.artifacts.query(base, cursor=c, limit=n)):
            if art.collection_id not in names:
                names[art.collection_id] = (
                    await store.artifacts.get_collection(art.collection_id)
                ).name
            where = fold(f"{names[art.collection_id]}/{art.name}")
            if all(w in where for w in folded):
                hits[art.id] = (art, ["name"])
        by_text = base.model_copy(update={"text": text})
        async for art in every(lambda c, n: store.artifacts.query(by_text, cursor=c, limit=n)):
            hits.setdefault(art.id, (art, []))[1].append("content")
        ordered = sorted(
            hits.values(), key=lambda h: (h[0].updated_at, h[0].id), reverse=not oldest_first
        )
        shown = ordered[:limit]
        names.update(
            await _collection_names(store, [a for a, _ in shown if a.collection_id not in names])
        )
        snippets = [await _snippet(store, art, folded) for art, _ in shown]
        if json:
            print_json(
                [
                    {
                        "artifact": art,
                        "collection": names[art.collection_id],
                        "matched": matched,
                        "snippet": None if snip is None else "".join(snip),
                    }
                    for (art, matched), snip in zip(shown, snippets, strict=True)
                ]
            )
        else:
            rows = []
            for (art, matched), snip in zip(shown, snippets, strict=True):
                shown_snip = None if snip is None else _snippet_text(snip)
                rows.append(
                    (
                        art.id,
                        names[art.collection_id],
                        art.name,
                        art.type,
                        when(art.updated_at),
                        ", ".join(matched),
                        shown_snip,
                    )
                )
            columns = ["id", "collection", "name", "type", "updated", "matched", "snippet"]
            console().print(table(None, columns, rows))
        if len(ordered) > limit:
            hint(f"showing {limit} of {len(ordered)} hits; raise --limit to see the others")

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
    """List an artifact's relationships and the artifacts at their other end.

    --json prints an array of {"relationship", "direction", "other"} objects.
    """

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
                [
                    {
                        "relationship": rel,
                        "direction": way,
                        "other": {"id": other.id, "name": other.name, "type": other.type},
                    }
                    for rel, way, other in items
                ]
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
