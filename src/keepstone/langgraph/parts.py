"""Content addressing inside a value: large pieces become parts of their own.

A stored value keeps its small pieces inline and replaces every large one
(over :data:`~keepstone.langgraph.layout.INLINE_LIMIT` bytes of JSON) by a
reference to a snapshot part named by its digest:

- ``{"__ks__": "ref", "d": digest}`` — the JSON stored under ``digest``;
- ``{"__ks__": "chunks", "d": [digest, ...]}`` — a long list stored as
  consecutive chunks of :data:`CHUNK` items.

In a long list, every item over :data:`ITEM_LIMIT` bytes is a part too. So
the same large string is stored once wherever it appears (a channel, the
graph input, a pending write, another thread), and a list that only grows,
such as a chat's messages, stores each message once and shares every full
chunk of references with the step before: each step stores the new
messages and one short chunk, not the whole conversation again.

Pure functions over JSON values: the ``keepstone threads`` commands use
them without LangGraph installed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from keepstone.errors import StorageError
from keepstone.schemas import canonical_json, sha256_digest

TAG: Final = "__ks__"
REF: Final = "ref"
CHUNKS: Final = "chunks"
CHUNK: Final = 32
"""Items per chunk of a long list."""
ITEM_LIMIT: Final = 256
"""Items of a long list larger than this many bytes of JSON are parts of their own."""

_REF_SIZE = 90


def split(value: Any, parts: dict[str, Any], refs: set[str], limit: int) -> Any:
    """``value`` with its large pieces replaced by references; the pieces go
    to ``parts`` (digest -> JSON) and every digest it refers to, directly or
    not, to ``refs``."""
    skeleton, _ = _split(value, parts, refs, limit)
    return skeleton


def _store(node: Any, parts: dict[str, Any], refs: set[str]) -> dict[str, Any]:
    digest = sha256_digest(canonical_json(node))
    parts[digest] = node
    refs.add(digest)
    return {TAG: REF, "d": digest}


def _split(value: Any, parts: dict[str, Any], refs: set[str], limit: int) -> tuple[Any, int]:
    if isinstance(value, str):
        size = len(value) + 2
        if size > limit and len(value.encode("utf-8", "surrogatepass")) + 2 > limit:
            return _store(value, parts, refs), _REF_SIZE
        return value, size
    if isinstance(value, list):
        items = [_split(v, parts, refs, limit) for v in value]
        if len(items) > 1 and sum(s for _, s in items) > limit:
            # A long list (a chat's messages): each sizeable item is a part of
            # its own, so appending to the list stores only what was appended.
            items = [
                (_store(n, parts, refs), _REF_SIZE) if s > ITEM_LIMIT else (n, s) for n, s in items
            ]
        size = sum(s for _, s in items) + len(items) + 2
        nodes = [n for n, _ in items]
        if size <= limit:
            return nodes, size
        if len(nodes) > CHUNK:
            chunks = [
                _store(nodes[i : i + CHUNK], parts, refs)["d"] for i in range(0, len(nodes), CHUNK)
            ]
            node: Any = {TAG: CHUNKS, "d": chunks}
            size = _REF_SIZE * len(chunks)
            if size <= limit:
                return node, size
            return _store(node, parts, refs), _REF_SIZE
        return _store(nodes, parts, refs), _REF_SIZE
    if isinstance(value, dict):
        fields = {k: _split(v, parts, refs, limit) for k, v in value.items()}
        size = sum(len(k) + s + 4 for k, (_, s) in fields.items()) + 2
        node = {k: n for k, (n, _) in fields.items()}
        if size <= limit:
            return node, size
        return _store(node, parts, refs), _REF_SIZE
    return value, 8 if not isinstance(value, float | int) else len(repr(value))


def refs_of(node: Any) -> list[str]:
    """The digests ``node`` refers to directly (not those inside them)."""
    found: list[str] = []
    _refs(node, found)
    return found


def _refs(node: Any, found: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _refs(item, found)
    elif isinstance(node, dict):
        tag = node.get(TAG)
        if tag == REF and len(node) == 2 and isinstance(node.get("d"), str):
            found.append(node["d"])
        elif tag == CHUNKS and len(node) == 2 and isinstance(node.get("d"), list):
            found += [d for d in node["d"] if isinstance(d, str)]
        else:
            for item in node.values():
                _refs(item, found)


async def closure(
    load: Callable[[list[str]], Awaitable[Mapping[str, Any]]], roots: Iterable[str]
) -> dict[str, Any]:
    """Every part reachable from ``roots``, loaded with ``load`` one level at
    a time: digest -> JSON."""
    found: dict[str, Any] = {}
    wanted = list(dict.fromkeys(roots))
    while wanted:
        loaded = await load(wanted)
        found.update(loaded)
        wanted = list(
            dict.fromkeys(d for node in loaded.values() for d in refs_of(node) if d not in found)
        )
    return found


def join(skeleton: Any, blobs: Mapping[str, Any]) -> Any:
    """The value :func:`split` made ``skeleton`` from; ``blobs`` maps every
    digest it refers to (directly or not) to its JSON.

    Raises:
        StorageError: ``corrupt`` when a digest is missing from ``blobs``.
    """
    if isinstance(skeleton, list):
        return [join(v, blobs) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    tag = skeleton.get(TAG)
    if tag == REF and len(skeleton) == 2:
        return join(_blob(blobs, skeleton["d"]), blobs)
    if tag == CHUNKS and len(skeleton) == 2:
        out: list[Any] = []
        for digest in skeleton["d"]:
            out += join(_blob(blobs, digest), blobs)
        return out
    return {k: join(v, blobs) for k, v in skeleton.items()}


def _blob(blobs: Mapping[str, Any], digest: Any) -> Any:
    if not isinstance(digest, str) or digest not in blobs:
        raise StorageError(
            "corrupt", f"a stored LangGraph value refers to {digest!r}, which is missing", {}
        )
    return blobs[digest]
