"""The one place where asyncpg and socket exceptions become :class:`StorageError`.

Mapping (SQLSTATE class or asyncpg exception)::

    lost connection, refused connection, timeout,
    server shutting down (57P0x), too many connections   -> unavailable
    40001 serialization failure, 40P01 deadlock          -> retried, then conflict
    23xxx integrity constraint violation                 -> conflict
    22xxx data exception (NUL in text, out of range),
    a value asyncpg cannot encode                        -> invalid
    28xxx bad credentials, 3D000 unknown database,
    42501 insufficient privilege                         -> config
    42P01 undefined table, 42703 undefined column        -> corrupt (the schema is damaged)
    25006 read-only transaction (a standby)              -> unavailable
    53xxx insufficient resources (disk full, memory)     -> unavailable
    57014 statement cancelled (timeout)                  -> unavailable
    anything else                                        -> unavailable

Messages name the server by its redacted URL (:func:`keepstone.store.redact`),
never with a password. Callers use :func:`translate` (a context manager) or
:func:`storage_error`, always chaining the original with ``raise ... from exc``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import asyncpg

from keepstone.errors import ErrorCode, StorageError

_RETRYABLE = frozenset({"40001", "40P01"})

_DISCONNECT_TYPES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a server error (``None`` for client-side errors)."""
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def is_retryable(exc: BaseException) -> bool:
    """A serialization failure or deadlock: the transaction can be run again."""
    return sqlstate(exc) in _RETRYABLE


def is_disconnect(exc: BaseException) -> bool:
    """The connection is gone (or never came): the statement did not run, or
    its outcome is unknown if it was a COMMIT."""
    if isinstance(exc, asyncpg.exceptions.DataError) and not isinstance(
        exc, asyncpg.PostgresConnectionError
    ):
        return False
    if isinstance(exc, asyncpg.InterfaceError):
        # asyncpg raises InterfaceError both for a closed connection and for
        # misuse; only the former is a disconnect.
        text = str(exc).lower()
        return "closed" in text or "connection" in text
    return isinstance(exc, _DISCONNECT_TYPES)


def storage_error(exc: BaseException, *, where: str, during: str) -> StorageError:
    """The :class:`StorageError` for a driver exception raised ``during`` an
    operation on the server ``where`` (a redacted URL)."""
    state = sqlstate(exc)
    details: dict[str, Any] = {"server": where, "during": during}
    if state is not None:
        details["sqlstate"] = state
    reason = _reason(exc)
    code: ErrorCode
    if state is not None and state in _RETRYABLE:
        code = "conflict"
        message = f"PostgreSQL kept refusing the transaction as conflicting ({reason}); retry"
    elif state is not None and state.startswith("23"):
        code, message = "conflict", f"PostgreSQL refused a write ({reason})"
    elif state is not None and state.startswith("22"):
        code, message = "invalid", f"a value cannot be stored in PostgreSQL ({reason})"
    elif isinstance(exc, asyncpg.exceptions.DataError) or (
        isinstance(exc, asyncpg.InterfaceError) and not is_disconnect(exc)
    ):
        code, message = "invalid", f"a value cannot be sent to PostgreSQL ({reason})"
    elif state is not None and (state.startswith("28") or state in ("3D000", "42501")):
        code, message = "config", f"PostgreSQL at {where} refused keepstone ({reason})"
    elif state in ("42P01", "42703", "3F000"):
        code = "corrupt"
        message = f"the keepstone schema at {where} is damaged or was altered ({reason})"
    elif is_disconnect(exc):
        code = "unavailable"
        message = f"PostgreSQL at {where} cannot be reached or dropped the connection ({reason})"
    else:
        code, message = "unavailable", f"PostgreSQL at {where} failed {during} ({reason})"
    return StorageError(code, message, details)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


@contextlib.contextmanager
def translate(where: str, during: str) -> Iterator[None]:
    """Re-raise any driver or socket exception as a :class:`StorageError`."""
    try:
        yield
    except StorageError:
        raise
    except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise storage_error(exc, where=where, during=during) from exc
