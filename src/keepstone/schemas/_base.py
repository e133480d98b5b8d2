"""Base model, canonical JSON, digests, ids and clocks shared by every layer.

These are pure helpers: no I/O, no backend imports. Backends may import them.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Protocol

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    ValidationInfo,
)

from keepstone.errors import StorageError

SCHEMA_VERSION = 2
"""The record schema version this keepstone writes and the newest it reads.

1: keepstone 0.1. 2: audit records commit to the rows they wrote (``writes``)."""

MAX_JSON_DEPTH = 64
"""Deepest nesting accepted inside free-form JSON values (metadata, payloads)."""

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")
MAX_ID_LENGTH = 200


def _trusted(info: ValidationInfo) -> bool:
    """Reading rows keepstone stored itself: they passed every check on the way in."""
    context = info.context
    return isinstance(context, dict) and context.get("trusted") is True


def _check_id(value: str) -> str:
    if not value or len(value) > MAX_ID_LENGTH:
        raise ValueError(f"an id must be 1 to {MAX_ID_LENGTH} characters")
    if not value[0].isalnum() or not value.isascii():
        raise ValueError("an id must start with a letter or digit")
    bad = set(value) - _ID_CHARS
    if bad:
        raise ValueError(f"an id may hold only letters, digits and . _ : - (found {sorted(bad)!r})")
    return value


def _check_digest(value: str) -> str:
    if (
        len(value) != 71
        or not value.startswith("sha256:")
        or any(c not in "0123456789abcdef" for c in value[7:])
    ):
        raise ValueError("a digest is 'sha256:' followed by 64 lowercase hex digits")
    return value


_LEAVES = (bool, str)
_ARRAYS = (list, tuple)
"""Type tuples for the hot checks below (``A | B`` builds a union at each call)."""


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, _LEAVES):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and Infinity are not JSON; store them as strings or null")
        return
    if isinstance(value, _ARRAYS):
        for item in value:
            _check_json(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"JSON object keys must be strings, not {type(key).__name__}")
            _check_json(item, depth + 1)
        return
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def _json_value(value: Any, info: ValidationInfo) -> Any:
    if not _trusted(info):
        _check_json(value)
    return value


ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
"""A record id: 1-200 ASCII letters, digits, ``.``, ``_``, ``:``, ``-``; starts alphanumeric."""

Digest = Annotated[str, StringConstraints(pattern=DIGEST_PATTERN)]
"""A content digest: ``sha256:<64 lowercase hex>``."""


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``: fixed width, sortable as text."""
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


UtcDatetime = Annotated[
    AwareDatetime,
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
"""A timezone-aware datetime (naive datetimes are refused), serialised in UTC
as fixed-width RFC 3339 (``2026-01-02T03:04:05.000006Z``)."""

JsonObject = Annotated[dict[str, Any], AfterValidator(_json_value)]
"""A JSON object: string keys, finite numbers, nesting at most MAX_JSON_DEPTH."""


Name = Annotated[str, Field(min_length=1, max_length=512)]
"""A human name (run name, artifact name, kind): 1-512 characters."""


class Model(BaseModel):
    """Base of every keepstone model: immutable, strict about unknown fields."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        validate_default=False,
        ser_json_timedelta="float",
    )


class Record(Model):
    """A persisted record: carries the schema version it was written with."""

    schema_version: int = SCHEMA_VERSION
    KIND: ClassVar[str] = "record"

    def canonical_json(self) -> bytes:
        """The record's canonical bytes: sorted keys, UTC RFC 3339, no NaN."""
        return canonical_json(self.model_dump(mode="json"))


def canonical_json(value: Any) -> bytes:
    """Serialise a JSON-ready value canonically (sorted keys, compact, UTF-8).

    Raises:
        StorageError: ``invalid`` when the value holds NaN, Infinity or a
            non-JSON type.
    """
    try:
        _check_json(value)
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (ValueError, TypeError, orjson.JSONEncodeError) as exc:
        raise StorageError("invalid", f"value is not canonical JSON: {exc}") from exc


def dumps(value: Any) -> bytes:
    """Fast canonical dump of a value already known to be valid JSON."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def invalid_from(exc: ValidationError, what: str) -> StorageError:
    """Turn a pydantic ValidationError into a readable ``invalid`` StorageError."""
    errors = [
        {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    first = errors[0] if errors else {"field": "", "problem": str(exc)}
    where = f" at {first['field']}" if first["field"] else ""
    return StorageError("invalid", f"invalid {what}{where}: {first['problem']}", {"errors": errors})


@dataclass(frozen=True)
class Limits:
    """Input size limits; larger input is refused with ``invalid``.

    Attributes:
        max_blob_bytes: largest blob or artifact content.
        max_record_bytes: largest single record, serialised.
        max_batch: most events or log lines in one append.
        max_snapshot_bytes: most bytes a snapshot archive (``.tar``, possibly
            compressed) may extract into the temporary directory an import
            reads it from: the sum of its entries' sizes, as their headers
            declare them, counted before each entry is written.
        max_snapshot_entries: most entries (files and directories) in a
            snapshot archive or directory an import reads.
    """

    max_blob_bytes: int = 1 << 40
    max_record_bytes: int = 16 << 20
    max_batch: int = 100_000
    max_snapshot_bytes: int = 64 << 30
    max_snapshot_entries: int = 1_000_000


current_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "keepstone_actor", default=None
)
"""Set by :func:`keepstone.acting_as` to name who makes the changes."""


# --------------------------------------------------------------------------- clock and ids


class Clock(Protocol):
    """Source of the current time (UTC, timezone-aware)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock for tests: starts at ``start`` and advances ``step_us`` per call."""

    def __init__(self, start: datetime | None = None, step_us: int = 1000) -> None:
        self._t = (start or datetime(2026, 1, 1, tzinfo=UTC)).astimezone(UTC)
        self._step = step_us
        self._lock = threading.Lock()

    def now(self) -> datetime:
        from datetime import timedelta

        with self._lock:
            t = self._t
            self._t = t + timedelta(microseconds=self._step)
            return t


class IdSource(Protocol):
    """Source of new record ids: ``new_id("run")`` -> ``"run_..."``."""

    def new_id(self, prefix: str) -> str: ...


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class UlidIds:
    """Time-sortable ids: ``<prefix>_`` + 26 Crockford base32 chars (ULID layout).

    Monotonic within a process: two ids made in the same millisecond still sort
    in creation order.
    """

    def __init__(self, now_ms: Callable[[], int] | None = None) -> None:
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new_id(self, prefix: str) -> str:
        with self._lock:
            ms = self._now_ms()
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_rand + 1
            else:
                rand = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms, self._last_rand = ms, rand
        value = (ms << 80) | (rand & ((1 << 80) - 1))
        chars = []
        for _ in range(26):
            chars.append(_CROCKFORD[value & 31])
            value >>= 5
        return f"{prefix}_{''.join(reversed(chars))}"


class SequentialIds:
    """Deterministic ids for tests and reproducible exports: ``run_000001``..."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def new_id(self, prefix: str) -> str:
        with self._lock:
            self._n += 1
            return f"{prefix}_{self._n:06d}"


TRUSTED: dict[str, Any] = {"trusted": True}
"""Validation context for rows keepstone stored itself (see ``_trusted``)."""
