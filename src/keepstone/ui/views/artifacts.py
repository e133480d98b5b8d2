"""Artifacts: collections, search with snippets, an artifact's revisions,
diffs, relationships and provenance, and the lineage graph."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keepstone import StorageError, Store
from keepstone.schemas import Artifact, ArtifactQuery
from keepstone.schemas.artifacts import ArtifactType
from keepstone.ui.diffs import as_text, text_diff
from keepstone.ui.graphs import lineage
from keepstone.ui.render import page, state
from keepstone.ui.views.common import arg, arg_int, page_size

TYPES: tuple[str, ...] = ArtifactType.__args__  # type: ignore[attr-defined]
PREVIEW_BYTES = 64 * 1024
SNIPPET_BYTES = 256 * 1024
SNIPPET_CONTEXT = 80
SEARCH_PAGE = 20


async def head_bytes(store: Store, artifact_id: str, revision: int | None, limit: int) -> bytes:
    """The first ``limit`` bytes of a revision's content (a preview)."""
    chunks: list[bytes] = []
    got = 0
    stream = store.artifacts.read_stream(artifact_id, revision=revision)
    try:
        async for chunk in stream:
            chunks.append(chunk)
            got += len(chunk)
            if got >= limit:
                break
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()
    return b"".join(chunks)[:limit]


def words_of(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", text.lower()) if w]


def snippet(text: str, words: list[str]) -> list[tuple[str, bool]]:
    """Text around the first hit of ``words``, as (text, is_hit) segments."""
    if not words:
        return [(text[: SNIPPET_CONTEXT * 2], False)]
    pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.I)
    first = pattern.search(text)
    if first is None:
        return [(" ".join(text[: SNIPPET_CONTEXT * 2].split()), False)]
    start = max(0, first.start() - SNIPPET_CONTEXT)
    end = min(len(text), first.end() + SNIPPET_CONTEXT)
    window = text[start:end]
    segments: list[tuple[str, bool]] = [("…", False)] if start > 0 else []
    pos = 0
    for match in pattern.finditer(window):
        if match.start() > pos:
            segments.append((window[pos : match.start()], False))
        segments.append((match.group(0), True))
        pos = match.end()
    if pos < len(window):
        segments.append((window[pos:], False))
    if end < len(text):
        segments.append(("…", False))
    return segments


def _query(request: Request) -> ArtifactQuery:
    kind = arg(request, "type")
    if kind is not None and kind not in TYPES:
        raise StorageError("invalid", f"unknown type {kind!r}; one of {', '.join(TYPES)}")
    return ArtifactQuery.model_validate(
        {
            "collection_id": arg(request, "collection"),
            "name": arg(request, "name"),
            "type": kind,
            "text": arg(request, "q"),
            "run_id": arg(request, "run"),
            "related_to": arg(request, "related_to"),
            "include_deleted": arg(request, "deleted") == "1",
        }
    )


async def artifacts_list(request: Request) -> Response:
    ui = state(request)
    query = _query(request)
    n = SEARCH_PAGE if query.text else page_size(request)
    found, collections = await asyncio.gather(
        ui.store.artifacts.query(query, cursor=arg(request, "cursor"), limit=n),
        ui.store.artifacts.list_collections(cursor=arg(request, "ccursor"), limit=50),
    )
    names = {c.id: c.name for c in collections.items}
    missing = {a.collection_id for a in found.items} - set(names)
    for cid in sorted(missing)[:50]:
        try:
            names[cid] = (await ui.store.artifacts.get_collection(cid)).name
        except StorageError:
            names[cid] = cid
    snippets: dict[str, list[tuple[str, bool]]] = {}
    if query.text:
        words = words_of(query.text)

        async def one(art: Artifact) -> None:
            data = await head_bytes(ui.store, art.id, None, SNIPPET_BYTES)
            text = as_text(data)
            if text is not None:
                snippets[art.id] = snippet(text, words)

        await asyncio.gather(*(one(a) for a in found.items))
    context = {
        "artifacts": found.items,
        "next_cursor": found.next_cursor,
        "collections": collections,
        "names": names,
        "snippets": snippets,
        "types": TYPES,
        "query": query,
    }
    return page(request, "artifacts/list.html", context, title="Artifacts")


