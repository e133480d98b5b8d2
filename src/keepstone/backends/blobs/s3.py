"""Content-addressed blobs in an S3-compatible bucket, through obstore.

``s3://bucket/prefix`` keeps the bytes of ``sha256:<hex>`` in the object
``<prefix>/sha256/<hex>`` (streamed uploads pass through ``<prefix>/tmp/``).
Any S3-compatible endpoint works (AWS, MinIO, Ceph, R2, moto...).

Configuration, first found wins:

* the URL query: ``endpoint``, ``region``, ``access_key_id``,
  ``secret_access_key``, ``session_token``, ``allow_http`` (default: true
  when the endpoint, given here or in the environment, is ``http://``),
  ``virtual_hosted_style`` (default false: path-style requests, what most
  S3-compatible servers expect),
  ``part_size`` (multipart part size in bytes, at least 5 MiB, default 8 MiB),
  ``max_retries`` (default 3);
* the keyword options given to :meth:`S3BlobStore.from_url` (same names);
* the standard environment variables, read by obstore: ``AWS_ENDPOINT_URL``,
  ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ...

Guarantees: a put is idempotent (the object is not written again when it
exists: its name is its digest); uploads are atomic (S3 never shows a partial
object) and large ones are multipart, streamed in constant memory; reads
verify the digest unless asked not to (``corrupt`` when the bytes no longer
match). Secrets never appear in errors: every message names the bucket by its
redacted URL and scrubs the configured secret values.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import obstore
from obstore.store import S3Store

from keepstone.errors import ErrorCode, StorageError
from keepstone.schemas._base import _check_digest, sha256_digest
from keepstone.schemas.artifacts import BlobInfo
from keepstone.schemas.common import Page

MIN_PART_SIZE = 5 << 20
"""S3's smallest multipart part (all but the last)."""

DEFAULT_PART_SIZE = 8 << 20

COPY_LIMIT = 5 << 30
"""Largest object S3 copies in one request; bigger streamed blobs are
re-streamed from their temporary object instead."""

OPTIONS = (
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
    "virtual_hosted_style",
    "part_size",
    "max_retries",
)
_SECRET_OPTIONS = ("secret_access_key", "session_token", "access_key_id")
_REFUSALS = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")


def _redact(url: str) -> str:
    from keepstone.urls import redact

    return redact(url)


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise StorageError("config", f"{name} is true or false (got {value!r})", {"option": name})


def _size(value: Any, name: str, minimum: int) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise StorageError(
            "config", f"{name} is a whole number (got {value!r})", {"option": name}
        ) from exc
    if number < minimum:
        raise StorageError(
            "config", f"{name} must be at least {minimum} (got {number})", {"option": name}
        )
    return number


