"""BlobStore: immutable bytes addressed by their sha256 digest."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Protocol

from keepstone.schemas.artifacts import BlobInfo
from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page


class BlobStore(Protocol):
    """Content-addressed bytes. Puts are idempotent; content never changes.

    Storing bytes changes no named state, so blob puts are not audited; every
    artifact, revision or snapshot that refers to a blob is.
    """

    async def put(self, data: bytes) -> BlobInfo:
        """Store ``data`` durably under its digest.

        Returns:
            The digest (``sha256:<hex>``) and size. Storing the same bytes
            again returns the same digest and writes nothing new.

        Raises:
            StorageError: ``invalid`` if ``data`` is not bytes or exceeds the
                store's blob size limit.
        """
        ...

    async def put_stream(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        """Store a stream of chunks, in constant memory.

        Raises:
            StorageError: ``invalid`` if a chunk is not bytes.
        """
        ...

    async def get(self, digest: str, *, verify: bool = True) -> bytes:
        """The bytes stored under ``digest``.

        Args:
            verify: recompute the digest and refuse damaged bytes.

        Raises:
            StorageError: ``invalid`` for a malformed digest; ``not_found``
                if no blob has it; ``corrupt`` if ``verify`` and the bytes no
                longer match.
        """
        ...

    def stream(self, digest: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The bytes under ``digest`` in chunks; verified once fully read.

        Raises:
            StorageError: ``not_found``; ``corrupt`` at the end of the stream
                if the bytes do not match the digest.
        """
        ...

    async def exists(self, digest: str) -> bool:
        """Whether a blob with ``digest`` is stored.

        Raises:
            StorageError: ``invalid`` for a malformed digest.
        """
        ...

    async def stat(self, digest: str) -> BlobInfo:
        """Digest and size of a stored blob.

        Raises:
            StorageError: ``invalid`` for a malformed digest; ``not_found``.
        """
        ...

    async def list(self, *, cursor: str | None = None, limit: int = 100) -> Page[BlobInfo]:
        """Stored blobs in digest order.

        Raises:
            StorageError: ``invalid`` for a bad cursor or limit.
        """
        ...

    async def delete_unreferenced(
        self, digests: Sequence[str], *, approval: ApprovalMarker | None = None
    ) -> builtins.list[BlobInfo]:
        """Delete those of ``digests`` that nothing refers to: garbage
        collection (``gc_blobs``), a lifecycle action, review-gated.

        A blob is referenced by an artifact revision whose bytes are not
        purged, a part of a run snapshot, or a sealed log stream. References
        are re-checked here, so a digest that became referenced since it was
        planned (or is not stored) is skipped, never deleted. A write racing
        with this call may still refer to bytes being deleted; the doctor
        reports that as ``missing_blob``. Run it when the store is quiet.

        Returns:
            The blobs deleted, in digest order (one ``lifecycle.gc_blobs``
            audit record lists them).

        Raises:
            StorageError: ``review_required`` (audited as denied) without an
                approval; ``invalid`` for a malformed digest; ``corrupt`` if a
                record that may hold a reference cannot be read (nothing is
                deleted: run the doctor first).
        """
        ...
