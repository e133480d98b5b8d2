"""The bytes of an artifact: checked, hashed, typed; JSONL lines in and out."""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

import orjson

from keepstone.core.base import RecordContext
from keepstone.core.blobs import RecordBlobStore
from keepstone.engine.spi import BlobPut
from keepstone.errors import StorageError
from keepstone.schemas._base import canonical_json, sha256_digest

TEXT_INDEX_LIMIT = 1 << 20
"""Text content up to this many bytes is full-text indexed."""


@dataclass
class Content:
    """The bytes of a new revision: ``blob`` is ``None`` when they were
    streamed into the blob store already; ``text`` is what gets indexed."""

    digest: str
    size: int
    media_type: str
    blob: BlobPut | None
    text: str | None


def is_text(media_type: str) -> bool:
    return media_type.startswith("text/") or media_type.split(";")[0].strip() in (
        "application/json",
        "application/jsonl",
        "application/x-ndjson",
        "application/xml",
        "application/yaml",
    )


async def content_of(
    ctx: RecordContext, blobs: RecordBlobStore, data: Any, media_type: str | None
) -> Content:
    """Check and hash artifact ``data``; a stream is stored as it is read."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StorageError(
                "invalid", f"artifact text is not valid Unicode ({exc.reason})", {}
            ) from exc
        media = media_type or "text/plain; charset=utf-8"
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        media = media_type or "application/octet-stream"
    elif isinstance(data, AsyncIterable):
        info = await blobs.put_stream(data)
        return Content(info.digest, info.size, media_type or "application/octet-stream", None, None)
    else:
        raise StorageError(
            "invalid",
            f"artifact data must be bytes, str or an async iterable of bytes, "
            f"not {type(data).__name__}",
        )
    if len(raw) > ctx.limits.max_blob_bytes:
        raise StorageError(
            "invalid",
            f"artifact of {len(raw)} bytes exceeds the limit",
            {"size": len(raw), "limit": ctx.limits.max_blob_bytes},
        )
    text = None
    if is_text(media) and len(raw) <= TEXT_INDEX_LIMIT:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    digest = sha256_digest(raw)
    return Content(digest, len(raw), media, BlobPut(digest, raw), text)


def jsonl_line(record: Any, number: int) -> bytes:
    if not isinstance(record, dict):
        raise StorageError(
            "invalid",
            f"JSONL record {number} is a {type(record).__name__}, not a JSON object",
            {"record": number},
        )
    return canonical_json(record) + b"\n"


def parse_jsonl_line(artifact_id: str, line: bytes, number: int) -> dict[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise StorageError(
            "corrupt",
            f"line {number} of artifact {artifact_id} is not JSON",
            {"artifact": artifact_id, "line": number},
        ) from exc
    if not isinstance(value, dict):
        raise StorageError(
            "corrupt",
            f"line {number} of artifact {artifact_id} is not a JSON object",
            {"artifact": artifact_id, "line": number},
        )
    return value
