"""AuditLog over a RecordEngine: reading and verifying the hash chain."""

from __future__ import annotations

from typing import Any

import orjson

from keepstone.core.base import RecordContext, parse
from keepstone.core.paging import scan
from keepstone.engine.spi import Cmp, WriteBatch
from keepstone.engine.tables import AUDIT
from keepstone.errors import StorageError
from keepstone.schemas.audit import (
    GENESIS_HASH,
    ApprovalMarker,
    AuditOutcome,
    AuditQuery,
    AuditRecord,
    AuditVerification,
    audit_hash,
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
            where["seq"] = Cmp(">", q.after_seq)
        return await self._ctx.page(
            AuditRecord, AUDIT, where=where, order=("seq",), cursor=cursor, limit=limit
        )

    async def verify(self) -> AuditVerification:
        prev = GENESIS_HASH
        expected_seq = 1
        checked = 0
        async for raw in scan(self._ctx.engine, AUDIT):
            fields = orjson.loads(raw)
            seq = fields.get("seq")
            problem = None
            if seq != expected_seq:
                problem = f"expected seq {expected_seq}, found {seq}"
            elif fields.get("prev_hash") != prev:
                problem = "prev_hash does not match the previous record's hash"
            elif audit_hash(fields) != fields.get("hash"):
                problem = "the record's fields do not match its hash (edited)"
            if problem is not None:
                return AuditVerification(
                    ok=False, checked=checked, first_broken_seq=expected_seq, problem=problem
                )
            prev = str(fields["hash"])
            expected_seq += 1
            checked += 1
        return AuditVerification(ok=True, checked=checked)
