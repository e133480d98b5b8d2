"""EventLog over a RecordEngine: events and their effect on the graph, together.

An append loads the part of each profile's graph that its events touch,
validates every event against it in order, folds the events with the same
:class:`~keepstone.schemas.replay.GraphFold` that replay uses, and writes the
events and the changed graph records in one batch. Batches that change a
profile's graph check and bump the profile's write version, so concurrent
writers of one profile serialise (the loser re-reads and retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import orjson

from keepstone.core.base import RecordContext, check_id, parse, revalidate, row
from keepstone.core.paging import scan
from keepstone.engine.spi import Append, Check, Cmp, Delete, In, Op, Put, Table, WriteBatch
from keepstone.engine.tables import EDGES, EVENTS, MEMORY_HEADS, NODES, PATHS, PROFILES
from keepstone.errors import StorageError
from keepstone.schemas._base import dumps
from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page
from keepstone.schemas.memory import (
    CustomEvent,
    EdgePut,
    EdgeRemoved,
    EventQuery,
    MemoryEdge,
    MemoryEvent,
    MemoryNode,
    MemoryPath,
    NodeForgotten,
    NodePut,
    PathAbandoned,
    PathCompacted,
    PathCreated,
    PathMerged,
    Profile,
    ProfileCreated,
)
from keepstone.schemas.replay import GraphFold

_RETRIES = 40

G = TypeVar("G", MemoryNode, MemoryEdge, MemoryPath)


def _content(event: MemoryEvent) -> bytes:
    data = event.model_dump(mode="json")
    data.pop("seq", None)
    return dumps(data)


class _ProfileState:
    """The loaded slice of one profile's graph, folded forward event by event."""

    def __init__(self, profile_id: str) -> None:
        self.fold = GraphFold(profile_id)
        self.loaded_head = False
        self.unchecked: MemoryEvent | None = None
        """The first custom event accepted before the profile was read."""
        self.original_profile: Profile | None = None
        self.version: int | None = None
        self.graph_changed = False
        self.touched: dict[str, set[str]] = {"nodes": set(), "edges": set(), "paths": set()}
        self.loaded: dict[str, dict[str, Any]] = {"nodes": {}, "edges": {}, "paths": {}}