async def artifact_detail(request: Request) -> Response:
    ui = state(request)
    art = await ui.store.artifacts.get(request.path_params["artifact_id"])
    shown_rev = arg_int(request, "rev", art.revision, lo=1, hi=art.revision)
    revisions, relations, changes, collection = await asyncio.gather(
        ui.store.artifacts.revisions(art.id, cursor=arg(request, "rcursor"), limit=100),
        ui.store.artifacts.relationships(art.id, limit=100),
        ui.store.artifacts.changes(artifact_id=art.id, limit=50),
        ui.store.artifacts.get_collection(art.collection_id),
    )
    others: dict[str, Artifact | None] = {}
    for rel in relations.items:
        other = rel.target_id if rel.source_id == art.id else rel.source_id
        if other not in others:
            try:
                others[other] = await ui.store.artifacts.get(other)
            except StorageError:
                others[other] = None
    revision = next((r for r in revisions.items if r.number == shown_rev), None)
    if revision is None:
        revision = await ui.store.artifacts.get_revision(art.id, shown_rev or art.revision)
    content: str | None = None
    content_note = ""
    if revision.purged:
        content_note = "the bytes of this revision were purged"
    else:
        try:
            data = await head_bytes(ui.store, art.id, revision.number, PREVIEW_BYTES + 1)
        except StorageError as exc:
            content_note = f"content unreadable: [{exc.code}] {exc.message}"
        else:
            content = as_text(data[:PREVIEW_BYTES])
            if content is None:
                content_note = f"binary content ({revision.size:,} bytes)"
            elif len(data) > PREVIEW_BYTES:
                content_note = f"first {PREVIEW_BYTES // 1024} KiB of {revision.size:,} bytes"
    context: dict[str, Any] = {
        "art": art,
        "collection": collection,
        "revisions": revisions,
        "revision": revision,
        "relations": relations,
        "others": others,
        "changes": changes.items,
        "content": content,
        "content_note": content_note,
    }
    return page(request, "artifacts/detail.html", context, title=f"Artifact {art.name}")


async def artifact_diff(request: Request) -> Response:
    ui = state(request)
    art = await ui.store.artifacts.get(request.path_params["artifact_id"])
    a = arg_int(request, "a", max(art.revision - 1, 1), lo=1, hi=art.revision) or 1
    b = arg_int(request, "b", art.revision, lo=1, hi=art.revision) or art.revision
    old_rev, new_rev = await asyncio.gather(
        ui.store.artifacts.get_revision(art.id, a), ui.store.artifacts.get_revision(art.id, b)
    )
    note = ""
    diff = None
    if old_rev.purged or new_rev.purged:
        note = "a purged revision has no content to compare"
    elif old_rev.size + new_rev.size > 2 * 1024 * 1024:
        note = f"too large to diff here ({old_rev.size + new_rev.size:,} bytes)"
    else:
        old_b, new_b = await asyncio.gather(
            ui.store.artifacts.read(art.id, revision=a), ui.store.artifacts.read(art.id, revision=b)
        )
        old_t, new_t = as_text(old_b), as_text(new_b)
        if old_t is None or new_t is None:
            note = "binary content: compare the digests" if old_b != new_b else "identical"
        else:
            diff = text_diff(old_t, new_t)
    context = {"art": art, "old": old_rev, "new": new_rev, "diff": diff, "note": note}
    return page(request, "artifacts/diff.html", context, title=f"{art.name}: {a} → {b}")


async def artifact_raw(request: Request) -> Response:
    """The revision's bytes as a download (never rendered by the browser)."""
    ui = state(request)
    art = await ui.store.artifacts.get(request.path_params["artifact_id"])
    number = arg_int(request, "rev", art.revision, lo=1, hi=art.revision)
    data = await ui.store.artifacts.read(art.id, revision=number)
    filename = re.sub(r"[^A-Za-z0-9._-]+", "_", art.name)[:100] or "artifact"
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "content-disposition": f'attachment; filename="{filename}"',
            "content-security-policy": "sandbox; default-src 'none'",
        },
    )


async def lineage_page(request: Request) -> Response:
    ui = state(request)
    kind = "run" if request.url.path.startswith("/runs/") else "artifact"
    ident = request.path_params["ident"]
    if kind == "run":
        subject: Any = await ui.store.runs.get(ident)
    else:
        subject = await ui.store.artifacts.get(ident)
    depth = arg_int(request, "depth", 2, lo=1, hi=4)
    context = {"kind": kind, "subject": subject, "depth": depth}
    return page(request, "lineage.html", context, title=f"Lineage of {subject.name}")


async def lineage_json(request: Request) -> Response:
    ui = state(request)
    kind = arg(request, "kind") or "artifact"
    if kind not in ("run", "artifact"):
        raise StorageError("invalid", "kind is run or artifact")
    ident = arg(request, "id")
    if ident is None:
        raise StorageError("invalid", "id is required")
    depth = arg_int(request, "depth", 2, lo=1, hi=4) or 2
    return JSONResponse(await lineage(ui.store, kind, ident, depth=depth))


routes = [
    Route("/artifacts", artifacts_list),
    Route("/artifacts/{artifact_id}", artifact_detail),
    Route("/artifacts/{artifact_id}/diff", artifact_diff),
    Route("/artifacts/{artifact_id}/raw", artifact_raw),
    Route("/artifacts/{ident}/lineage", lineage_page),
    Route("/runs/{ident}/lineage", lineage_page),
    Route("/api/lineage", lineage_json),
]
