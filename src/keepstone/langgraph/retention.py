"""Removing checkpoints: LangGraph's ``delete_thread``, ``delete_for_runs`` and
``prune``, and the saver's TTL, as plans you can read before applying.

A plan lists, per thread, the checkpoints that go and those that stay.
Applying it goes through keepstone's review gate (an ``apply_retention``
lifecycle action on the thread's run) and leaves audit records: the
``lifecycle.apply_retention`` record of the snapshots removed, and one
``langgraph.prune`` (or ``langgraph.delete_thread``) record naming the
thread, the strategy and the checkpoints removed.

``keep_latest`` keeps the latest checkpoint of every namespace with its
pending writes, and, for a thread that uses LangGraph's ``DeltaChannel``,
every ancestor back to the nearest one that stores each delta channel's
value, so the kept checkpoint still rebuilds its state. Large values that
kept checkpoints share with removed ones are carried into a ``values``
snapshot first, so they stay referenced. A deleted thread's run ends as
``cancelled`` and keeps its audit trail; the bytes no record refers to any
more are reclaimed by ``keepstone gc``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, cast

from pydantic import Field

from keepstone.errors import StorageError
from keepstone.langgraph.checkpoints import ThreadCheckpoints
from keepstone.langgraph.fencing import ThreadState
from keepstone.langgraph.layout import (
    DELETED,
    FORMAT,
    RETENTION_STEP,
    VALUES_LABEL,
    checkpoint_label,
    header_digests,
    writes_label,
)
from keepstone.langgraph.threads import (
    Entry,
    ThreadIndex,
    load_closure,
    run_thread_id,
    thread_runs,
)
from keepstone.schemas import ApprovalMarker, ErrorInfo, LifecycleAction, Model

Strategy = Literal["keep_latest", "delete"]


class ThreadPrune(Model):
    """What a plan does to one thread."""

    thread_id: str
    run_id: str
    delete_thread: bool = False
    """The whole thread goes (its run ends as ``cancelled``)."""
    remove: list[tuple[str, str]] = Field(default_factory=list)
    """``(checkpoint_ns, checkpoint_id)`` of the checkpoints removed."""
    keep: list[tuple[str, str]] = Field(default_factory=list)
    snapshots: list[int] = Field(default_factory=list)
    """The numbers of the run snapshots removed (checkpoints, their pending
    writes, older ``values`` snapshots)."""
    reason: str


class PrunePlan(Model):
    """What applying a prune, a delete or the TTL would remove, as of ``planned_at``."""

    action: Literal["keep_latest", "delete", "delete_for_runs", "ttl"]
    planned_at: datetime
    threads: list[ThreadPrune] = Field(default_factory=list)

    @property
    def checkpoints(self) -> int:
        """How many checkpoints the plan removes."""
        return sum(len(t.remove) for t in self.threads)

    def describe(self) -> str:
        """One line per thread, for people."""
        if not self.threads:
            return f"{self.action}: nothing to remove"
        lines = [f"{self.action}: {len(self.threads)} thread(s), {self.checkpoints} checkpoint(s)"]
        for t in self.threads:
            what = "delete the thread" if t.delete_thread else f"remove {len(t.remove)}"
            lines.append(f"  {t.thread_id}: {what}, keep {len(t.keep)} ({t.reason})")
        return "\n".join(lines)


class ThreadRetention:
    """Plans and applies removals over a :class:`ThreadCheckpoints`."""

    def __init__(self, core: ThreadCheckpoints) -> None:
        self.core = core
        self.store = core.store

    # ------------------------------------------------------------------ planning

    async def plan(
        self,
        thread_ids: list[str],
        strategy: str,
    ) -> PrunePlan:
        """The plan of LangGraph's ``prune(thread_ids, strategy=...)``.

        Raises:
            StorageError: ``invalid`` for an unknown strategy.
        """
        if strategy not in ("keep_latest", "delete"):
            raise StorageError(
                "invalid",
                f"unknown prune strategy {strategy!r}; use 'keep_latest' or 'delete'",
                {"strategy": strategy},
            )
        plan = PrunePlan(action=cast(Strategy, strategy), planned_at=self.store.clock.now())
        for thread_id in dict.fromkeys(thread_ids):
            loaded = await self._load(thread_id)
            if loaded is None:
                continue
            state, index = loaded
            if strategy == "delete":
                plan.threads.append(self._whole(state, index, "prune(strategy='delete')"))
            else:
                item = await self._keep_latest(state, index)
                if item is not None:
                    plan.threads.append(item)
        return plan

    async def plan_delete(self, thread_id: str) -> PrunePlan:
        plan = PrunePlan(action="delete", planned_at=self.store.clock.now())
        loaded = await self._load(thread_id)
        if loaded is not None:
            plan.threads.append(self._whole(*loaded, "delete_thread"))
        return plan

    async def plan_runs(self, run_ids: list[str]) -> PrunePlan:
        """The plan of LangGraph's ``delete_for_runs(run_ids)``: every checkpoint
        whose metadata names one of ``run_ids``, with its pending writes."""
        plan = PrunePlan(action="delete_for_runs", planned_at=self.store.clock.now())
        wanted = set(run_ids)
        if not wanted:
            return plan
        for run in await thread_runs(self.store):
            loaded = await self._load(run_thread_id(run))
            if loaded is None:
                continue
            state, index = loaded
            entries = list(index.checkpoints.values())
            headers = await self.core.headers(entries)
            doomed = []
            for entry, header in zip(entries, headers, strict=True):
                meta = await self.core.load_entry(header["metadata"])
                if isinstance(meta, dict) and meta.get("run_id") in wanted:
                    doomed.append(entry)
            if doomed:
                plan.threads.append(
                    self._partial(state, index, doomed, "checkpoints of the runs deleted")
                )
        return plan

    async def plan_ttl(self, ttl: timedelta, now: datetime | None = None) -> PrunePlan:
        """Threads whose newest snapshot is older than ``ttl``: deleted whole."""
        now = now or self.store.clock.now()
        plan = PrunePlan(action="ttl", planned_at=now)
        for run in await thread_runs(self.store):
            latest = await self.store.runs.latest_snapshot(run.id)
            last = run.created_at if latest is None else latest.created_at
            if now - last <= ttl:
                continue
            loaded = await self._load(run_thread_id(run))
            if loaded is not None:
                plan.threads.append(
                    self._whole(*loaded, f"idle since {last.isoformat()}, longer than {ttl}")
                )
        return plan

    async def _load(self, thread_id: str) -> tuple[ThreadState, ThreadIndex] | None:
        return await self.core.load(thread_id)

    @staticmethod
    def _whole(state: ThreadState, index: ThreadIndex, reason: str) -> ThreadPrune:
        assert state.run is not None
        return ThreadPrune(
            thread_id=state.thread_id,
            run_id=state.run.id,
            delete_thread=True,
            remove=sorted(index.checkpoints),
            snapshots=[e.number for e in index.entries],
            reason=reason,
        )

    @staticmethod
    def _partial(
        state: ThreadState, index: ThreadIndex, doomed: list[Entry], reason: str
    ) -> ThreadPrune:
        assert state.run is not None
        gone = {(e.label.checkpoint_ns, e.label.checkpoint_id) for e in doomed}
        numbers = {e.number for e in doomed}
        for key in gone:
            numbers.update(w.number for w in index.writes.get(key, []))
        return ThreadPrune(
            thread_id=state.thread_id,
            run_id=state.run.id,
            remove=sorted(gone),
            keep=sorted(set(index.checkpoints) - gone),
            snapshots=sorted(numbers),
            reason=reason,
        )

    async def _keep_latest(self, state: ThreadState, index: ThreadIndex) -> ThreadPrune | None:
        kept: set[tuple[str, str]] = set()
        for ns, head in index.latest.items():
            kept.add((ns, head.label.checkpoint_id))
            kept.update(await self._delta_ancestors(index, head))
        doomed = [e for key, e in index.checkpoints.items() if key not in kept]
        markers = [e for e in index.entries if e.label.kind == "values"]
        claims = sorted(
            (e for e in index.entries if e.label.kind == "claim"), key=lambda e: e.label.epoch
        )
        garbage = [*index.void, *claims[:-1]]  # the newest claim still voids late writes
        if not doomed and not garbage and len(markers) <= 1:
            return None
        item = self._partial(state, index, doomed, "keep the latest checkpoint per namespace")
        numbers = set(item.snapshots) | {e.number for e in markers} | {e.number for e in garbage}
        # superseded copies of a checkpoint stored twice
        live = {e.number for e in index.checkpoints.values()}
        numbers.update(
            e.number for e in index.entries if e.label.kind == "checkpoint" and e.number not in live
        )
        return item.model_copy(update={"snapshots": sorted(numbers)})

    async def _delta_ancestors(self, index: ThreadIndex, head: Entry) -> set[tuple[str, str]]:
        """The ancestors a kept checkpoint's delta channels are rebuilt from."""
        header = (await self.core.headers([head]))[0]
        meta = await self.core.load_entry(header["metadata"])
        counters = meta.get("counters_since_delta_snapshot") if isinstance(meta, dict) else None
        if not counters:
            return set()
        missing = {ch for ch in counters if ch not in (header.get("values") or {})}
        ns = head.label.checkpoint_ns
        kept: set[tuple[str, str]] = set()
        parent = header.get("parent_checkpoint_id")
        while missing and parent:
            entry = index.checkpoints.get((ns, parent))
            if entry is None:
                break
            kept.add((ns, parent))
            ancestor = (await self.core.headers([entry]))[0]
            missing -= set(ancestor.get("values") or {})
            parent = ancestor.get("parent_checkpoint_id")
        return kept

    # ------------------------------------------------------------------ applying

    async def apply(self, plan: PrunePlan, approval: ApprovalMarker | None) -> int:
        """Remove what ``plan`` lists; returns the number of snapshots removed.

        Raises:
            StorageError: ``review_required`` (audited as denied) without an
                approval.
        """
        removed = 0
        for item in plan.threads:
            action = LifecycleAction(
                kind="apply_retention",
                target=item.run_id,
                params={"langgraph": plan.action, "thread_id": item.thread_id},
            )
            await self.store.review.check(action, approval)
            if item.delete_thread:
                removed += await self._delete(item, plan.action, approval)
            else:
                removed += await self._prune(item, plan.action, approval)
        return removed

    async def _delete(self, item: ThreadPrune, action: str, approval: ApprovalMarker | None) -> int:
        run = await self.store.runs.get(item.run_id)
        if run.status not in ("succeeded", "failed", "cancelled"):
            await self.store.runs.transition(
                run.id,
                "cancelled",
                error=ErrorInfo(
                    type=DELETED,
                    message=f"LangGraph thread {item.thread_id!r} deleted ({action})",
                ),
            )
        numbers: list[int] = []
        cursor = None
        while True:
            page = await self.store.runs.list_snapshots(run.id, cursor=cursor, limit=10_000)
            numbers += [s.number for s in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        removed = 0
        for start in range(0, len(numbers), 5000):
            removed += await self.store.runs.prune_snapshots(
                run.id, numbers[start : start + 5000], approval=approval
            )
        self.core.forget(item.thread_id)
        await self.store.audit.record(
            "langgraph.delete_thread",
            run.id,
            approval=approval,
            details={
                "thread_id": item.thread_id,
                "action": action,
                "checkpoints": len(item.remove),
                "snapshots": removed,
            },
        )
        return removed

    async def _prune(self, item: ThreadPrune, action: str, approval: ApprovalMarker | None) -> int:
        loaded = await self._load(item.thread_id)
        if loaded is None:
            return 0
        state, index = loaded
        doomed = set(item.snapshots)
        kept = [e for e in index.entries if e.number not in doomed]
        if not doomed:
            return 0
        await self._carry_values(state, kept, item, action)
        run = await self.store.runs.get(item.run_id)
        await self.store.runs.set_step(run.id, RETENTION_STEP, "running")
        removed = await self.store.runs.prune_snapshots(run.id, sorted(doomed), approval=approval)
        self.core.forget(item.thread_id)
        await self.store.audit.record(
            "langgraph.prune",
            run.id,
            approval=approval,
            details={
                "thread_id": item.thread_id,
                "action": action,
                "removed": [list(k) for k in item.remove[:1000]],
                "checkpoints": len(item.remove),
                "snapshots": removed,
            },
        )
        return removed

    async def _carry_values(
        self, state: ThreadState, kept: list[Entry], item: ThreadPrune, action: str
    ) -> None:
        """Store, in a new ``values`` snapshot, the large values kept
        checkpoints use whose only references are being removed. The new
        snapshot is also the run's latest, so every other may go."""
        carriers = [e for e in kept if e.label.kind in ("checkpoint", "writes")]
        roots: set[str] = set()
        for header in await self.core.headers(carriers):
            roots |= header_digests(header)
        reachable = await load_closure(self.store, self.core.cache, sorted(roots))
        held = {d for e in carriers for d in e.parts.values()}
        missing = sorted(set(reachable) - held)
        forms = {d: reachable[d] for d in missing}
        marker: dict[str, Any] = {
            "kind": "langgraph.values",
            "format": FORMAT,
            "thread_id": state.thread_id,
            "action": action,
            "removed": [list(k) for k in item.remove[:1000]],
            "values": missing,
        }
        await self.core.save_raw(state, VALUES_LABEL, {"values": marker, **forms})

    # ------------------------------------------------------------------ copying

    async def copy(self, source: str, target: str) -> int:
        """Copy every checkpoint and pending write of ``source`` to ``target``
        (LangGraph's ``copy_thread``); returns the snapshots written."""
        loaded = await self._load(source)
        if loaded is None:
            return 0
        _, index = loaded
        void = {e.number for e in index.void}
        entries = [
            e
            for e in index.entries
            if e.label.kind in ("checkpoint", "writes") and e.number not in void
        ]
        if not entries:
            return 0
        dst = await self.core.thread(target, create=True)
        assert dst is not None
        await self.core.before_write(dst, "", None)
        epoch = dst.epoch or 0
        headers = await self.core.headers(entries)
        written: set[str] = set()
        count = 0
        for entry, header in zip(entries, headers, strict=True):
            reachable = await load_closure(
                self.store, self.core.cache, sorted(header_digests(header))
            )
            forms = {d: v for d, v in reachable.items() if d not in written}
            written.update(forms)
            part = "checkpoint" if entry.label.kind == "checkpoint" else "writes"
            label = (
                checkpoint_label(entry.label.checkpoint_ns, entry.label.checkpoint_id, epoch)
                if part == "checkpoint"
                else writes_label(
                    entry.label.checkpoint_ns,
                    entry.label.checkpoint_id,
                    entry.label.task_id,
                    epoch,
                )
            )
            await self.core.save_raw(dst, label, {part: header, **forms})
            count += 1
        await self.core.after_write(dst)
        self.core.forget(target)
        return count