class RecordEventLog:
    """The memory event log (see :class:`keepstone.ports.EventLog`)."""

    def __init__(self, ctx: RecordContext) -> None:
        self._ctx = ctx
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def append(self, events: Sequence[MemoryEvent]) -> list[MemoryEvent]:
        return await self.append_with(events)

    async def append_with(
        self,
        events: Sequence[MemoryEvent],
        *,
        action: str = "events.append",
        approval: ApprovalMarker | None = None,
    ) -> list[MemoryEvent]:
        """Append, recording ``action`` (and ``approval``) in the audit record."""
        checked = self._check_input(events)
        if not checked:
            return []
        if all(isinstance(e.payload, CustomEvent) for e in checked):
            return await self._append_custom(checked, action, approval)
        # Graph-changing appends to one profile take turns within this process,
        # so they never race each other; other processes can still win the
        # version check, which is retried with jittered backoff.
        writers = sorted({e.profile_id for e in checked if not isinstance(e.payload, CustomEvent)})
        async with contextlib.AsyncExitStack() as stack:
            for profile_id in writers:
                await stack.enter_async_context(self._profile_lock(profile_id))
            for attempt in range(_RETRIES):
                try:
                    return await self._append_once(checked, action, approval)
                except StorageError as exc:
                    if not exc.details.get("retry"):
                        raise
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise StorageError(
            "conflict",
            "the profile kept changing under this append (other writers); try again",
            {"profiles": writers},
        )

    async def _append_custom(
        self, events: list[MemoryEvent], action: str, approval: ApprovalMarker | None
    ) -> list[MemoryEvent]:
        """Custom events change no graph: the batch itself checks that their
        profiles and paths exist, and the engine's idempotent append tells a
        retry (same content: the stored seq) from a clash (``conflict``), so
        nothing is read first."""
        profiles = sorted({e.profile_id for e in events})
        ops: list[Op] = [
            Check(
                PROFILES,
                pid,
                "integrity",
                f"profile {pid} does not exist",
                details={"profile": pid},
            )
            for pid in profiles
        ]
        for pid, path_id in sorted({(e.profile_id, e.path_id) for e in events if e.path_id}):
            ops.append(
                Check(
                    PATHS,
                    f"{pid}:{path_id}",
                    "integrity",
                    f"path {path_id} of profile {pid} does not exist",
                    details={"profile": pid, "path": path_id},
                )
            )
        first = len(ops)
        ops += [Append(EVENTS, row(e), idempotent=True) for e in events]
        batch = WriteBatch(ops, audit_only_changes=True)
        self._ctx.audit(
            batch,
            action,
            profiles[0] if len(profiles) == 1 else "events",
            {"count": len({e.id for e in events}), "profiles": profiles},
            approval=approval,
        )
        try:
            result = await self._ctx.apply(batch)
        except StorageError as exc:
            if exc.code == "conflict" and exc.details.get("table") == EVENTS.name:
                raise _different(str(exc.details.get("key"))) from None
            raise
        return [
            e.model_copy(update={"seq": seq})
            for e, seq in zip(events, result.seqs[first:], strict=True)
        ]

    def _profile_lock(self, profile_id: str) -> asyncio.Lock:
        lock = self._locks.get(profile_id)
        if lock is None:
            lock = self._locks[profile_id] = asyncio.Lock()
        return lock

    def _check_input(self, events: Sequence[MemoryEvent]) -> list[MemoryEvent]:
        if isinstance(events, MemoryEvent | dict) or not isinstance(events, Sequence):
            raise StorageError("invalid", "append takes a sequence of MemoryEvent", {})
        if len(events) > self._ctx.limits.max_batch:
            raise StorageError("invalid", "too many events in one append", {"count": len(events)})
        out: list[MemoryEvent] = []
        for i, event in enumerate(events):
            if not isinstance(event, MemoryEvent | dict):
                raise StorageError("invalid", f"event {i} is not a MemoryEvent", {"index": i})
            event = revalidate(MemoryEvent, event, f"event {i}")
            if event.seq is not None:
                raise StorageError(
                    "invalid",
                    f"event {event.id} already has seq {event.seq}; the log assigns it",
                    {"event": event.id},
                )
            out.append(event)
        return out

    async def _append_once(
        self, events: list[MemoryEvent], action: str, approval: ApprovalMarker | None
    ) -> list[MemoryEvent]:
        engine = self._ctx.engine
        stored = await engine.get_many(EVENTS, sorted({e.id for e in events}))
        known: dict[str, tuple[bytes, int | None]] = {}
        for key, raw in stored.items():
            data = orjson.loads(raw)
            seq = data.pop("seq")
            known[key] = (dumps(data), seq)
        first: dict[str, MemoryEvent] = {}
        fresh: list[MemoryEvent] = []
        for event in events:
            # Content is compared only when an id repeats (stored or in this batch).
            if event.id in known:
                if known[event.id][0] != _content(event):
                    raise _different(event.id)
                continue
            if event.id in first:
                if _content(first[event.id]) != _content(event):
                    raise _different(event.id)
                continue
            first[event.id] = event
            fresh.append(event)
        ops: list[Op] = []
        states: dict[str, _ProfileState] = {}
        for event in fresh:
            state = states.get(event.profile_id)
            if state is None:
                state = states[event.profile_id] = _ProfileState(event.profile_id)
            await self._validate(event, state)
            state.fold.apply(event)
            ops.append(Append(EVENTS, row(event), idempotent=True))
        for pid, state in states.items():
            ops += self._graph_ops(pid, state)
        seqs: dict[str, int] = {}
        if ops:
            batch = WriteBatch(ops)
            profiles = sorted(states)
            self._ctx.audit(
                batch,
                action,
                profiles[0] if len(profiles) == 1 else "events",
                {"count": len(fresh), "profiles": profiles},
                approval=approval,
            )
            result = await self._ctx.apply(batch)
            for event, seq in zip(fresh, result.seqs, strict=False):
                if seq is not None:
                    seqs[event.id] = seq
        out = []
        for event in events:
            seq = seqs.get(event.id)
            if seq is None and event.id in known:
                seq = known[event.id][1]
            if seq is None:  # re-read an event stored by a concurrent writer
                again = await engine.get(EVENTS, event.id)
                seq = int(orjson.loads(again or b'{"seq":0}')["seq"])
            out.append(event.model_copy(update={"seq": seq}))
        return out

    async def _load_head(self, state: _ProfileState) -> None:
        """Read the profile and its write version (once per batch)."""
        if state.loaded_head:
            return
        engine = self._ctx.engine
        pid = state.fold.profile_id
        raw = await engine.get(PROFILES, pid)
        head = await engine.get(MEMORY_HEADS, pid)
        state.version = None if head is None else int(orjson.loads(head)["version"])
        if state.fold.profile is None:
            state.fold.profile = None if raw is None else parse(Profile, raw)
        state.original_profile = None if raw is None else parse(Profile, raw)
        state.loaded_head = True

    async def _node(self, state: _ProfileState, node_id: str) -> MemoryNode | None:
        return await self._record(state, "nodes", NODES, MemoryNode, state.fold.nodes, node_id)

    async def _edge(self, state: _ProfileState, edge_id: str) -> MemoryEdge | None:
        return await self._record(state, "edges", EDGES, MemoryEdge, state.fold.edges, edge_id)

    async def _path(self, state: _ProfileState, path_id: str) -> MemoryPath | None:
        return await self._record(state, "paths", PATHS, MemoryPath, state.fold.paths, path_id)

    async def _record(
        self,
        state: _ProfileState,
        kind: str,
        table: Table,
        model: type[G],
        folded: dict[str, G],
        ident: str,
    ) -> G | None:
        """A node, edge or path of the profile: as folded so far, else read once."""
        if ident not in folded and ident not in state.touched[kind]:
            state.touched[kind].add(ident)
            raw = await self._ctx.engine.get(table, f"{state.fold.profile_id}:{ident}")
            found = None if raw is None else parse(model, raw)
            state.loaded[kind][ident] = found
            if found is not None:
                folded[ident] = found
        return folded.get(ident)

    async def _validate(self, event: MemoryEvent, state: _ProfileState) -> None:
        p = event.payload
        pid = event.profile_id
        if isinstance(p, CustomEvent) and event.path_id is None and not state.graph_changed:
            state.unchecked = state.unchecked or event
            return  # the batch checks that the profile exists, in its transaction
        await self._load_head(state)
        if state.unchecked is not None and state.original_profile is None:
            raise StorageError(
                "integrity",
                f"event {state.unchecked.id} names profile {pid}, which does not exist yet",
                {"event": state.unchecked.id, "profile": pid},
            )
        if isinstance(p, ProfileCreated):
            if state.fold.profile is not None or state.version is not None:
                raise StorageError("conflict", f"profile {pid} already exists", {"profile": pid})
            state.graph_changed = True
            return
        if state.fold.profile is None:
            raise StorageError(
                "integrity",
                f"event {event.id} names profile {pid}, which does not exist",
                {"event": event.id, "profile": pid},
            )
        if event.path_id is not None and await self._path(state, event.path_id) is None:
            raise _missing(event, "path", event.path_id)
        if isinstance(p, CustomEvent):
            return
        state.graph_changed = True
        if isinstance(p, NodePut):
            await self._node(state, p.node_id)
        elif isinstance(p, NodeForgotten):
            if await self._node(state, p.node_id) is None:
                raise _missing(event, "node", p.node_id)
            for column in ("source_id", "target_id"):
                for raw in await self._ctx.engine.find(
                    EDGES, {"profile_id": pid, column: p.node_id}
                ):
                    edge = parse(MemoryEdge, raw)
                    await self._edge(state, edge.id)
        elif isinstance(p, EdgePut):
            for end in (p.source_id, p.target_id):
                if await self._node(state, end) is None:
                    raise _missing(event, "node", end)
            await self._edge(state, p.edge_id)
        elif isinstance(p, EdgeRemoved):
            if await self._edge(state, p.edge_id) is None:
                raise _missing(event, "edge", p.edge_id)
        elif isinstance(p, PathCreated):
            if await self._path(state, p.path_id) is not None:
                raise StorageError(
                    "conflict", f"path {p.path_id} already exists", {"path": p.path_id}
                )
            if p.parent_path_id is not None:
                parent = await self._path(state, p.parent_path_id)
                if parent is None:
                    raise _missing(event, "path", p.parent_path_id)
                _require_active(parent)
        elif isinstance(p, PathMerged):
            if p.path_id == p.into_path_id:
                raise StorageError(
                    "conflict", "a path cannot merge into itself", {"path": p.path_id}
                )
            for path_id in (p.path_id, p.into_path_id):
                path = await self._path(state, path_id)
                if path is None:
                    raise _missing(event, "path", path_id)
                _require_active(path)
        elif isinstance(p, PathAbandoned):
            path = await self._path(state, p.path_id)
            if path is None:
                raise _missing(event, "path", p.path_id)
            _require_active(path)
        elif isinstance(p, PathCompacted):
            path = await self._path(state, p.path_id)
            if path is None:
                raise _missing(event, "path", p.path_id)
            floor = path.compacted_through_seq or 0
            if p.through_seq <= floor or p.from_seq > p.through_seq:
                raise StorageError(
                    "invalid",
                    f"compaction of path {p.path_id} must cover seqs after {floor}",
                    {"path": p.path_id, "compacted_through_seq": floor},
                )

    def _graph_ops(self, pid: str, state: _ProfileState) -> list[Op]:
        fold = state.fold
        if not state.graph_changed:
            return [
                Check(
                    PROFILES,
                    pid,
                    "integrity",
                    f"profile {pid} does not exist",
                    details={"profile": pid},
                )
            ]
        ops: list[Op] = []
        if state.version is None:
            ops.append(Put(MEMORY_HEADS, {"id": pid, "version": 1}, expect="absent"))
        else:
            ops += [
                Check(
                    MEMORY_HEADS,
                    pid,
                    "conflict",
                    f"profile {pid} changed concurrently",
                    equals={"version": state.version},
                    details={"profile": pid, "retry": True},
                ),
                Put(MEMORY_HEADS, {"id": pid, "version": state.version + 1}),
            ]
        if fold.profile is not None and fold.profile != state.original_profile:
            ops.append(Put(PROFILES, row(fold.profile)))
        for table, name, records in (
            (NODES, "nodes", fold.nodes),
            (EDGES, "edges", fold.edges),
            (PATHS, "paths", fold.paths),
        ):
            loaded = state.loaded[name]
            for key in sorted(state.touched[name] | set(records)):
                record = records.get(key)
                before = loaded.get(key)
                if record is None:
                    if before is not None:
                        ops.append(Delete(table, f"{pid}:{key}"))
                elif record != before:
                    ops.append(Put(table, row(record)))
        return ops

    # ------------------------------------------------------------------ reads

    async def get(self, event_id: str) -> MemoryEvent:
        return await self._ctx.load(MemoryEvent, EVENTS, check_id(event_id, "event"), "event")

    @staticmethod
    def _where(q: EventQuery) -> dict[str, Any]:
        where: dict[str, Any] = {}
        if q.profile_id is not None:
            where["profile_id"] = q.profile_id
        if q.path_id is not None:
            where["path_id"] = q.path_id
        if q.kinds is not None:
            where["payload.kind"] = In(tuple(q.kinds))
        bounds = []
        if q.after_seq is not None:
            bounds.append(Cmp(">", q.after_seq))
        if q.through_seq is not None:
            bounds.append(Cmp("<=", q.through_seq))
        if bounds:
            where["seq"] = tuple(bounds)
        return where

    async def list(
        self, query: EventQuery | None = None, *, cursor: str | None = None, limit: int = 1000
    ) -> Page[MemoryEvent]:
        return await self._ctx.page(
            MemoryEvent,
            EVENTS,
            where=self._where(query or EventQuery()),
            order=("seq",),
            cursor=cursor,
            limit=limit,
        )

    async def iterate(
        self, query: EventQuery | None = None, *, batch_size: int = 5000
    ) -> AsyncIterator[MemoryEvent]:
        where = self._where(query or EventQuery())
        async for raw in scan(self._ctx.engine, EVENTS, where, order=("seq",), batch=batch_size):
            yield parse(MemoryEvent, raw)

    async def last_seq(self) -> int:
        return await self._ctx.engine.last_seq(EVENTS)


def _different(event_id: str) -> StorageError:
    return StorageError(
        "conflict",
        f"event {event_id} already exists with different content",
        {"event": event_id},
    )


def _missing(event: MemoryEvent, what: str, ident: str) -> StorageError:
    return StorageError(
        "integrity",
        f"event {event.id} refers to {what} {ident}, which does not exist",
        {"event": event.id, what: ident},
    )


def _require_active(path: MemoryPath) -> None:
    if path.status != "active":
        raise StorageError(
            "conflict",
            f"path {path.id} is {path.status}, not active",
            {"path": path.id, "status": path.status},
        )
