"""The one place where ``sqlite3`` exceptions become :class:`StorageError`.

Mapping (SQLite primary result codes)::

    SQLITE_BUSY, SQLITE_LOCKED (after retries)   -> unavailable
    SQLITE_CORRUPT, SQLITE_NOTADB                -> corrupt
    SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY   -> unavailable
    SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_AUTH    -> config
    SQLITE_CONSTRAINT (IntegrityError)           -> conflict
    InterfaceError (a value SQLite cannot bind)  -> invalid
    ProgrammingError (a closed connection)       -> unavailable
    anything else                                -> unavailable

Callers use :func:`translate` (a context manager) or :func:`storage_error`,
always chaining the original with ``raise ... from exc``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from keepstone.errors import ErrorCode, StorageError

SQLITE_PERM = 3
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_CONSTRAINT = 19
SQLITE_AUTH = 23
SQLITE_NOTADB = 26


def primary_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of ``exc`` (``None`` when unknown)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return SQLITE_BUSY
    return None


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is a transient lock conflict worth retrying."""
    return isinstance(exc, sqlite3.OperationalError) and primary_code(exc) in (
        SQLITE_BUSY,
        SQLITE_LOCKED,
    )


def storage_error(exc: BaseException, path: str, during: str) -> StorageError:
    """The :class:`StorageError` for a driver exception raised ``during`` an
    operation on the database at ``path``."""
    code = primary_code(exc)
    details: dict[str, Any] = {"path": path, "during": during, "sqlite_error": str(exc)}
    if code is not None:
        details["sqlite_code"] = code
    kind: ErrorCode
    if isinstance(exc, sqlite3.IntegrityError) or code == SQLITE_CONSTRAINT:
        kind, message = "conflict", f"the SQLite store refused a write ({exc})"
    elif code == SQLITE_NOTADB:
        kind = "corrupt"
        message = f"{path} is not a SQLite database (or its header is damaged)"
    elif code == SQLITE_CORRUPT:
        kind, message = "corrupt", f"the SQLite database {path} is damaged ({exc})"
    elif code in (SQLITE_BUSY, SQLITE_LOCKED):
        kind = "unavailable"
        message = f"the SQLite database {path} stayed locked by another writer ({exc})"
    elif code == SQLITE_FULL:
        kind, message = "unavailable", f"the disk holding {path} is full ({exc})"
    elif code in (SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_AUTH):
        kind, message = "config", f"cannot open the SQLite database {path} ({exc})"
    elif isinstance(exc, sqlite3.InterfaceError | OverflowError):
        kind, message = "invalid", f"a value cannot be stored in SQLite ({exc})"
    elif isinstance(exc, sqlite3.ProgrammingError):
        kind, message = "unavailable", f"the SQLite store at {path} is closed ({exc})"
    else:
        kind, message = "unavailable", f"the SQLite database {path} failed {during} ({exc})"
    return StorageError(kind, message, details)


@contextlib.contextmanager
def translate(path: str, during: str) -> Iterator[None]:
    """Re-raise any ``sqlite3.Error`` (or an unbindable value) as a StorageError."""
    try:
        yield
    except (sqlite3.Error, OverflowError) as exc:
        raise storage_error(exc, path, during) from exc
