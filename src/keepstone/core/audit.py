"""AuditLog over a RecordEngine: reading and verifying the hash chain."""

from __future__ import annotations

import builtins
from typing import Any

import orjson

from keepstone.core.base import RecordContext, parse
from keepstone.core.paging import Listing, scan, seq_bound
from keepstone.engine.spi import Cmp, WriteBatch
from keepstone.engine.tables import ALL_TABLES, AUDIT
from keepstone.errors import StorageError
from keepstone.schemas.audit import (
    GENESIS_HASH,
    MAX_MISMATCHES,
    ApprovalMarker,
    AuditOutcome,
    AuditQuery,
    AuditRecord,
    AuditVerification,
    RowMismatch,
    anchor_of,
    audit_hash,
    parse_anchor,
    row_digest,
)
from keepstone.schemas.common import Page


class RecordAuditLog:
    """The audit chain (see :class:`keepstone.ports.AuditLog`)."""

    def __init__(self, ctx: RecordContext) -> None:
        self._ctx = ctx

    async def record(
        self,
        action: str,
        target: str,
        *,
        outcome: AuditOutcome = "applied",
        approval: ApprovalMarker | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord:
        if not isinstance(action, str) or not action.strip():
            raise StorageError("invalid", "an audit record needs an action", {})
        if not isinstance(target, str):
            raise StorageError("invalid", "an audit target is a string", {})
        if outcome not in ("applied", "denied", "failed"):
            raise StorageError("invalid", f"unknown audit outcome {outcome!r}", {})
        if details is not None:
            from keepstone.schemas._base import canonical_json

            canonical_json(details)
        batch = WriteBatch()
        self._ctx.audit(batch, action, target, details, outcome=outcome, approval=approval)
        result = await self._ctx.apply(batch)
        return await self.get(result.audit_seqs[0])

    async def get(self, seq: int) -> AuditRecord:
        raw = await self._ctx.engine.get(AUDIT, str(seq))
        if raw is None:
            raise StorageError("not_found", f"audit record {seq} does not exist", {"seq": seq})
        return parse(AuditRecord, raw)

    async def head(self) -> AuditRecord | None:
        rows = await self._ctx.engine.find(AUDIT, order=("seq",), desc=True, limit=1)
        return parse(AuditRecord, rows[0]) if rows else None

    async def list(
        self, query: AuditQuery | None = None, *, cursor: str | None = None, limit: int = 100
    ) -> Page[AuditRecord]:
        q = query or AuditQuery()
        where: dict[str, Any] = {}
        for column in ("action", "target", "actor", "outcome"):
            value = getattr(q, column)
            if value is not None:
                where[column] = value
        if q.after_seq is not None:
            where["seq"] = Cmp(">", seq_bound(q.after_seq, "after_seq"))
        return await self._ctx.page(
            AuditRecord,
            AUDIT,
            where=where,
            order=("seq",),
            cursor=cursor,
            limit=limit,
            listing=Listing("audit.list", q),
        )

    async def verify(self, *, rows: bool = True, against: str | None = None) -> AuditVerification:
        anchor = None if against is None else parse_anchor(against)
        written: Written = {}
        chain = await self.walk_chain(written if rows else None, anchor)
        if not chain.ok or not rows:
            return chain
        mismatches, rows_checked = await self._check_rows(written)
        if not mismatches:
            return chain.model_copy(update={"rows_checked": rows_checked})
        first = mismatches[0]
        where = "no audit record" if first.seq is None else f"audit record {first.seq}"
        return chain.model_copy(
            update={
                "ok": False,
                "first_broken_seq": first.seq,
                "problem": f"{first.table} {first.key!r}: {first.problem} ({where})",
                "table": first.table,
                "key": first.key,
                "rows_checked": rows_checked,
                "mismatches": mismatches[:MAX_MISMATCHES],
            }
        )

    async def walk_chain(
        self, written: Written | None = None, anchor: tuple[int, str] | None = None
    ) -> AuditVerification:
        """Check every link; collect, per row, the digest its last writer recorded."""
        prev = GENESIS_HASH
        expected_seq = 1
        checked = 0
        async for raw in scan(self._ctx.engine, AUDIT, order=("seq",)):
            fields = orjson.loads(raw)
            problem = link_problem(fields, expected_seq, prev)
            at_anchor = anchor is not None and anchor[0] == expected_seq
            if problem is None and at_anchor and (expected_seq, fields["hash"]) != anchor:
                problem = "the record's hash is not the anchor's: the history was rewritten"
            if problem is not None:
                return AuditVerification(
                    ok=False, checked=checked, first_broken_seq=expected_seq, problem=problem
                )
            if written is not None:
                note_writes(fields, expected_seq, written)
            prev = str(fields["hash"])
            expected_seq += 1
            checked += 1
        if anchor is not None and checked < anchor[0]:
            return AuditVerification(
                ok=False,
                checked=checked,
                first_broken_seq=checked + 1,
                problem=f"the chain ends at record {checked}, before the anchor's record "
                f"{anchor[0]}: records were removed",
            )
        last = None if checked == 0 else anchor_of(checked, prev)
        return AuditVerification(ok=True, checked=checked, anchor=last)

    async def _check_rows(self, written: Written) -> tuple[builtins.list[RowMismatch], int]:
        """Every stored row against the digest its last writer recorded."""
        mismatches: builtins.list[RowMismatch] = []
        checked = 0
        for table in ALL_TABLES:
            if table.name == AUDIT.name:
                continue
            seen: set[str] = set()
            try:
                async for raw in scan(self._ctx.engine, table):
                    checked += 1
                    key = table.key_of(orjson.loads(raw))
                    seen.add(key)
                    found = row_mismatch(table.name, key, raw, written)
                    if found is not None:
                        mismatches.append(found)
            except StorageError as exc:
                if exc.code != "corrupt":
                    raise
                mismatches.append(_unreadable(table.name, exc, written))
                continue  # the rest of the table cannot be read: no "missing" guesses
            mismatches += missing_rows(table.name, seen, written)
        mismatches.sort(key=lambda m: (m.seq is None, m.seq or 0, m.table, m.key))
        return mismatches, checked


Written = dict[tuple[str, str], tuple[str | None, int]]
"""(table, key) -> (the row digest its last writer recorded, that record's seq)."""


def link_problem(fields: dict[str, Any], expected_seq: int, prev_hash: str) -> str | None:
    """What is wrong with an audit record as the link ``expected_seq`` of a
    chain whose previous hash is ``prev_hash`` (``None``: nothing)."""
    seq = fields.get("seq")
    if seq != expected_seq:
        return f"expected seq {expected_seq}, found {seq}"
    if fields.get("prev_hash") != prev_hash:
        return "prev_hash does not match the previous record's hash"
    if audit_hash(fields) != fields.get("hash"):
        return "the record's fields do not match its hash (edited)"
    return None


def note_writes(fields: dict[str, Any], seq: int, written: Written) -> None:
    """Record, per row, the digest audit record ``seq`` says it wrote."""
    for table, keys in (fields.get("writes") or {}).items():
        for key, digest in keys.items():
            written[(table, key)] = (digest, seq)


def row_mismatch(table: str, key: str, raw: bytes, written: Written) -> RowMismatch | None:
    """How a stored row differs from what the audit chain recorded, if it does."""
    digest, seq = written.get((table, key), (None, None))
    if seq is None:
        problem = "not written by any audit record (added behind keepstone's back)"
    elif digest is None:
        problem = "deleted by its last audit record, yet stored"
    elif digest != row_digest(raw):
        problem = "changed after its audit record wrote it"
    else:
        return None
    return RowMismatch(table=table, key=key, seq=seq, problem=problem)


def _unreadable(table: str, exc: StorageError, written: Written) -> RowMismatch:
    """A table the engine could not read to the end (a row's file is gone, say)."""
    key = exc.details.get("key")
    key = str(key) if key is not None else str(exc.details.get("file", "?"))
    _, seq = written.get((table, key), (None, None))
    return RowMismatch(table=table, key=key, seq=seq, problem=f"unreadable: {exc.message}")


def missing_rows(table: str, seen: set[str], written: Written) -> list[RowMismatch]:
    """Rows of ``table`` the chain says exist that are not stored."""
    return [
        RowMismatch(
            table=name, key=key, seq=seq, problem="missing (removed behind keepstone's back)"
        )
        for (name, key), (digest, seq) in written.items()
        if name == table and digest is not None and key not in seen
    ]
