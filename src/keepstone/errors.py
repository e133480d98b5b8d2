"""The one exception type keepstone raises to callers.

Every failure a caller can see is a :class:`StorageError` with a stable
``code`` (for programs), a ``message`` (for people) and ``details`` (a JSON
object with the specifics). Driver exceptions never leak: each backend maps
them in one place, chaining the original with ``raise ... from exc``.

Codes (stable; new ones may be added, none will change meaning):

``not_found``
    The run, artifact, revision, blob, event, node, ... named does not exist.
``conflict``
    The store's current state refuses the write: a name already taken, an
    optimistic-concurrency revision that moved, an id re-used with different
    content, an illegal status transition, a sealed log stream.
``invalid``
    The input itself is wrong, whatever the store holds: a malformed id or
    digest, NaN in JSON, an unknown field, a value out of range, a payload
    over a configured limit.
``integrity``
    A reference points at nothing: a relationship or edge whose endpoint
    does not exist, a log line for a run that does not exist.
``corrupt``
    Stored data is damaged: a blob whose bytes no longer match its digest, a
    torn or malformed line, a broken audit chain.
``unsupported_schema``
    A record or a store was written by a newer keepstone (or an unknown
    format) and cannot be read safely.
``review_required``
    A lifecycle action needs an explicit approval marker and none was given.
``unavailable``
    The backend cannot be reached or was closed: a lost connection, a store
    used after ``close()``.
``config``
    The store was opened wrongly: an unknown URL scheme, a bad option, a
    missing optional dependency.
"""

from __future__ import annotations

from typing import Any, Final, Literal

ErrorCode = Literal[
    "not_found",
    "conflict",
    "invalid",
    "integrity",
    "corrupt",
    "unsupported_schema",
    "review_required",
    "unavailable",
    "config",
]

ERROR_CODES: Final[tuple[ErrorCode, ...]] = (
    "not_found",
    "conflict",
    "invalid",
    "integrity",
    "corrupt",
    "unsupported_schema",
    "review_required",
    "unavailable",
    "config",
)


class StorageError(Exception):
    """A keepstone failure: ``code``, ``message`` and ``details``.

    Args:
        code: one of :data:`ERROR_CODES`.
        message: a sentence for people; says what was wrong and, where it
            helps, what to do.
        details: JSON-serialisable specifics for programs (ids, fields,
            expected and actual values).
    """

    code: ErrorCode
    message: str
    details: dict[str, Any]

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown StorageError code {code!r}")
        super().__init__(code, message, details or {})
        self.code = code
        self.message = message
        self.details = dict(details or {})

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __repr__(self) -> str:
        return f"StorageError({self.code!r}, {self.message!r}, {self.details!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message, self.details))

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"code", "message", "details"}``, ready for JSON."""
        return {"code": self.code, "message": self.message, "details": dict(self.details)}


def not_found(what: str, ident: str, **details: Any) -> StorageError:
    """Build a ``not_found`` error for ``what`` (e.g. ``"run"``) named ``ident``."""
    return StorageError("not_found", f"{what} {ident!r} does not exist", {what: ident, **details})
