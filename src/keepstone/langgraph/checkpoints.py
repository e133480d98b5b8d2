"""The async core of :class:`~keepstone.langgraph.KeepstoneSaver`: checkpoints
and pending writes of LangGraph threads as keepstone run snapshots (the
layout is in :mod:`keepstone.langgraph.layout`).

Everything here runs on the event loop the store lives on; the saver hands
LangGraph's calls to it through :class:`~keepstone.langgraph._bridge.LoopBinding`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from keepstone.errors import StorageError
from keepstone.langgraph.codec import Parts, ValueCodec, needs
from keepstone.langgraph.fencing import NO_BASE, ThreadState, check_epoch, claim
from keepstone.langgraph.layout import (
    CHECKPOINT_PART,
    FORMAT,
    RUN_NAME,
    WRITES_PART,
    Label,
    checkpoint_label,
    claim_label,
    parse_label,
    thread_run_id,
    writes_label,
)
from keepstone.langgraph.threads import (
    DigestCache,
    Entry,
    ThreadIndex,
    current_run,
    is_deleted,
    load_closure,
    read_header,
    run_thread_id,
    thread_runs,
)
from keepstone.schemas import canonical_json, sha256_digest
from keepstone.schemas._base import format_timestamp
from keepstone.store import Store

_BATCH = 64
"""Checkpoints whose headers are read together while listing."""


class ThreadCheckpoints:
    """Reads and writes of checkpoints and pending writes (see the module
    docstring). One instance is one writer (see :mod:`~keepstone.langgraph.fencing`)."""

    def __init__(
        self, store: Store, serde: SerializerProtocol, *, cache_bytes: int, max_threads: int
    ) -> None:
        self.store = store
        self.codec = ValueCodec(serde)
        self.cache = DigestCache(cache_bytes)
        self._threads: OrderedDict[str, ThreadState] = OrderedDict()
        self._opening: dict[str, asyncio.Lock] = {}
        self._max_threads = max_threads

    # ------------------------------------------------------------------ threads

    async def thread(self, thread_id: str, *, create: bool) -> ThreadState | None:
        """This instance's state of ``thread_id``; with ``create``, its run is
        created when the thread has none. ``None`` when it has no run."""
        state = self._threads.get(thread_id)
        if state is None or (create and state.run is None):
            lock = self._opening.setdefault(thread_id, asyncio.Lock())
            try:
                async with lock:
                    state = self._threads.get(thread_id)
                    if state is None:
                        run, generation = await current_run(self.store, thread_id)
                        state = ThreadState(thread_id, run, generation)
                        self._remember(state)
                    if state.run is None and create:
                        await self._create_run(state)
            finally:
                if not lock.locked():
                    self._opening.pop(thread_id, None)
        else:
            self._threads.move_to_end(thread_id)
        if state.run is None:
            return None
        if state.index is None:
            state.index = ThreadIndex(state.run.id)
        return state

    def _remember(self, state: ThreadState) -> None:
        self._threads[state.thread_id] = state
        while len(self._threads) > self._max_threads:
            self._threads.popitem(last=False)

    def forget(self, thread_id: str) -> None:
        self._threads.pop(thread_id, None)

    async def _create_run(self, state: ThreadState) -> None:
        run_id = thread_run_id(state.thread_id, state.generation)
        params = {"thread_id": state.thread_id, "generation": state.generation}
        try:
            run = await self.store.runs.create(RUN_NAME, params=params, id=run_id)
        except StorageError as exc:  # created by another process meanwhile
            if exc.code != "conflict":
                raise
            run = await self.store.runs.get(run_id)
            if run.name != RUN_NAME or run.params != params:
                raise
        if run.status == "pending":
            try:
                run = await self.store.runs.transition(run.id, "running")
            except StorageError as exc:  # started by another process meanwhile
                if exc.code != "conflict":
                    raise
                run = await self.store.runs.get(run.id)
        if is_deleted(run):  # deleted meanwhile: the next generation
            state.generation += 1
            await self._create_run(state)
            return
        state.run = run
        state.index = ThreadIndex(run.id)

    async def refresh(self, state: ThreadState) -> ThreadIndex | None:
        """Bring ``state``'s index up to date; ``None`` (and the state is
        forgotten) when the thread was deleted meanwhile."""
        assert state.run is not None and state.index is not None
        run = await self.store.runs.get(state.run.id)
        if is_deleted(run):
            self.forget(state.thread_id)
            return None
        state.run = run
        await state.index.refresh(self.store, run)
        return state.index

    async def load(self, thread_id: str) -> tuple[ThreadState, ThreadIndex] | None:
        """This instance's state of a thread with its index up to date (a
        thread deleted meanwhile is looked up again: a new generation may hold
        it), or ``None`` when the thread has no run."""
        for _ in range(3):
            state = await self.thread(thread_id, create=False)
            if state is None:
                return None
            index = await self.refresh(state)
            if index is not None:
                return state, index
        return None

    # ------------------------------------------------------------------ fencing

    async def before_write(self, state: ThreadState, ns: str, parent: str | None) -> None:
        """Claim the thread on this instance's first write of a graph run (see
        :mod:`~keepstone.langgraph.fencing`). Later writes are checked once
        they landed (:meth:`after_write`): a write that lands after a newer
        claim is void for readers anyway, so checking before too would only
        cost a read."""
        assert state.run is not None
        if state.epoch is None:
            async with state.lock:
                if state.epoch is None:
                    await claim(self.store, state, ns, parent, self._mark_claim)

    async def _mark_claim(self, state: ThreadState, epoch: int) -> None:
        marker = {
            "kind": "langgraph.claim",
            "format": FORMAT,
            "epoch": epoch,
            "at": format_timestamp(self.store.clock.now()),
        }
        async with state.saving:
            assert state.run is not None and state.index is not None
            saved = await self.store.runs.save_snapshot(
                state.run.id, {"claim": marker}, step=claim_label(epoch)
            )
        state.index.add(Entry(saved.number, Label("claim", epoch=epoch), {}, saved.created_at))

    async def after_write(self, state: ThreadState) -> None:
        """Check, once a write landed, that nobody claimed the thread meanwhile."""
        assert state.run is not None
        check_epoch(state, await self.store.runs.get(state.run.id))

    # ------------------------------------------------------------------ writing

    async def put(
        self,
        thread_id: str,
        ns: str,
        parent: str | None,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> None:
        """Store one checkpoint (LangGraph's ``put``)."""
        state = await self.thread(thread_id, create=True)
        assert state is not None and state.run is not None and state.index is not None
        await self.before_write(state, ns, parent)
        parent_header = await self._header_of(state, ns, parent)
        parts: Parts = {}
        header = self._checkpoint_header(
            parent, checkpoint, metadata, new_versions, parent_header, parts
        )
        label = checkpoint_label(ns, checkpoint["id"], _epoch(state))
        await self._save(state, label, CHECKPOINT_PART, header, parts)
        await self.after_write(state)

    def _checkpoint_header(
        self,
        parent: str | None,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
        parent_header: dict[str, Any] | None,
        parts: Parts,
    ) -> dict[str, Any]:
        codec = self.codec
        body = {
            k: v for k, v in checkpoint.items() if k not in ("channel_values", "channel_versions")
        }
        values_in: Mapping[str, Any] = checkpoint.get("channel_values") or {}
        versions: dict[str, Any] = dict(checkpoint.get("channel_versions") or {})
        old_versions: Mapping[str, Any] = {}
        old_values: Mapping[str, Any] = {}
        if parent_header is not None:
            old_versions = parent_header.get("versions") or {}
            old_values = parent_header.get("values") or {}
        values: dict[str, Any] = {}
        for channel, version in versions.items():
            reuse = (
                channel not in new_versions
                and channel in old_versions
                and old_versions[channel] == version
            )
            if reuse:
                if channel in old_values:
                    values[channel] = old_values[channel]
            elif channel in values_in:
                values[channel] = codec.entry(values_in[channel], parts)
        return {
            "kind": "langgraph.checkpoint",
            "format": FORMAT,
            "parent_checkpoint_id": parent,
            "checkpoint": codec.entry(body, parts),
            "metadata": codec.entry(dict(metadata), parts),
            "versions": _json_versions(versions),
            "values": values,
        }

    async def put_writes(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> None:
        """Store the pending writes of one task (LangGraph's ``put_writes``)."""
        indexed = [(WRITES_IDX_MAP.get(ch, i), ch, v) for i, (ch, v) in enumerate(writes)]
        if not indexed:
            return
        state = await self.thread(thread_id, create=True)
        assert state is not None and state.run is not None
        known = state.written.setdefault((ns, checkpoint_id), set())
        if all(i >= 0 and (task_id, i) in known for i, _, _ in indexed):
            return  # already stored: regular writes are kept once
        await self.before_write(state, ns, checkpoint_id)
        parts: Parts = {}
        header = {
            "kind": "langgraph.writes",
            "format": FORMAT,
            "task_path": task_path,
            "writes": [[i, ch, self.codec.entry(v, parts)] for i, ch, v in indexed],
        }
        label = writes_label(ns, checkpoint_id, task_id, _epoch(state))
        await self._save(state, label, WRITES_PART, header, parts)
        known.update((task_id, i) for i, _, _ in indexed)
        await self.after_write(state)

    async def _save(
        self,
        state: ThreadState,
        label: str,
        part: str,
        header: dict[str, Any],
        parts: Parts,
    ) -> Entry:
        assert state.run is not None and state.index is not None
        raw = canonical_json(header)
        digest = sha256_digest(raw)
        async with state.saving:  # one snapshot number at a time per thread
            snapshot = await self.store.runs.save_snapshot(
                state.run.id, {part: header, **parts}, step=label
            )
        self.cache.put(digest, header, len(raw) + 64)
        for d, form in parts.items():
            self.cache.put(d, form, 1024)
        parsed = parse_label(label)
        assert parsed is not None
        entry = Entry(
            snapshot.number, parsed, {part: digest, **{d: d for d in parts}}, snapshot.created_at
        )
        state.index.add(entry)
        return entry

    async def save_raw(self, state: ThreadState, label: str, snapshot: dict[str, Any]) -> int:
        """Store a snapshot as given (copies and retention markers)."""
        assert state.run is not None
        async with state.saving:
            saved = await self.store.runs.save_snapshot(state.run.id, snapshot, step=label)
        return saved.number

    # ------------------------------------------------------------------ reading

    async def _header_of(
        self, state: ThreadState, ns: str, checkpoint_id: str | None
    ) -> dict[str, Any] | None:
        """The header of a checkpoint, from what this instance knows (reading
        the index again only when the checkpoint is not in it yet)."""
        if checkpoint_id is None:
            return None
        assert state.index is not None
        entry = state.index.checkpoints.get((ns, checkpoint_id))
        if entry is None:
            index = await self.refresh(state)
            entry = None if index is None else index.checkpoints.get((ns, checkpoint_id))
        if entry is None:
            return None
        return await read_header(self.store, self.cache, entry)

    async def get_tuple(
        self, thread_id: str, ns: str, checkpoint_id: str | None
    ) -> CheckpointTuple | None:
        """LangGraph's ``get_tuple``: the named checkpoint, or the latest."""
        loaded = await self.load(thread_id)
        if loaded is None:
            if checkpoint_id is None and ns == "":
                # A graph starts a new thread: its first write must still find it empty.
                known = self._threads.get(thread_id)
                if known is not None and known.run is None:
                    known.epoch = None
                    known.bases[ns] = NO_BASE
            return None
        state, index = loaded
        if checkpoint_id is None:
            entry = index.latest.get(ns)
            if ns == "":
                # A graph run starts (or resumes) here: its writes claim the thread
                # again, on top of what it just loaded.
                state.epoch = None
            if state.epoch is None:
                state.bases[ns] = NO_BASE if entry is None else entry.label.checkpoint_id
        else:
            entry = index.checkpoints.get((ns, checkpoint_id))
        if entry is None:
            return None
        tuples = await self._tuples(state, index, [entry], None, None)
        return tuples[0] if tuples else None

    async def list_tuples(
        self,
        thread_id: str | None,
        ns: str | None,
        checkpoint_id: str | None,
        *,
        filter: Mapping[str, Any] | None,
        before: str | None,
        limit: int | None,
    ) -> list[CheckpointTuple]:
        """LangGraph's ``list``: newest first."""
        if limit is not None and limit <= 0:
            return []
        thread_ids = [thread_id] if thread_id is not None else await self._all_thread_ids()
        found: list[CheckpointTuple] = []
        for tid in thread_ids:
            loaded = await self.load(tid)
            if loaded is None:
                continue
            state, index = loaded
            entries = [
                e
                for (e_ns, e_id), e in index.checkpoints.items()
                if (ns is None or e_ns == ns)
                and (checkpoint_id is None or e_id == checkpoint_id)
                and (before is None or e_id < before)
            ]
            entries.sort(key=lambda e: e.label.checkpoint_id, reverse=True)
            want = None if limit is None else limit - len(found)
            found += await self._tuples(state, index, entries, filter, want)
            if limit is not None and len(found) >= limit:
                break
        return found

    async def _all_thread_ids(self) -> list[str]:
        return [run_thread_id(run) for run in await thread_runs(self.store)]

    async def _tuples(
        self,
        state: ThreadState,
        index: ThreadIndex,
        entries: list[Entry],
        filter: Mapping[str, Any] | None,
        limit: int | None,
    ) -> list[CheckpointTuple]:
        out: list[CheckpointTuple] = []
        for start in range(0, len(entries), _BATCH):
            chunk = entries[start : start + _BATCH]
            headers = await asyncio.gather(*(read_header(self.store, self.cache, e) for e in chunk))
            metas = [await self.load_entry(h["metadata"]) for h in headers]
            picked = [
                (e, h, m)
                for e, h, m in zip(chunk, headers, metas, strict=True)
                if not filter or all(m.get(k) == v for k, v in filter.items())
            ]
            if limit is not None:
                picked = picked[: limit - len(out)]
            for entry, header, meta in picked:
                out.append(await self._tuple(state, index, entry, header, meta))
            if limit is not None and len(out) >= limit:
                break
        return out

    async def load_entry(self, entry: Mapping[str, Any]) -> Any:
        """The value of one entry, reading the parts it needs."""
        refs = needs(entry)
        blobs = await load_closure(self.store, self.cache, refs)
        return self.codec.load(entry, blobs)

    async def _tuple(
        self,
        state: ThreadState,
        index: ThreadIndex,
        entry: Entry,
        header: dict[str, Any],
        metadata: Any,
    ) -> CheckpointTuple:
        ns = entry.label.checkpoint_ns
        cid = entry.label.checkpoint_id
        values_in: dict[str, Any] = header.get("values") or {}
        digests = [d for e in values_in.values() for d in needs(e)]
        blobs = await load_closure(self.store, self.cache, digests)
        body = await self.load_entry(header["checkpoint"])
        checkpoint = dict(body)
        checkpoint["channel_versions"] = dict(header.get("versions") or {})
        checkpoint["channel_values"] = {
            ch: self.codec.load(e, blobs) for ch, e in values_in.items()
        }
        writes = await self.pending_writes(state, index, ns, cid)
        thread_id = state.thread_id
        parent = header.get("parent_checkpoint_id")
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": cid,
                }
            },
            checkpoint=checkpoint,  # type: ignore[arg-type]
            metadata=metadata,
            parent_config=None
            if not parent
            else {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": parent,
                }
            },
            pending_writes=writes,
        )

    async def delta_history(
        self, thread_id: str, ns: str, checkpoint_id: str | None, channels: Sequence[str]
    ) -> dict[str, DeltaChannelHistory]:
        """LangGraph's ``get_delta_channel_history``: walk the parent chain of a
        checkpoint once, in this process's index, collecting each channel's
        writes until an ancestor stores its value (the seed)."""
        result: dict[str, DeltaChannelHistory] = {ch: {"writes": []} for ch in channels}
        loaded = await self.load(thread_id)
        if loaded is None or not channels:
            return result
        state, index = loaded
        target = (
            index.latest.get(ns)
            if checkpoint_id is None
            else index.checkpoints.get((ns, checkpoint_id))
        )
        if target is None:
            return result
        collected: dict[str, list[PendingWrite]] = {ch: [] for ch in channels}
        remaining = set(channels)
        parent = (await read_header(self.store, self.cache, target)).get("parent_checkpoint_id")
        while parent and remaining:
            entry = index.checkpoints.get((ns, parent))
            if entry is None:
                break
            header = await read_header(self.store, self.cache, entry)
            writes = await self.pending_writes(state, index, ns, parent)
            for task_id, channel, value in reversed(writes):
                if channel in remaining:
                    collected[channel].append((task_id, channel, value))
            stored = header.get("values") or {}
            for channel in [ch for ch in remaining if ch in stored]:
                blobs = await load_closure(self.store, self.cache, needs(stored[channel]))
                result[channel]["seed"] = self.codec.load(stored[channel], blobs)
                remaining.discard(channel)
            parent = header.get("parent_checkpoint_id")
        for channel in channels:
            result[channel]["writes"] = list(reversed(collected[channel]))
        return result

    async def pending_writes(
        self, state: ThreadState, index: ThreadIndex, ns: str, checkpoint_id: str
    ) -> list[PendingWrite]:
        """The pending writes of a checkpoint, in ``writes_sort_key`` order:
        a regular write (task, index) counts once, the first stored; a special
        one (error, interrupt, resume...) the last stored."""
        stored = await self.stored_writes(index, ns, checkpoint_id)
        state.written.setdefault((ns, checkpoint_id), set()).update(
            (task_id, idx) for (task_id, idx) in stored
        )
        ordered = sorted(stored.items(), key=lambda kv: writes_sort_key(kv[1][2], *kv[0]))
        return [(task_id, channel, value) for (task_id, _), (channel, value, _) in ordered]

    async def stored_writes(
        self, index: ThreadIndex, ns: str, checkpoint_id: str
    ) -> dict[tuple[str, int], tuple[str, Any, str]]:
        """(task id, index) -> (channel, value, task path) of a checkpoint."""
        entries = index.writes.get((ns, checkpoint_id), [])
        if not entries:
            return {}
        headers = await asyncio.gather(*(read_header(self.store, self.cache, e) for e in entries))
        digests = [d for h in headers for w in h.get("writes") or [] for d in needs(w[2])]
        blobs = await load_closure(self.store, self.cache, digests)
        merged: dict[tuple[str, int], tuple[str, Any, str]] = {}
        for entry, header in zip(entries, headers, strict=True):
            task_id, task_path = entry.label.task_id, header.get("task_path") or ""
            for idx, channel, value_entry in header.get("writes") or []:
                key = (task_id, int(idx))
                if key[1] >= 0 and key in merged:
                    continue
                merged[key] = (channel, self.codec.load(value_entry, blobs), task_path)
        return merged

    async def headers(self, entries: Iterable[Entry]) -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(*(read_header(self.store, self.cache, e) for e in entries))
        )


def _epoch(state: ThreadState) -> int:
    if state.epoch is None:
        raise StorageError("conflict", "this worker no longer holds the thread", {})
    return state.epoch


def _json_versions(versions: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for channel, version in versions.items():
        if isinstance(version, str | int | float) and not isinstance(version, bool):
            out[channel] = version
        else:
            out[channel] = str(version)
    return out
