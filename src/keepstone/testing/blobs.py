"""Conformance of :class:`keepstone.ports.BlobStore`: content-addressed bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from hypothesis import given
from hypothesis import strategies as st

from keepstone.schemas import sha256_digest
from keepstone.testing.base import (
    PROPERTY,
    ConformanceBase,
    assert_listing_refuses_bad_paging,
    assert_paginates,
    audit_seq,
    collect,
    drain,
    expect_error,
    refused,
)

if TYPE_CHECKING:
    from keepstone import Store

MALFORMED_DIGESTS = ("", "sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64, "../etc/passwd")
ABSENT = sha256_digest(b"never stored by the conformance suite")


async def _chunks(*parts: Any) -> AsyncIterator[Any]:
    for part in parts:
        yield part


class BlobStoreConformance(ConformanceBase):
    """Tests of ``store.blobs``."""

    async def test_put_returns_digest_and_size(self, store: Store) -> None:
        info = await store.blobs.put(b"hello")
        assert info.digest == sha256_digest(b"hello") and info.size == 5
        assert await store.blobs.get(info.digest) == b"hello"
        assert await store.blobs.get(info.digest, verify=False) == b"hello"
        assert await store.blobs.exists(info.digest)
        assert await store.blobs.stat(info.digest) == info

    async def test_put_is_idempotent(self, store: Store) -> None:
        first = await store.blobs.put(b"same")
        count = len(await collect(lambda c: store.blobs.list(cursor=c)))
        again = await store.blobs.put(b"same")
        assert again == first
        assert len(await collect(lambda c: store.blobs.list(cursor=c))) == count

    async def test_put_empty_bytes_round_trips(self, store: Store) -> None:
        info = await store.blobs.put(b"")
        assert info.size == 0 and info.digest == sha256_digest(b"")
        assert await store.blobs.get(info.digest) == b""

    @PROPERTY
    @given(data=st.binary(max_size=4096))
    async def test_put_get_round_trips_any_bytes(self, store: Store, data: bytes) -> None:
        info = await store.blobs.put(data)
        assert info.digest == sha256_digest(data) and info.size == len(data)
        assert await store.blobs.get(info.digest) == data
        assert b"".join(await drain(store.blobs.stream(info.digest, chunk_size=7))) == data

    async def test_put_refuses_non_bytes(self, store: Store) -> None:
        await refused(store, "invalid", store.blobs.put("text"))  # type: ignore[arg-type]
        await refused(store, "invalid", store.blobs.put(None))  # type: ignore[arg-type]

    async def test_put_stream_equals_put_of_joined_chunks(self, store: Store) -> None:
        info = await store.blobs.put_stream(_chunks(b"ab", b"", b"c" * 5000, b"d"))
        data = b"ab" + b"c" * 5000 + b"d"
        assert info.digest == sha256_digest(data) and info.size == len(data)
        assert await store.blobs.get(info.digest) == data
        assert await store.blobs.put(data) == info

    async def test_put_stream_refuses_non_bytes_chunk(self, store: Store) -> None:
        await refused(store, "invalid", store.blobs.put_stream(_chunks(b"ok", "text")))

    async def test_stream_yields_chunks(self, store: Store) -> None:
        data = bytes(range(256)) * 40
        info = await store.blobs.put(data)
        chunks = await drain(store.blobs.stream(info.digest, chunk_size=1000))
        assert b"".join(chunks) == data
        assert all(len(chunk) <= 1000 for chunk in chunks) and len(chunks) >= 11

    async def test_stream_unknown_not_found(self, store: Store) -> None:
        await expect_error("not_found", drain(store.blobs.stream(ABSENT)))

    async def test_get_stat_exists_refusals(self, store: Store) -> None:
        await expect_error("not_found", store.blobs.get(ABSENT))
        await expect_error("not_found", store.blobs.stat(ABSENT))
        assert await store.blobs.exists(ABSENT) is False
        for digest in MALFORMED_DIGESTS:
            await expect_error("invalid", store.blobs.get(digest))
            await expect_error("invalid", store.blobs.stat(digest))
            await expect_error("invalid", store.blobs.exists(digest))

    async def test_list_in_digest_order_paginates(self, store: Store) -> None:
        infos = [await store.blobs.put(f"blob {i}".encode()) for i in range(8)]
        listed = await assert_paginates(
            lambda c, n: store.blobs.list(cursor=c, limit=n),
            key=lambda b: b.digest,
            expected=sorted(infos, key=lambda b: b.digest),
        )
        assert [b.digest for b in listed] == sorted(b.digest for b in listed)
        await assert_listing_refuses_bad_paging(lambda c, n: store.blobs.list(cursor=c, limit=n))

    async def test_damaged_bytes_corrupt(self, store: Store) -> None:
        info = await store.blobs.put(b"original bytes")
        await self.damage_blob(store, info.digest, b"damaged bytes!")
        error = await expect_error("corrupt", store.blobs.get(info.digest))
        assert error.details
        assert await store.blobs.get(info.digest, verify=False) == b"damaged bytes!"
        await expect_error("corrupt", drain(store.blobs.stream(info.digest, chunk_size=4)))

    async def test_put_is_not_audited(self, store: Store) -> None:
        seq = await audit_seq(store)
        await store.blobs.put(b"unaudited")
        await store.blobs.put_stream(_chunks(b"also", b"unaudited"))
        assert await audit_seq(store) == seq

    async def test_blobs_survive_reopen(self, store: Store) -> None:
        info = await store.blobs.put(b"durable bytes")
        reopened = await self.reopen(store)
        assert await reopened.blobs.get(info.digest) == b"durable bytes"
        assert await reopened.blobs.stat(info.digest) == info