class S3BlobStore:
    """Blobs in one bucket prefix (see the module docstring).

    It implements :class:`keepstone.ports.BlobStore` on its own, and gives the
    PostgreSQL backend the lower-level calls it needs (``exists``,
    ``put_bytes``, ``read``, ``open_stream``, ``delete``).
    """

    def __init__(
        self, store: S3Store, url: str, *, part_size: int, secrets: tuple[str, ...] = ()
    ) -> None:
        self._store = store
        self.url = _redact(url)
        """The bucket URL with its secrets masked: safe to print."""
        self.part_size = part_size
        self._secrets = tuple(s for s in secrets if s)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3BlobStore:
        """Configure (without any request) the store of ``s3://bucket/prefix``.

        Raises:
            StorageError: ``config`` for a URL that is not ``s3://bucket[/prefix]``
                or an unknown or malformed option.
        """
        parts = urlsplit(url)
        safe = _redact(url)
        if parts.scheme.lower() != "s3" or not parts.netloc or "@" in parts.netloc:
            raise StorageError(
                "config",
                f"an S3 blob store URL reads s3://bucket/prefix (got {safe})",
                {"url": safe},
            )
        merged: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        merged.update({k: v for k, v in options.items() if v is not None})
        unknown = sorted(set(merged) - set(OPTIONS))
        if unknown:
            raise StorageError(
                "config",
                f"unknown S3 option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}",
                {"unknown": unknown, "known": list(OPTIONS)},
            )
        config: dict[str, Any] = {}
        for name in ("endpoint", "region", "access_key_id", "secret_access_key", "session_token"):
            if merged.get(name):
                config[name] = str(merged[name])
        endpoint = str(
            config.get("endpoint")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or os.environ.get("AWS_ENDPOINT")
            or ""
        )
        default_http = endpoint.startswith("http://") or _flag(
            os.environ.get("AWS_ALLOW_HTTP", "false"), "AWS_ALLOW_HTTP"
        )
        allow_http = _flag(merged.get("allow_http", default_http), "allow_http")
        if "virtual_hosted_style" in merged:
            config["virtual_hosted_style_request"] = _flag(
                merged["virtual_hosted_style"], "virtual_hosted_style"
            )
        part_size = _size(merged.get("part_size", DEFAULT_PART_SIZE), "part_size", MIN_PART_SIZE)
        retries = _size(merged.get("max_retries", 3), "max_retries", 0)
        prefix = parts.path.strip("/") or None
        secrets = tuple(str(merged.get(n) or "") for n in _SECRET_OPTIONS)
        try:
            store = S3Store(
                parts.netloc,
                prefix=prefix,
                config=config,  # type: ignore[arg-type]
                client_options={"allow_http": allow_http, "connect_timeout": "10s"},
                retry_config={
                    "max_retries": retries,
                    "retry_timeout": timedelta(seconds=60),
                    "backoff": {
                        "init_backoff": timedelta(milliseconds=100),
                        "max_backoff": timedelta(seconds=5),
                        "base": 2,
                    },
                },
            )
        except Exception as exc:  # obstore refuses the configuration
            raise StorageError(
                "config",
                f"cannot configure the S3 store {safe}: {_scrub(str(exc), secrets)}",
                {"url": safe},
            ) from None
        return cls(store, url, part_size=part_size, secrets=secrets)

    # ------------------------------------------------------------------ names and errors

    @staticmethod
    def key(digest: str) -> str:
        """The object name of ``digest`` (relative to the prefix)."""
        return "sha256/" + digest.partition(":")[2]

    def _error(self, exc: BaseException, during: str, digest: str | None = None) -> StorageError:
        text = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "", self._secrets)
        reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        code: ErrorCode = "unavailable"
        raw = str(exc)
        if "NoSuchBucket" in raw:
            code, reason = "config", "the bucket does not exist"
        elif any(c in raw for c in _REFUSALS) or type(exc).__name__ in (
            "PermissionDeniedError",
            "UnauthenticatedError",
        ):
            code = "config"
            reason = "the server refused the credentials or the access: " + reason
        details: dict[str, Any] = {"url": self.url, "during": during}
        if digest is not None:
            details["digest"] = digest
        return StorageError(code, f"S3 store {self.url} failed {during}: {reason}", details)

    # ------------------------------------------------------------------ low level

    async def check(self) -> None:
        """One request proving the bucket answers (``config`` if it does not exist)."""
        try:
            stream = obstore.list(self._store, "sha256/", chunk_size=1)
            async for _ in stream:
                break
        except Exception as exc:
            raise self._error(exc, "listing the bucket") from None

    async def size(self, digest: str) -> int | None:
        """The size of the object of ``digest``, or ``None`` if it is absent."""
        try:
            meta = await obstore.head_async(self._store, self.key(digest))
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise self._error(exc, "reading object metadata", digest) from None
            return None
        except Exception as exc:
            raise self._error(exc, "reading object metadata", digest) from None
        return int(meta["size"])

    async def exists(self, digest: str) -> bool:
        """Whether the object of ``digest`` exists."""
        return await self.size(digest) is not None

    async def put_bytes(self, digest: str, data: bytes) -> bool:
        """Store ``data`` under ``digest`` unless the object exists; ``True`` if uploaded.

        Data larger than the part size goes up as a multipart upload.
        """
        if await self.size(digest) is not None:
            return False
        try:
            if len(data) > self.part_size:
                await obstore.put_async(
                    self._store,
                    self.key(digest),
                    _pieces(data, self.part_size),
                    chunk_size=self.part_size,
                    max_concurrency=4,
                )
            else:
                await obstore.put_async(self._store, self.key(digest), data, use_multipart=False)
        except Exception as exc:
            raise self._error(exc, "uploading", digest) from None
        return True

    async def read(self, digest: str) -> bytes | None:
        """The bytes of ``digest`` (unverified), or ``None`` if absent."""
        try:
            result = await obstore.get_async(self._store, self.key(digest))
            return bytes(await result.bytes_async())
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise self._error(exc, "downloading", digest) from None
            return None
        except Exception as exc:
            raise self._error(exc, "downloading", digest) from None

    async def open_stream(self, digest: str, chunk_size: int) -> AsyncIterator[bytes]:
        """The bytes of ``digest`` in chunks of ``chunk_size`` (unverified).

        Raises:
            StorageError: ``not_found`` if the object is absent.
        """
        try:
            result = await obstore.get_async(self._store, self.key(digest))
        except FileNotFoundError as exc:
            if "NoSuchBucket" in str(exc):
                raise self._error(exc, "downloading", digest) from None
            raise StorageError(
                "not_found", f"blob {digest} does not exist in {self.url}", {"digest": digest}
            ) from None
        except Exception as exc:
            raise self._error(exc, "downloading", digest) from None
        pending = bytearray()
        try:
            async for buf in result.stream(min_chunk_size=chunk_size):
                pending += memoryview(buf)
                while len(pending) >= chunk_size:
                    yield bytes(pending[:chunk_size])
                    del pending[:chunk_size]
        except StorageError:
            raise
        except Exception as exc:
            raise self._error(exc, "downloading", digest) from None
        if pending:
            yield bytes(pending)

    async def upload_stream(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        """Stream ``chunks`` into the bucket in constant memory (multipart), then
        name the object by its digest; idempotent."""
        hasher = hashlib.sha256()
        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                hasher.update(chunk)
                size += len(chunk)
                yield chunk

        temp = f"tmp/{uuid.uuid4().hex}"
        try:
            await obstore.put_async(
                self._store, temp, counted(), chunk_size=self.part_size, max_concurrency=4
            )
        except StorageError:
            raise
        except Exception as exc:
            if isinstance(exc.__cause__, StorageError):
                raise exc.__cause__ from None
            raise self._error(exc, "uploading a stream") from None
        digest = "sha256:" + hasher.hexdigest()
        try:
            if await self.size(digest) is None:
                if size <= COPY_LIMIT:
                    await obstore.copy_async(self._store, temp, self.key(digest))
                else:
                    source = await obstore.get_async(self._store, temp)
                    await obstore.put_async(
                        self._store,
                        self.key(digest),
                        source.stream(min_chunk_size=self.part_size),
                        chunk_size=self.part_size,
                        max_concurrency=4,
                    )
        except StorageError:
            raise
        except Exception as exc:
            raise self._error(exc, "naming an uploaded stream", digest) from None
        finally:
            # A leftover under tmp/ is harmless; a bucket lifecycle rule can expire it.
            with contextlib.suppress(Exception):
                await obstore.delete_async(self._store, temp)
        return BlobInfo(digest=digest, size=size)

    async def delete(self, digest: str) -> None:
        """Remove the object of ``digest`` (no error if absent)."""
        try:
            await obstore.delete_async(self._store, self.key(digest))
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._error(exc, "deleting", digest) from None

    async def write_raw(self, digest: str, data: bytes) -> None:
        """Overwrite the object of ``digest`` with ``data`` as given (tests of
        verification: keepstone never calls it)."""
        try:
            await obstore.put_async(self._store, self.key(digest), data, use_multipart=False)
        except Exception as exc:
            raise self._error(exc, "uploading", digest) from None

    # ------------------------------------------------------------------ the BlobStore port

    async def put(self, data: bytes) -> BlobInfo:
        data = bytes(data)
        digest = sha256_digest(data)
        await self.put_bytes(digest, data)
        return BlobInfo(digest=digest, size=len(data))

    async def put_stream(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        return await self.upload_stream(chunks)

    async def get(self, digest: str, *, verify: bool = True) -> bytes:
        _valid(digest)
        data = await self.read(digest)
        if data is None:
            raise StorageError(
                "not_found", f"blob {digest} does not exist in {self.url}", {"digest": digest}
            )
        if verify:
            _verify(digest, sha256_digest(data))
        return data

    async def stream(self, digest: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        _valid(digest)
        if chunk_size < 1:
            raise StorageError("invalid", "chunk_size must be positive", {"chunk_size": chunk_size})
        hasher = hashlib.sha256()
        async for chunk in self.open_stream(digest, chunk_size):
            hasher.update(chunk)
            yield chunk
        _verify(digest, "sha256:" + hasher.hexdigest())

    async def stat(self, digest: str) -> BlobInfo:
        _valid(digest)
        size = await self.size(digest)
        if size is None:
            raise StorageError(
                "not_found", f"blob {digest} does not exist in {self.url}", {"digest": digest}
            )
        return BlobInfo(digest=digest, size=size)

    async def list(self, *, cursor: str | None = None, limit: int = 100) -> Page[BlobInfo]:
        if limit < 1:
            raise StorageError("invalid", "limit must be at least 1", {"limit": limit})
        items: list[BlobInfo] = []
        start = None if cursor is None else self.key(_valid(cursor))
        try:
            stream = obstore.list(self._store, "sha256/", offset=start, chunk_size=limit + 1)
            async for batch in stream:
                for meta in batch:
                    name = str(meta["path"]).rpartition("/")[2]
                    items.append(BlobInfo(digest="sha256:" + name, size=int(meta["size"])))
                if len(items) > limit:
                    break
        except Exception as exc:
            raise self._error(exc, "listing the bucket") from None
        items.sort(key=lambda b: b.digest)
        more = len(items) > limit
        items = items[:limit]
        return Page[BlobInfo](items=items, next_cursor=items[-1].digest if more else None)


def _pieces(data: bytes, size: int) -> list[memoryview]:
    view = memoryview(data)
    return [view[i : i + size] for i in range(0, len(data), size)]


def _valid(digest: str) -> str:
    try:
        return _check_digest(digest) if isinstance(digest, str) else _check_digest("")
    except ValueError as exc:
        raise StorageError(
            "invalid", f"invalid digest {digest!r}: {exc}", {"digest": digest}
        ) from None


def _verify(digest: str, actual: str) -> None:
    if actual != digest:
        raise StorageError(
            "corrupt",
            f"blob {digest} is damaged: its bytes hash to {actual}",
            {"digest": digest, "actual": actual},
        )


def _scrub(text: str, secrets: tuple[str, ...] | Mapping[str, Any]) -> str:
    values = secrets.values() if isinstance(secrets, Mapping) else secrets
    for secret in values:
        if secret and isinstance(secret, str) and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
