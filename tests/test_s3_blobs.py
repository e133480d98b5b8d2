"""The S3 blob store over real HTTP (moto in server mode on 127.0.0.1).

Multipart uploads for blobs larger than a part, digests verified on read,
idempotent puts, secrets never in errors; and how ``postgresql://...?blobs=s3://``
splits blobs between the bucket and the database.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import keepstone
from keepstone.backends.blobs.s3 import MIN_PART_SIZE, S3BlobStore
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from tests import postgres_support as pg
from tests import s3_support

BUCKET = "keepstone-blobs"
PART = MIN_PART_SIZE


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_support.moto_server() as url:
        s3_support.create_bucket(url, BUCKET)
        yield url


def s3_url(endpoint: str, prefix: str, **extra: str) -> str:
    query = {
        "endpoint": endpoint,
        "region": s3_support.REGION,
        "access_key_id": s3_support.ACCESS_KEY,
        "secret_access_key": s3_support.SECRET_KEY,
        "part_size": str(PART),
        **extra,
    }
    return f"s3://{BUCKET}/{prefix}?" + "&".join(f"{k}={v}" for k, v in query.items())


@pytest.fixture
def blobs(endpoint: str, tmp_path: Path) -> S3BlobStore:
    return S3BlobStore.from_url(s3_url(endpoint, pg.schema_for(tmp_path)))


def http_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "werkzeug"]


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# --------------------------------------------------------------------------- the store alone


async def test_small_put_get_round_trip(blobs: S3BlobStore) -> None:
    info = await blobs.put(b"hello")
    assert info.digest == sha256_digest(b"hello") and info.size == 5
    assert await blobs.get(info.digest) == b"hello"
    assert await blobs.exists(info.digest)
    assert (await blobs.stat(info.digest)).size == 5
    assert [b.digest for b in (await blobs.list()).items] == [info.digest]
    missing = sha256_digest(b"absent")
    assert not await blobs.exists(missing)
    with pytest.raises(StorageError) as err:
        await blobs.get(missing)
    assert err.value.code == "not_found"


async def test_blob_larger_than_a_part_goes_up_in_parts(
    blobs: S3BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="werkzeug")
    caplog.clear()
    data = os.urandom(2 * PART + 12345)
    info = await blobs.put(data)
    log = http_log(caplog)
    assert any("?uploads" in line and "POST" in line for line in log), log
    assert sum("partNumber=" in line for line in log) == 3, log
    assert await blobs.get(info.digest) == data
    streamed = b"".join([c async for c in blobs.stream(info.digest, chunk_size=1 << 20)])
    assert streamed == data


async def test_streamed_put_is_multipart_and_named_by_digest(
    blobs: S3BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="werkzeug")
    caplog.clear()
    data = os.urandom(2 * PART + 777)
    info = await blobs.put_stream(chunks_of(data, 256 * 1024))
    assert info.digest == sha256_digest(data) and info.size == len(data)
    log = http_log(caplog)
    assert any("?uploads" in line for line in log), log
    assert sum("partNumber=" in line for line in log) >= 3, log
    assert await blobs.get(info.digest) == data
    # The temporary object is gone: only the content-addressed one is listed.
    assert [b.digest for b in (await blobs.list()).items] == [info.digest]


async def test_put_is_idempotent(blobs: S3BlobStore, caplog: pytest.LogCaptureFixture) -> None:
    digest = sha256_digest(b"same bytes")
    assert await blobs.put_bytes(digest, b"same bytes") is True
    caplog.set_level(logging.INFO, logger="werkzeug")
    caplog.clear()
    assert await blobs.put_bytes(digest, b"same bytes") is False
    assert not any(line.split('"')[1].startswith("PUT") for line in http_log(caplog))
    again = await blobs.put_stream(chunks_of(b"same bytes", 3))
    assert again.digest == digest
    assert [b.digest for b in (await blobs.list()).items] == [digest]


async def test_reads_verify_the_digest(blobs: S3BlobStore) -> None:
    info = await blobs.put(b"original bytes")
    await blobs.write_raw(info.digest, b"tampered bytes")
    with pytest.raises(StorageError) as err:
        await blobs.get(info.digest)
    assert err.value.code == "corrupt"
    with pytest.raises(StorageError) as err:
        _ = [c async for c in blobs.stream(info.digest, chunk_size=4)]
    assert err.value.code == "corrupt"
    assert await blobs.get(info.digest, verify=False) == b"tampered bytes"


def _leaks(error: StorageError, *secrets: str) -> list[str]:
    text = " ".join([str(error), repr(error), json.dumps(error.to_dict())])
    cause = error.__cause__
    while cause is not None:
        text += " " + str(cause)
        cause = cause.__cause__
    return [s for s in secrets if s in text]


async def test_secrets_never_appear_in_errors(endpoint: str) -> None:
    secret, key = "SUPER-secret-value-123", "AKIA-not-public-456"
    missing = S3BlobStore.from_url(
        f"s3://no-such-bucket/x?endpoint={endpoint}&access_key_id={key}"
        f"&secret_access_key={secret}&region=us-east-1"
    )
    with pytest.raises(StorageError) as err:
        await missing.check()
    assert err.value.code == "config" and "does not exist" in err.value.message
    assert _leaks(err.value, secret, key) == []
    with pytest.raises(StorageError) as err:
        await missing.put(b"x")
    assert _leaks(err.value, secret, key) == []

    dead = S3BlobStore.from_url(
        f"s3://b/x?endpoint=http://127.0.0.1:9&secret_access_key={secret}"
        f"&access_key_id={key}&max_retries=0"
    )
    with pytest.raises(StorageError) as err:
        await dead.get(sha256_digest(b"x"))
    assert err.value.code == "unavailable"
    assert _leaks(err.value, secret, key) == []
    assert secret not in repr(dead.url) and "***" in dead.url

    with pytest.raises(StorageError) as err:
        S3BlobStore.from_url(f"s3://b/x?secret_access_key={secret}&bogus=1")
    assert err.value.code == "config" and _leaks(err.value, secret) == []

    password = "pg-Passw0rd-secret"
    with pytest.raises(StorageError) as err:
        await keepstone.open(
            f"postgresql://postgres:{password}@127.0.0.1:9/test?connect_timeout=2"
            f"&blobs=s3://b/x&s3_secret_access_key={secret}&s3_endpoint={endpoint}"
        )
    assert _leaks(err.value, secret, password) == []
    with pytest.raises(StorageError) as err:
        await keepstone.open(f"postgresql://postgres:{password}@127.0.0.1:9/test?connect_timeout=1")
    assert err.value.code == "unavailable" and _leaks(err.value, password) == []


async def test_settings_come_from_the_aws_environment(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", s3_support.REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_support.ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_support.SECRET_KEY)
    store = S3BlobStore.from_url(f"s3://{BUCKET}/{pg.schema_for(tmp_path)}")
    assert "?" not in store.url
    info = await store.put(b"configured from the environment")
    assert await store.get(info.digest) == b"configured from the environment"


# --------------------------------------------------------------------------- wired to PostgreSQL


@pytest.fixture
async def pg_store(endpoint: str, tmp_path: Path) -> AsyncIterator[keepstone.Store]:
    pg.require_postgres()
    schema = pg.schema_for(tmp_path)
    url = pg.url_for(
        schema,
        blobs=f"s3://{BUCKET}/{schema}",
        blob_threshold="1024",
        s3_part_size=str(PART),
        **s3_support.s3_options(endpoint),
    )
    try:
        async with keepstone.open(url) as store:
            yield store
    finally:
        await pg.drop_schemas([schema])


async def _place(store: keepstone.Store, digest: str) -> str | None:
    engine = store.backend.engine  # type: ignore[attr-defined]
    conn = await pg.connect()
    try:
        place = await conn.fetchval(
            f'SELECT place FROM "{engine.schema}".blobs WHERE digest = $1', digest
        )
        return None if place is None else str(place)
    finally:
        await conn.close()


async def test_store_keeps_small_blobs_in_postgres_and_large_ones_in_s3(
    pg_store: keepstone.Store,
) -> None:
    s3: S3BlobStore = pg_store.backend.engine.s3  # type: ignore[attr-defined]
    small = await pg_store.blobs.put(b"x" * 1024)
    large = await pg_store.blobs.put(b"y" * 1025)
    assert await _place(pg_store, small.digest) == "inline"
    assert await _place(pg_store, large.digest) == "s3"
    assert not await s3.exists(small.digest) and await s3.exists(large.digest)
    data = os.urandom(PART + 4096)
    streamed = await pg_store.blobs.put_stream(chunks_of(data, 100_000))
    assert await _place(pg_store, streamed.digest) == "s3"
    assert await pg_store.blobs.get(streamed.digest) == data
    listed = [b.digest for b in (await pg_store.blobs.list()).items]
    assert listed == sorted([small.digest, large.digest, streamed.digest])

    await s3.write_raw(large.digest, b"z" * 1025)
    with pytest.raises(StorageError) as err:
        await pg_store.blobs.get(large.digest)
    assert err.value.code == "corrupt"


async def test_artifact_bytes_go_to_s3_before_the_row_commits(
    pg_store: keepstone.Store,
) -> None:
    s3: S3BlobStore = pg_store.backend.engine.s3  # type: ignore[attr-defined]
    coll = await pg_store.artifacts.create_collection("docs")
    art = await pg_store.artifacts.create(coll.id, "big.bin", b"b" * 5000)
    assert await s3.exists(art.digest)
    assert await pg_store.artifacts.read(art.id) == b"b" * 5000
