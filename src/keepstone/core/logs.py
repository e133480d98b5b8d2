"""LogStore over a RecordEngine: append-only lines per run, sealing, follow."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from keepstone.core.base import (
    RecordContext,
    build,
    check_id,
    parse,
    revalidate,
    review_gate,
    row,
)
from keepstone.core.paging import Listing, scan, seq_bound
from keepstone.engine.spi import Append, Check, CheckNone, Cmp, Delete, In, Op, Put, WriteBatch
from keepstone.engine.tables import LOG_LINES, LOG_REFS, RUNS
from keepstone.errors import StorageError, not_found
from keepstone.schemas._base import dumps
from keepstone.schemas.audit import ApprovalMarker, LifecycleAction
from keepstone.schemas.common import Page
from keepstone.schemas.logs import LOG_LEVELS, LogLevel, LogLine, LogQuery, LogReference

_RETRIES = 8
_APPEND_RETRIES = 100


class RecordLogStore:
    """Log streams (see :class:`keepstone.ports.LogStore`)."""

    def __init__(self, ctx: RecordContext) -> None:
        self._ctx = ctx

    async def _run(self, run_id: str) -> str:
        check_id(run_id, "run")
        if await self._ctx.engine.get(RUNS, run_id) is None:
            raise not_found("run", run_id)
        return run_id

    async def append(self, run_id: str, lines: Sequence[LogLine]) -> list[LogLine]:
        check_id(run_id, "run")
        if isinstance(lines, LogLine | dict) or not isinstance(lines, Sequence):
            raise StorageError("invalid", "append takes a sequence of LogLine", {})
        checked: list[LogLine] = []
        for i, line in enumerate(lines):
            if not isinstance(line, LogLine | dict):
                raise StorageError("invalid", f"line {i} is not a LogLine", {"index": i})
            line = revalidate(LogLine, line, f"log line {i}")
            if line.run_id != run_id:
                raise StorageError(
                    "invalid",
                    f"line {i} belongs to run {line.run_id}, not {run_id}",
                    {"index": i, "run": line.run_id},
                )
            if line.seq is not None:
                raise StorageError("invalid", f"line {i} already has seq {line.seq}", {"index": i})
            if line.line is not None:
                raise StorageError(
                    "invalid", f"line {i} already has line number {line.line}", {"index": i}
                )
            checked.append(line)
        if len(checked) > self._ctx.limits.max_batch:
            raise StorageError("invalid", "too many lines in one append", {"count": len(checked)})
        for attempt in range(_APPEND_RETRIES):
            last_seq, last_line = await self._stream_end(run_id)
            numbered = [
                line.model_copy(update={"line": last_line + n})
                for n, line in enumerate(checked, start=1)
            ]
            ops: list[Op] = [
                Check(
                    RUNS,
                    run_id,
                    "integrity",
                    f"run {run_id} does not exist; log lines need a run",
                    details={"run": run_id},
                ),
                Check(
                    LOG_REFS,
                    run_id,
                    "conflict",
                    f"the log stream of run {run_id} is sealed",
                    exists=False,
                    details={"run": run_id},
                ),
                # The line numbers hold only if nobody appended since we looked.
                CheckNone(
                    LOG_LINES,
                    {"run_id": run_id, "seq": Cmp(">", last_seq)},
                    "conflict",
                    f"run {run_id} logged concurrently",
                    {"retry": True},
                ),
            ]
            ops += [Append(LOG_LINES, row(line)) for line in numbered]
            batch = WriteBatch(ops)
            self._ctx.audit(batch, "log.append", run_id, {"lines": len(checked)})
            try:
                result = await self._ctx.apply(batch)
            except StorageError as exc:
                if exc.details.get("retry"):
                    await asyncio.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
                    continue
                raise
            return [
                line.model_copy(update={"seq": seq})
                for line, seq in zip(numbered, result.seqs[3:], strict=True)
            ]
        raise StorageError(
            "unavailable", f"run {run_id} has too many concurrent log writers", {"run": run_id}
        )

    async def _stream_end(self, run_id: str) -> tuple[int, int]:
        """The seq and line number of the run's last line (0, 0 when empty)."""
        last = await self._ctx.engine.find(
            LOG_LINES, {"run_id": run_id}, order=("seq",), desc=True, limit=1
        )
        if not last:
            return 0, 0
        found = orjson.loads(last[0])
        line = found.get("line")
        if not isinstance(line, int):  # lines written before lines were numbered
            line = await self._ctx.engine.count(LOG_LINES, {"run_id": run_id})
        return int(found["seq"]), line

    async def write(
        self,
        run_id: str,
        event: str,
        *,
        level: LogLevel = "info",
        message: str | None = None,
        step: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> LogLine:
        line = build(
            LogLine,
            "log line",
            run_id=run_id,
            at=self._ctx.now(),
            level=level,
            event=event,
            message=message,
            step=step,
            data=data,
        )
        return (await self.append(run_id, [line]))[0]

    def _where(self, run_id: str, q: LogQuery) -> dict[str, Any]:
        where: dict[str, Any] = {"run_id": run_id}
        if q.after_seq is not None:
            where["seq"] = Cmp(">", seq_bound(q.after_seq, "after_seq"))
        if q.min_level is not None:
            where["level"] = In(LOG_LEVELS[LOG_LEVELS.index(q.min_level) :])
        if q.event is not None:
            where["event"] = q.event
        if q.step is not None:
            where["step"] = q.step
        return where

    async def read(
        self,
        run_id: str,
        query: LogQuery | None = None,
        *,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> Page[LogLine]:
        await self._run(run_id)
        q = query or LogQuery()
        return await self._ctx.page(
            LogLine,
            LOG_LINES,
            where=self._where(run_id, q),
            order=("seq",),
            cursor=cursor,
            limit=limit,
            listing=Listing("logs.read", [run_id, q]),
        )

    async def follow(
        self, run_id: str, *, after_seq: int = 0, poll_interval: float = 0.2
    ) -> AsyncIterator[LogLine]:
        await self._run(run_id)
        last = seq_bound(after_seq, "after_seq")
        while True:
            sealed = await self._ctx.engine.get(LOG_REFS, run_id) is not None
            rows = await self._ctx.engine.find(
                LOG_LINES,
                {"run_id": run_id, "seq": Cmp(">", last)},
                order=("seq",),
                limit=1000,
            )
            for raw in rows:
                line = parse(LogLine, raw)
                last = line.seq or last
                yield line
            if not rows:
                if sealed:
                    return
                await asyncio.sleep(poll_interval)

    async def seal(self, run_id: str) -> LogReference:
        await self._run(run_id)
        for _ in range(_RETRIES):
            existing = await self.reference(run_id)
            if existing is not None:
                return existing
            counts = {"lines": 0, "last": 0}
            info = await self._ctx.engine.blob_put_stream(self._jsonl(run_id, counts))
            ref = LogReference(
                run_id=run_id,
                location=f"keepstone://logs/{run_id}",
                lines=counts["lines"],
                bytes=info.size,
                digest=info.digest,
                sealed_at=self._ctx.now(),
            )
            batch = WriteBatch(
                [
                    CheckNone(
                        LOG_LINES,
                        {"run_id": run_id, "seq": Cmp(">", counts["last"])},
                        "conflict",
                        f"run {run_id} logged while sealing",
                        {"retry": True},
                    ),
                    Put(LOG_REFS, row(ref), expect="absent"),
                ]
            )
            self._ctx.audit(batch, "log.seal", run_id, {"lines": ref.lines, "digest": ref.digest})
            try:
                await self._ctx.apply(batch)
            except StorageError as exc:
                if exc.code == "conflict":
                    continue
                raise
            return ref
        raise StorageError("conflict", f"run {run_id} keeps logging; could not seal", {})

    async def _jsonl(self, run_id: str, counts: dict[str, int]) -> AsyncIterator[bytes]:
        """The stream's lines as JSONL, counting lines and the last seq."""
        async for raw in scan(self._ctx.engine, LOG_LINES, {"run_id": run_id}, order=("seq",)):
            line = parse(LogLine, raw)
            counts["lines"] += 1
            counts["last"] = line.seq or 0
            yield dumps(line.model_dump(mode="json")) + b"\n"

    async def purge(self, run_id: str, *, approval: ApprovalMarker | None = None) -> int:
        await self._run(run_id)
        action = LifecycleAction(kind="apply_retention", target=run_id, params={"logs": True})
        await review_gate(self._ctx, action, approval, None)
        removed = 0
        while True:
            rows = await self._ctx.engine.find(
                LOG_LINES, {"run_id": run_id}, order=("seq",), limit=5000
            )
            ref = await self.reference(run_id)
            if not rows and ref is None:
                break
            ops: list[Op] = [Delete(LOG_LINES, str(orjson.loads(r)["seq"])) for r in rows]
            if ref is not None and len(rows) < 5000:
                ops.append(Delete(LOG_REFS, run_id))
            batch = WriteBatch(ops)
            self._ctx.audit(
                batch,
                "lifecycle.apply_retention",
                run_id,
                {"log_lines": len(rows), "sealed": ref is not None},
                approval=approval,
            )
            await self._ctx.apply(batch)
            removed += len(rows)
            if ref is not None and len(rows) < 5000:
                await self._ctx.engine.blob_delete(ref.digest)
                break
            if not rows:
                break
        return removed

    async def reference(self, run_id: str) -> LogReference | None:
        await self._run(run_id)
        raw = await self._ctx.engine.get(LOG_REFS, run_id)
        return None if raw is None else parse(LogReference, raw)
