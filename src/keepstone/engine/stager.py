"""The batch rules, once: a group of write batches turned into its net effect.

Every engine applies write batches the same way, and this module is that way.
An engine opens a group (its transaction, its journal entry, its lock), gives
the stager a :class:`CommittedView` of the state committed before the group,
and stages each batch in turn:

* ops apply in order, each seeing the committed state overlaid with the
  earlier ops of its batch and the batches accepted before it in the group;
* ``Put`` with ``expect`` refuses an existing (``conflict``) or missing
  (``not_found``) key; ``Check``/``CheckNone`` raise their own error;
* ``Append`` assigns the next seq of its table; an idempotent append of a key
  that exists with the same content (ignoring ``seq``) is a no-op reporting
  the stored seq, with other content a ``conflict``;
* ``Restore`` writes a row as given and moves the table's counter (and the
  audit head) up to it; ``SetCounter`` sets a counter (and the audit head)
  to exactly the value given, down as well as up;
* audit drafts are chained after the ops, in order, from the audit counter
  and head; the first draft of a batch records, in ``writes``, the digest of
  every row the batch put, appended or deleted (``None`` for a deletion), so
  that the chain commits to the data and not only to itself.

A refused batch raises its error and leaves nothing staged; its neighbours
are not affected. What the accepted batches leave is the group's
:class:`NetEffect`: per table, the final row (or ``None``, deleted) of every
key touched; the counters that moved; the blob changes. The engine writes
that, set-wise, and nothing else: it never re-implements a rule.

Engines that cannot read committed state cheaply one key at a time (SQL over
a connection, a server) first ask :func:`plan_reads` what the group needs,
fetch it in bulk, and hand the stager a :class:`PrefetchedView`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from keepstone.engine.match import check_row, matches
from keepstone.engine.spi import (
    Append,
    BatchResult,
    BlobPut,
    Check,
    CheckNone,
    Delete,
    Op,
    Put,
    Restore,
    SetCounter,
    Table,
    WriteBatch,
)
from keepstone.engine.tables import AUDIT
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps
from keepstone.schemas.audit import GENESIS_HASH, chain_audit, row_digest

# --------------------------------------------------------------------------- engine-side ops


@dataclass(slots=True)
class BlobStored:
    """Record a blob whose bytes an engine already made durable outside the
    batch (a file, an object); ``data`` is kept, when at hand, to write the
    bytes again if they vanished meanwhile."""

    digest: str
    size: int
    data: bytes | None = None


@dataclass(slots=True)
class BlobForget:
    """Forget a blob; the engine removes its bytes once the group commits."""

    digest: str


StagedOp = Op | BlobStored | BlobForget
"""What a batch may hold once an engine has prepared its blobs."""


@dataclass(slots=True)
class BlobChange:
    """The net change of one digest in a group.

    ``kind``: ``"put"`` (bytes in ``data``, stored with the rows),
    ``"stored"`` (bytes already durable elsewhere; ``data`` when at hand) or
    ``"forget"`` (remove the blob).
    """

    kind: Literal["put", "stored", "forget"]
    size: int = 0
    data: bytes | None = None


# --------------------------------------------------------------------------- committed state


class CommittedView(Protocol):
    """The state committed before the group, as the stager reads it."""

    def row(self, table: Table, key: str) -> dict[str, Any] | None:
        """The committed row of ``key`` (decoded), or ``None``."""
        ...

    def exists(self, table: Table, key: str) -> bool:
        """Whether ``key`` has a committed row."""
        ...

    def counter(self, name: str) -> tuple[int, str | None]:
        """The last seq assigned in table ``name`` (and, for the audit table,
        the chain head hash); ``(0, None)`` when nothing was assigned yet."""
        ...

    def matching(self, op: CheckNone, limit: int) -> Iterable[str]:
        """Keys of up to ``limit`` committed rows of ``op.table`` matching ``op.where``."""
        ...


@dataclass
class ReadPlan:
    """What staging a group reads of committed state (see :func:`plan_reads`)."""

    keys: dict[str, dict[str, Table]] = field(default_factory=dict)
    """Table name -> key -> table: rows whose committed content is needed."""
    absent: list[tuple[CheckNone, int]] = field(default_factory=list)
    """``CheckNone`` ops, each with how many matching committed keys to fetch.

    The counters (every seq table's, and the audit head) are always read:
    they are one small table."""


def plan_reads(batches: Iterable[Sequence[StagedOp]]) -> ReadPlan:
    """What staging ``batches`` (one sequence of ops each) will read.

    A ``CheckNone`` fetches one more matching key than the group could stage
    in its table: if that many committed rows match, at least one of them is
    not overridden by the group and the check fails, whatever the group does.
    """
    plan = ReadPlan()
    staged_keys: dict[str, int] = {}
    pending: list[CheckNone] = []
    for ops in batches:
        for op in ops:
            if isinstance(op, Check):
                plan.keys.setdefault(op.table.name, {})[op.key] = op.table
            elif isinstance(op, Put):
                staged_keys[op.table.name] = staged_keys.get(op.table.name, 0) + 1
                if op.expect != "any":
                    plan.keys.setdefault(op.table.name, {})[op.table.key_of(op.row)] = op.table
            elif isinstance(op, Append):
                staged_keys[op.table.name] = staged_keys.get(op.table.name, 0) + 1
                if not op.table.keyed_by_seq:
                    plan.keys.setdefault(op.table.name, {})[op.table.key_of(op.row)] = op.table
            elif isinstance(op, Delete | Restore):
                staged_keys[op.table.name] = staged_keys.get(op.table.name, 0) + 1
            elif isinstance(op, CheckNone):
                pending.append(op)
    plan.absent = [(op, staged_keys.get(op.table.name, 0) + 1) for op in pending]
    return plan


class PrefetchedView:
    """A :class:`CommittedView` over rows and counters an engine read in bulk.

    The engine fills ``rows`` (every key of the plan: canonical bytes or
    ``None``), ``counters`` and ``matches`` (per ``CheckNone``, by ``id(op)``).
    """

    __slots__ = ("counters", "matches", "rows")

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], bytes | dict[str, Any] | None] = {}
        self.counters: dict[str, tuple[int, str | None]] = {}
        self.matches: dict[int, list[str]] = {}

    def row(self, table: Table, key: str) -> dict[str, Any] | None:
        found = self._raw(table, key)
        if found is None or isinstance(found, dict):
            return found
        decoded: dict[str, Any] = orjson.loads(found)
        self.rows[(table.name, key)] = decoded
        return decoded

    def exists(self, table: Table, key: str) -> bool:
        return self._raw(table, key) is not None

    def _raw(self, table: Table, key: str) -> bytes | dict[str, Any] | None:
        try:
            return self.rows[(table.name, key)]
        except KeyError:
            raise RuntimeError(f"{table.name} {key!r} was not read before staging") from None

    def counter(self, name: str) -> tuple[int, str | None]:
        return self.counters.get(name, (0, None))

    def matching(self, op: CheckNone, limit: int) -> Iterable[str]:
        return self.matches.get(id(op), ())[:limit]


# --------------------------------------------------------------------------- the net effect

Staged = tuple[Table, dict[str, Any] | None, bytes | None]
"""One staged key: its table, its final row (``None``: deleted), the row's bytes."""


@dataclass
class NetEffect:
    """What a layer (one batch, or a group's accepted batches) changes."""

    rows: dict[str, dict[str, Staged]] = field(default_factory=dict)
    """Table name -> key -> the key's final state."""
    counters: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    """Counters (seq, and the audit head) as they stand after the layer."""
    blobs: dict[str, BlobChange] = field(default_factory=dict)
    """Digest -> its last change, in the order digests were first changed."""

    def merge(self, other: NetEffect) -> None:
        for name, staged in other.rows.items():
            self.rows.setdefault(name, {}).update(staged)
        self.counters.update(other.counters)
        self.blobs.update(other.blobs)

    def is_empty(self) -> bool:
        return not (self.rows or self.counters or self.blobs)


# --------------------------------------------------------------------------- the stager


class GroupStager:
    """Stages batches one after another over ``view`` (see the module docstring)."""

    def __init__(self, view: CommittedView) -> None:
        self.view = view
        self.group = NetEffect()
        self.accepted = 0
        self._batch = self.group
        self._max_bytes: int | None = None

    # ------------------------------------------------------------------ state

    def _staged(self, name: str, key: str) -> Staged | None:
        found = self._batch.rows.get(name)
        if found is not None:
            hit = found.get(key)
            if hit is not None:
                return hit
        found = self.group.rows.get(name)
        if found is not None:
            return found.get(key)
        return None

    def current(self, table: Table, key: str) -> dict[str, Any] | None:
        """The row of ``key`` as the batch being staged sees it."""
        staged = self._staged(table.name, key)
        if staged is not None:
            return staged[1]
        return self.view.row(table, key)

    def exists(self, table: Table, key: str) -> bool:
        staged = self._staged(table.name, key)
        if staged is not None:
            return staged[1] is not None
        return self.view.exists(table, key)

    def counter(self, name: str) -> tuple[int, str | None]:
        found = self._batch.counters.get(name)
        if found is None:
            found = self.group.counters.get(name)
        return self.view.counter(name) if found is None else found

    def _stage(self, table: Table, key: str, row: dict[str, Any] | None) -> None:
        body = None if row is None else dumps(row)
        self._batch.rows.setdefault(table.name, {})[key] = (table, row, body)

    def _stage_row(self, table: Table, key: str, row: dict[str, Any]) -> None:
        """Stage a caller's row: it must be JSON and fit the batch's limit."""
        try:
            body = dumps(row)
        except (TypeError, ValueError) as exc:
            raise StorageError(
                "invalid", f"a {table.name} record is not valid JSON text: {exc}", {}
            ) from exc
        limit = self._max_bytes
        if limit is not None and len(body) > limit:
            raise StorageError(
                "invalid",
                f"a {table.name} record of {len(body)} bytes exceeds the limit of {limit}",
                {"size": len(body), "limit": limit},
            )
        self._batch.rows.setdefault(table.name, {})[key] = (table, row, body)

    # ------------------------------------------------------------------ one batch

    def stage(self, batch: WriteBatch, ops: Sequence[StagedOp] | None = None) -> BatchResult:
        """Stage ``batch`` on top of the accepted ones; ``ops`` replaces its ops
        when the engine prepared them (blobs written ahead, say).

        Raises:
            StorageError: the batch's first failing precondition, or
                ``invalid`` for a row that is not JSON or is longer than
                ``batch.max_record_bytes``; nothing of the batch stays staged.
        """
        # The group's first batch stages straight into the (still empty) group.
        first = self.accepted == 0
        self._batch = self.group if first else NetEffect()
        self._max_bytes = batch.max_record_bytes
        try:
            result = self._run(
                batch.ops if ops is None else ops, batch.audit, batch.audit_only_changes
            )
        except BaseException:
            if first:
                self.group = NetEffect()
            self._batch = self.group
            raise
        if not first:
            self.group.merge(self._batch)
        self._batch = self.group
        self.accepted += 1
        return result

    def _run(
        self, ops: Sequence[StagedOp], audit: Sequence[dict[str, Any]], only_changes: bool
    ) -> BatchResult:
        seqs: list[int | None] = []
        for op in ops:
            if isinstance(op, Append):
                seqs.append(self._append(op))
                continue
            if isinstance(op, Put):
                self._put(op)
            elif isinstance(op, Check):
                if op.equals:
                    check_row(op, self.current(op.table, op.key))
                else:
                    check_row(op, {} if self.exists(op.table, op.key) else None)
            elif isinstance(op, Delete):
                self._stage(op.table, op.key, None)
            elif isinstance(op, CheckNone):
                self._check_none(op)
            elif isinstance(op, BlobPut):
                self._blob(op.digest, BlobChange("put", len(op.data), op.data))
            elif isinstance(op, BlobStored):
                self._blob(op.digest, BlobChange("stored", op.size, op.data))
            elif isinstance(op, BlobForget):
                self._blob(op.digest, BlobChange("forget"))
            elif isinstance(op, Restore):
                self._restore(op)
            elif isinstance(op, SetCounter):
                self._set_counter(op)
            else:
                raise StorageError("invalid", f"unknown write op {type(op).__name__}")
            seqs.append(None)
        audit_seqs: list[int] = []
        if only_changes and ops and self._batch.is_empty():
            audit = ()  # an idempotent repeat: nothing to audit
        if audit and self._batch.rows:
            audit = [{**audit[0], "writes": self._writes()}, *audit[1:]]
        for draft in audit:
            last, head = self.counter(AUDIT.name)
            record = chain_audit(draft, last + 1, head or GENESIS_HASH)
            self._stage(AUDIT, str(last + 1), record)
            self._batch.counters[AUDIT.name] = (last + 1, str(record["hash"]))
            audit_seqs.append(last + 1)
        return BatchResult(seqs, audit_seqs)

    def _writes(self) -> dict[str, dict[str, str | None]]:
        """Table -> key -> row digest (``None``: deleted) of the batch's rows."""
        return {
            name: {
                key: None if body is None else row_digest(body)
                for key, (_, _, body) in staged.items()
            }
            for name, staged in self._batch.rows.items()
        }

    def _put(self, op: Put) -> None:
        key = op.table.key_of(op.row)
        if op.expect != "any":
            exists = self.exists(op.table, key)
            if op.expect == "absent" and exists:
                raise StorageError(
                    "conflict",
                    f"{op.table.name} {key!r} already exists",
                    {"table": op.table.name, "key": key},
                )
            if op.expect == "present" and not exists:
                raise StorageError(
                    "not_found",
                    f"{op.table.name} {key!r} does not exist",
                    {"table": op.table.name, "key": key},
                )
        self._stage_row(op.table, key, op.row)

    def _append(self, op: Append) -> int:
        table = op.table
        if not table.keyed_by_seq:
            key = table.key_of(op.row)
            existing = self.current(table, key)
            if existing is not None:
                if op.idempotent and same_content(existing, op.row):
                    return int(existing["seq"])
                raise StorageError(
                    "conflict",
                    f"{table.name} {key!r} already exists with different content",
                    {"table": table.name, "key": key},
                )
        last, head = self.counter(table.name)
        row = dict(op.row)
        row["seq"] = last + 1
        self._stage_row(table, table.key_of(row), row)
        self._batch.counters[table.name] = (last + 1, head)
        return last + 1

    def _restore(self, op: Restore) -> None:
        table = op.table
        row = dict(op.row)
        self._stage_row(table, table.key_of(row), row)
        if not table.seq:
            return
        last, head = self.counter(table.name)
        seq = int(row["seq"])
        if seq >= last:
            self._batch.counters[table.name] = (
                seq,
                str(row["hash"]) if table.name == AUDIT.name else head,
            )

    def _set_counter(self, op: SetCounter) -> None:
        table, seq, head = op.table, op.seq, op.head
        if (
            not table.seq
            or isinstance(seq, bool)
            or not isinstance(seq, int)
            or seq < 0
            or (head is not None and table.name != AUDIT.name)
        ):
            raise StorageError(
                "invalid", f"cannot set the {table.name} counter to {seq!r}", {"table": table.name}
            )
        if table.name == AUDIT.name and head is None:
            head = GENESIS_HASH
        self._batch.counters[table.name] = (seq, head)

    def _check_none(self, op: CheckNone) -> None:
        overridden: set[str] = set()
        for layer in (self._batch, self.group):
            for key, (_, row, _) in layer.rows.get(op.table.name, {}).items():
                if key in overridden:
                    continue
                overridden.add(key)
                if row is not None and matches(op.table, row, op.where):
                    raise StorageError(op.code, op.message, dict(op.details))
        # One more than the keys the group overrides: if that many committed
        # rows match, one of them is not overridden (see plan_reads).
        for key in self.view.matching(op, len(overridden) + 1):
            if key not in overridden:
                raise StorageError(op.code, op.message, dict(op.details))

    def _blob(self, digest: str, change: BlobChange) -> None:
        blobs = self._batch.blobs
        if change.kind == "put":
            earlier = blobs.get(digest) or self.group.blobs.get(digest)
            if earlier is not None and earlier.kind != "forget":
                return  # already stored by this group: idempotent
        blobs.pop(digest, None)
        blobs[digest] = change


def same_content(stored: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether two rows hold the same content, ``seq`` aside."""
    a = {k: v for k, v in stored.items() if k != "seq"}
    b = {k: v for k, v in new.items() if k != "seq"}
    return dumps(a) == dumps(b)


__all__ = [
    "BlobChange",
    "BlobForget",
    "BlobStored",
    "CommittedView",
    "GroupStager",
    "NetEffect",
    "PrefetchedView",
    "ReadPlan",
    "StagedOp",
    "plan_reads",
    "same_content",
]
