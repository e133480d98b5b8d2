"""Content addressing inside a value: large pieces become parts of their own.

A stored value keeps its small pieces inline and replaces every large one
(over :data:`~keepstone.langgraph.layout.INLINE_LIMIT` bytes of JSON) by a
reference to a snapshot part named by its digest:

- ``{"__ks__": "ref", "d": digest}`` — the JSON stored under ``digest``;
- ``{"__ks__": "chunks", "d": [digest, ...]}`` — a long list stored as
  consecutive chunks of :data:`CHUNK` items.

So the same large string is stored once wherever it appears (a channel, the
graph input, a pending write, another thread), and a list that only grows,
such as a chat's messages, shares every full chunk with the step before:
each step stores the new messages, not the whole conversation again.

Pure functions over JSON values: the ``keepstone threads`` commands use
them without LangGraph installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from keepstone.errors import StorageError
from keepstone.schemas import canonical_json, sha256_digest

TAG: Final = "__ks__"
REF: Final = "ref"
CHUNKS: Final = "chunks"
CHUNK: Final = 32
"""Items per chunk of a long list."""

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
