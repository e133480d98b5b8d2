"""BlobStore over a RecordEngine: digests checked on input, verified on read."""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

import orjson

from keepstone.core.base import RecordContext, review_gate
from keepstone.core.paging import (
    Listing,
    check_limit,
    decode_cursor,
    encode_cursor,
    listing_binding,
    scan,
)
from keepstone.engine.spi import BlobPut, Table, WriteBatch
from keepstone.engine.tables import LOG_REFS, REVISIONS, SNAPSHOTS
from keepstone.errors import StorageError
from keepstone.schemas._base import _check_digest, sha256_digest
from keepstone.schemas.artifacts import BlobInfo
from keepstone.schemas.audit import ApprovalMarker, LifecycleAction
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
        binding = listing_binding(Listing("blobs.list"), "blobs", ())
        after = decode_cursor(cursor, binding, ("digest",))
        after_digest = None if after is None else str(after[0])
        items = await self._ctx.engine.blob_list(after_digest, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        next_cursor = encode_cursor(binding, (items[-1].digest,)) if more and items else None
        return Page[BlobInfo](items=items, next_cursor=next_cursor)

    async def delete_unreferenced(
        self, digests: Sequence[str], *, approval: ApprovalMarker | None = None
    ) -> builtins.list[BlobInfo]:
        wanted = sorted({check_digest(d) for d in digests})
        action = LifecycleAction(kind="gc_blobs", target="blobs", params={"blobs": len(wanted)})
        await review_gate(self._ctx, action, approval, None)
        if not wanted:
            return []
        referenced = await self._referenced()
        doomed: list[BlobInfo] = []
        for digest in wanted:
            if digest in referenced:
                continue
            size = await self._ctx.engine.blob_size(digest)
            if size is not None:
                doomed.append(BlobInfo(digest=digest, size=size))
        if not doomed:
            return []
        batch = WriteBatch()
        self._ctx.audit(
            batch,
            "lifecycle.gc_blobs",
            "blobs",
            {"digests": [b.digest for b in doomed], "bytes": sum(b.size for b in doomed)},
            approval=approval,
        )
        await self._ctx.apply(batch)
        for blob in doomed:
            await self._ctx.engine.blob_delete(blob.digest)
        return doomed

    async def _referenced(self) -> set[str]:
        """Every digest a revision (not purged), snapshot part or sealed log
        refers to; ``corrupt`` if a row that may refer to one is unreadable."""
        found: set[str] = set()
        async for table, row in self._rows(REVISIONS, SNAPSHOTS, LOG_REFS):
            if table is SNAPSHOTS:
                parts = row.get("parts")
                if not isinstance(parts, dict):
                    raise _unreadable(table)
                found.update(str(d) for d in parts.values())
            elif not (table is REVISIONS and row.get("purged")):
                if not isinstance(row.get("digest"), str):
                    raise _unreadable(table)
                found.add(row["digest"])
        return found

    async def _rows(self, *tables: Table) -> AsyncIterator[tuple[Table, dict[str, Any]]]:
        for table in tables:
            async for raw in scan(self._ctx.engine, table):
                yield table, _load(table, raw)


def _load(table: Table, raw: bytes) -> dict[str, Any]:
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError:
        row = None
    if not isinstance(row, dict):
        raise _unreadable(table)
    return row


def _unreadable(table: Table) -> StorageError:
    return StorageError(
        "corrupt",
        f"a {table.name} record cannot be read, so blob references are unknown; "
        "nothing was deleted: run the doctor first",
        {"table": table.name},
    )
