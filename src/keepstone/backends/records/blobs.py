"""BlobStore over a RecordEngine: digests checked on input, verified on read."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator

from keepstone.backends.records.base import RecordContext, check_limit, decode_cursor, encode_cursor
from keepstone.errors import StorageError
from keepstone.ports.engine import BlobPut, WriteBatch
from keepstone.schemas._base import _check_digest, sha256_digest
from keepstone.schemas.artifacts import BlobInfo
from keepstone.schemas.common import Page


def check_digest(digest: str) -> str:
    """Validate a digest string (``invalid`` when malformed)."""
    try:
        return _check_digest(digest) if isinstance(digest, str) else _bad(digest)
    except ValueError as exc:
        raise StorageError(
            "invalid", f"invalid digest {digest!r}: {exc}", {"digest": digest}
        ) from exc


def _bad(value: object) -> str:
    raise ValueError(f"{type(value).__name__} is not a digest string")


def verify_bytes(digest: str, data: bytes) -> bytes:
    """Return ``data`` if it matches ``digest``, else raise ``corrupt``."""
    actual = sha256_digest(data)
    if actual != digest:
        raise StorageError(
            "corrupt",
            f"blob {digest} is damaged: its bytes hash to {actual}",
            {"digest": digest, "actual": actual},
        )
    return data


class RecordBlobStore:
    """Content-addressed bytes (see :class:`keepstone.ports.BlobStore`)."""

    def __init__(self, ctx: RecordContext) -> None:
        self._ctx = ctx

    def _check_size(self, size: int) -> None:
        if size > self._ctx.limits.max_blob_bytes:
            raise StorageError(
                "invalid",
                f"blob of {size} bytes exceeds the limit of {self._ctx.limits.max_blob_bytes}",
                {"size": size, "limit": self._ctx.limits.max_blob_bytes},
            )

    async def put(self, data: bytes) -> BlobInfo:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StorageError("invalid", f"blob data must be bytes, not {type(data).__name__}")
        data = bytes(data)
        self._check_size(len(data))
        digest = sha256_digest(data)
        await self._ctx.apply(WriteBatch([BlobPut(digest, data)]))
        return BlobInfo(digest=digest, size=len(data))

    async def put_stream(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        limit = self._ctx.limits.max_blob_bytes

        async def checked() -> AsyncIterator[bytes]:
            total = 0
            async for chunk in chunks:
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise StorageError(
                        "invalid", f"blob chunks must be bytes, not {type(chunk).__name__}"
                    )
                total += len(chunk)
                if total > limit:
                    self._check_size(total)
                yield bytes(chunk)

        return await self._ctx.engine.blob_put_stream(checked())

    async def get(self, digest: str, *, verify: bool = True) -> bytes:
        check_digest(digest)
        data = await self._ctx.engine.blob_get(digest)
        if data is None:
            raise StorageError("not_found", f"blob {digest} does not exist", {"digest": digest})
        return verify_bytes(digest, data) if verify else data

    async def stream(self, digest: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        check_digest(digest)
        if chunk_size < 1:
            raise StorageError("invalid", "chunk_size must be positive", {"chunk_size": chunk_size})
        hasher = hashlib.sha256()
        async for chunk in self._ctx.engine.blob_stream(digest, chunk_size):
            hasher.update(chunk)
            yield chunk
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            raise StorageError(
                "corrupt",
                f"blob {digest} is damaged: its bytes hash to {actual}",
                {"digest": digest, "actual": actual},
            )

    async def exists(self, digest: str) -> bool:
        check_digest(digest)
        return await self._ctx.engine.blob_size(digest) is not None

    async def stat(self, digest: str) -> BlobInfo:
        check_digest(digest)
        size = await self._ctx.engine.blob_size(digest)
        if size is None:
            raise StorageError("not_found", f"blob {digest} does not exist", {"digest": digest})
        return BlobInfo(digest=digest, size=size)

    async def list(self, *, cursor: str | None = None, limit: int = 100) -> Page[BlobInfo]:
        check_limit(limit)
        after = decode_cursor(cursor, 1)
        after_digest = None if after is None else str(after[0])
        items = await self._ctx.engine.blob_list(after_digest, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        next_cursor = encode_cursor((items[-1].digest,)) if more and items else None
        return Page[BlobInfo](items=items, next_cursor=next_cursor)
