"""The backend SPI: a record engine that applies write batches atomically.

Every keepstone backend implements :class:`RecordEngine`; the domain ports
(runs, artifacts, memory, ...) are implemented once, above it, in
``keepstone.core``. That is DESIGN.md's "writes as data": a call
becomes a :class:`WriteBatch` (rows to put or append, blobs to store, the
preconditions they depend on, and the audit records that describe them), and
the engine applies the whole batch in one transaction or not at all.

Rules every engine follows:

* ``apply`` is atomic and durable: when it returns, the batch is on disk
  (fsync'd or committed with ``synchronous=FULL``); when it raises, nothing of
  the batch is visible.
* Preconditions are checked inside the transaction, in op order, against the
  state as modified by earlier ops of the same batch. A failed precondition
  raises its ``StorageError`` and the batch is not applied. Concurrent batches
  may share a transaction (group commit) but a refused batch never fails its
  neighbours.
* Tables with ``seq`` get a store-wide, strictly increasing ``seq`` per table,
  assigned in commit order.
* Audit drafts get ``seq``, ``prev_hash`` and ``hash`` in commit order
  (:func:`keepstone.schemas.audit.audit_hash`), in the same transaction.
* Reads return canonical JSON bytes (sorted keys) of the stored rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from keepstone.errors import ErrorCode
from keepstone.schemas.artifacts import BlobInfo


@dataclass(frozen=True, slots=True)
class Table:
    """How a kind of record is stored and indexed.

    Attributes:
        name: table name (lowercase, ``[a-z_]+``).
        key: the field(s) forming the primary key; joined with ``:`` into
            the row's key string. ``("seq",)`` means the engine-assigned seq.
        seq: the engine assigns ``row["seq"]`` on append.
        columns: fields that can be filtered and ordered on; dotted names
            reach into objects (``"payload.kind"``). ``seq`` is an integer.
        tags: a field holding a flat JSON object (metadata, labels) whose
            top-level keys can be filtered by equality.
        text: fields whose text goes into the full-text index.
        partition: a field that groups rows (e.g. one JSONL per run); a
            layout hint for file engines, ignored by others.
    """

    name: str
    key: tuple[str, ...] = ("id",)
    seq: bool = False
    columns: tuple[str, ...] = ()
    tags: str | None = None
    text: tuple[str, ...] = ()
    partition: str | None = None

    @property
    def keyed_by_seq(self) -> bool:
        """Whether the key is the engine-assigned ``seq`` alone (audit, changes,
        log lines): such rows are never looked up by content before an append."""
        return self.key == ("seq",)

    def key_of(self, row: Mapping[str, Any]) -> str:
        """The key string of ``row``."""
        if len(self.key) == 1:
            return str(row[self.key[0]])
        return ":".join(str(row[k]) for k in self.key)

    @staticmethod
    def value(row: Mapping[str, Any], column: str) -> Any:
        """The value of ``column`` in ``row``; dotted names reach into objects
        (``"payload.kind"``). Missing values are ``None``."""
        if "." not in column:
            return row.get(column)
        value: Any = row
        for part in column.split("."):
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value


@dataclass(frozen=True, slots=True)
class Cmp:
    """A comparison in a ``where`` filter: ``op`` is one of ``> >= < <=``."""

    op: Literal[">", ">=", "<", "<="]
    value: Any


@dataclass(frozen=True, slots=True)
class In:
    """Membership in a ``where`` filter."""

    values: tuple[Any, ...]


Where = Mapping[str, Any]
"""Column filters: a plain value means equality (``None`` means IS NULL),
:class:`Cmp` a comparison, a tuple of :class:`Cmp` all of them (a range),
:class:`In` membership."""


# --------------------------------------------------------------------------- batch ops


@dataclass(slots=True)
class Put:
    """Insert or replace a row by key.

    ``expect="absent"`` refuses (``conflict``) if the key exists;
    ``expect="present"`` refuses (``not_found``) if it does not.
    """

    table: Table
    row: dict[str, Any]
    expect: Literal["any", "absent", "present"] = "any"


@dataclass(slots=True)
class Append:
    """Append a row to a ``seq`` table; the engine assigns ``seq``.

    When ``idempotent`` and a row with the same key exists: identical content
    (ignoring ``seq``) is a no-op that reports the existing seq; different
    content is a ``conflict``.
    """

    table: Table
    row: dict[str, Any]
    idempotent: bool = False


@dataclass(slots=True)
class Delete:
    """Remove a row by key (no error if absent)."""

    table: Table
    key: str


@dataclass(slots=True)
class Check:
    """A precondition on one row.

    With ``exists=True`` the row must exist and, for each ``equals`` field,
    hold that value; with ``exists=False`` it must not exist. Failure raises
    ``StorageError(code, message, details)``.
    """

    table: Table
    key: str
    code: ErrorCode
    message: str
    exists: bool = True
    equals: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CheckNone:
    """A precondition that no row matches ``where`` (e.g. a name is free)."""

    table: Table
    where: dict[str, Any]
    code: ErrorCode
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class BlobPut:
    """Store bytes under their digest (idempotent) in the batch's transaction."""

    digest: str
    data: bytes


@dataclass(slots=True)
class Restore:
    """Write a row exactly as given, ``seq`` and audit fields included.

    Used only to import a snapshot into an empty store. For a ``seq`` table
    the table's counter moves up to at least ``row["seq"]``; for the audit
    table the chain head becomes the restored row's ``hash`` when its seq is
    the highest, so later audit records chain on. No precondition is checked
    and no audit draft is completed.
    """

    table: Table
    row: dict[str, Any]


@dataclass(slots=True)
class SetCounter:
    """Set a ``seq`` table's counter to exactly ``seq``, up or down.

    For the audit table ``head`` becomes the chain head (the ``hash`` of
    record ``seq``; ``None`` means the genesis hash, as for an empty chain);
    for other tables ``head`` must be ``None``. Used only by snapshot import:
    to carry the source's counters over (after a purge they stand above the
    highest stored seq) and to put them back to zero when a failed import is
    undone. No precondition is checked and no row is written.
    """

    table: Table
    seq: int
    head: str | None = None


Op = Put | Append | Delete | Check | CheckNone | BlobPut | Restore | SetCounter


@dataclass(slots=True)
class WriteBatch:
    """Ops applied in order, plus audit drafts, all in one transaction.

    Audit drafts are audit-record fields without ``seq``, ``prev_hash`` and
    ``hash``; the engine completes and chains them. A row of a ``Put``,
    ``Append`` or ``Restore`` that is not JSON, or whose canonical JSON is
    longer than ``max_record_bytes``, makes the batch ``invalid``.
    """

    ops: list[Op] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    max_record_bytes: int | None = None
    audit_only_changes: bool = False
    """Drop the audit drafts when the ops change nothing (every ``Append`` an
    idempotent repeat): retrying a write does not audit it twice."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What ``apply`` assigned: one entry per op (the seq for ``Append``,
    else ``None``) and the seqs of the audit records."""

    seqs: list[int | None]
    audit_seqs: list[int]


class RecordEngine(Protocol):
    """Storage primitives a backend provides. See the module docstring."""

    name: str
    """Backend name for messages (``"memory"``, ``"sqlite"``, ...)."""

    capabilities: frozenset[str]
    """What the engine offers beyond the contract, by name (the engine
    conformance suite, :mod:`keepstone.testing.engine`, lists them in
    ``CAPABILITIES`` and runs the tests each one promises): ``"durable"``
    (data survives close and reopen), ``"multi_process"`` (several processes
    may open one store), ``"blob_files"`` (large blobs live in files),
    ``"fts"`` (``find(text=...)`` is answered from an index; every engine
    must answer text queries, with the words of
    :func:`keepstone.engine.match.words`)."""

    async def apply(self, batch: WriteBatch) -> BatchResult:
        """Apply ``batch`` atomically and durably.

        Raises:
            StorageError: the first failing precondition's error; ``conflict``
                for an ``absent`` put on an existing key or a differing
                idempotent append; ``unavailable`` if the engine is closed.
        """
        ...

    async def get(self, table: Table, key: str) -> bytes | None:
        """The row with ``key``, or ``None``."""
        ...

    async def get_many(self, table: Table, keys: Sequence[str]) -> dict[str, bytes]:
        """Rows by key; missing keys are left out."""
        ...

    async def find(
        self,
        table: Table,
        where: Where | None = None,
        *,
        order: tuple[str, ...] = (),
        after: tuple[Any, ...] | None = None,
        desc: bool = False,
        limit: int | None = None,
        tags: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> list[bytes]:
        """Rows matching every filter, ordered by ``order`` then the key.

        Args:
            where: column filters (see :data:`Where`).
            order: columns to order by; the key always breaks ties.
            after: keyset cursor: the ``order`` values then the key of the
                last row seen; only rows strictly after it are returned.
            desc: descending order.
            limit: at most this many rows.
            tags: equality on top-level keys of the table's ``tags`` field
                (values compared as JSON).
            text: full-text query: every word must occur in a ``text`` field
                (case-insensitive, whole words).
        """
        ...

    async def count(self, table: Table, where: Where | None = None) -> int:
        """Number of rows matching ``where``."""
        ...

    async def last_seq(self, table: Table) -> int:
        """The highest seq assigned in a ``seq`` table (0 when empty)."""
        ...

    async def blob_get(self, digest: str) -> bytes | None:
        """The bytes stored under ``digest`` (unverified), or ``None``."""
        ...

    async def blob_get_many(self, digests: Sequence[str]) -> dict[str, bytes]:
        """The bytes under each stored digest (unverified); missing ones are
        left out. One round trip where the engine can (a snapshot's parts)."""
        ...

    def blob_stream(self, digest: str, chunk_size: int) -> AsyncIterator[bytes]:
        """The bytes under ``digest`` in chunks (unverified).

        Raises:
            StorageError: ``not_found`` if absent (on first iteration).
        """
        ...

    async def blob_put_stream(self, chunks: AsyncIterable[bytes]) -> BlobInfo:
        """Store a stream of bytes durably, in constant memory; idempotent."""
        ...

    async def blob_size(self, digest: str) -> int | None:
        """Size of the blob, or ``None`` if absent."""
        ...

    async def blob_list(self, after: str | None, limit: int) -> list[BlobInfo]:
        """Blobs in digest order, strictly after ``after``."""
        ...

    async def blob_delete(self, digest: str) -> None:
        """Remove a blob's bytes (review-gated purges and gc only)."""
        ...

    async def close(self) -> None:
        """Release connections and threads; further calls raise ``unavailable``."""
        ...


class EngineFactory(Protocol):
    """``"module:function"`` registered for a URL scheme: opens the engine at ``url``.

    :func:`keepstone.open` looks the scheme up (built-in schemes, then the
    ``keepstone.backends`` entry point group), calls the factory, and builds
    the domain (:mod:`keepstone.core`) over the engine it returns.

    Raises:
        StorageError: ``config`` for a bad URL or option; ``unavailable``
            when the backend cannot be reached.
    """

    async def __call__(self, url: str, *, options: dict[str, Any]) -> RecordEngine: ...
