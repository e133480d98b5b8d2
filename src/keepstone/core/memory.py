"""MemoryStore over a RecordEngine: every write is an event through the log."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from keepstone.core.base import (
    RecordContext,
    build,
    check_id,
    create_once,
    parse,
    review_gate,
    row,
    same_or_conflict,
)
from keepstone.core.events import RecordEventLog
from keepstone.core.paging import (
    Listing,
    check_limit,
    decode_cursor,
    encode_cursor,
    listing_binding,
)
from keepstone.engine.spi import Check, Cmp, Op, Put, WriteBatch
from keepstone.engine.tables import ACTIVATIONS, EDGES, EVENTS, NODES, PATHS, PROFILES
from keepstone.errors import StorageError
from keepstone.schemas.audit import ApprovalMarker, LifecycleAction
from keepstone.schemas.common import Page
from keepstone.schemas.memory import (
    ActivationItem,
    ActivationPlan,
    EdgePut,
    EdgeRemoved,
    EventQuery,
    GraphSnapshot,
    GraphView,
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
    ProfilePolicy,
    ProfileUpdated,
)
from keepstone.schemas.replay import Compactions, PathView, check_view, fold, main_path


class RecordMemoryStore:
    """Memory graphs (see :class:`keepstone.ports.MemoryStore`)."""

    def __init__(self, ctx: RecordContext, events: RecordEventLog) -> None:
        self._ctx = ctx
        self._events = events

    def _event(self, profile_id: str, payload: Any, path_id: str | None = None) -> MemoryEvent:
        return build(
            MemoryEvent,
            "event",
            id=self._ctx.new_id("evt"),
            profile_id=profile_id,
            path_id=path_id,
            at=self._ctx.now(),
            actor=self._ctx.who(),
            payload=payload,
        )

    async def _append(
        self,
        event: MemoryEvent,
        action: str,
        approval: ApprovalMarker | None = None,
    ) -> MemoryEvent:
        return (await self._events.append_with([event], action=action, approval=approval))[0]

    # ------------------------------------------------------------------ profiles

    async def create_profile(
        self,
        name: str,
        *,
        attributes: dict[str, Any] | None = None,
        policy: ProfilePolicy | None = None,
        id: str | None = None,
    ) -> Profile:
        pid = self._ctx.new_id("prf", id)
        payload = build(ProfileCreated, "profile", name=name, attributes=attributes, policy=policy)

        async def write() -> Profile:
            await self._append(self._event(pid, payload), "memory.create_profile")
            return await self.get_profile(pid)

        async def stored() -> Profile | None:
            # Compared with what the profile was created with: updates since
            # do not make a repeated create a conflict.
            existing = await self._ctx.load_optional(Profile, PROFILES, pid)
            if existing is None:
                return None
            first = await self._ctx.engine.find(
                EVENTS,
                {"profile_id": pid, "payload.kind": "profile.created"},
                order=("seq",),
                limit=1,
            )
            created = parse(MemoryEvent, first[0]).payload if first else None
            was: Profile | ProfileCreated = (
                created if isinstance(created, ProfileCreated) else existing
            )
            same_or_conflict(was, payload, ("name", "attributes", "policy"), "profile", pid)
            return existing

        return await create_once(id, write, stored)

    async def update_profile(
        self,
        profile_id: str,
        *,
        name: str | None = None,
        attributes: dict[str, Any] | None = None,
        policy: ProfilePolicy | None = None,
    ) -> Profile:
        old = await self.get_profile(profile_id)
        payload = build(
            ProfileUpdated,
            "profile",
            name=name if name is not None else old.name,
            attributes=attributes if attributes is not None else old.attributes,
            policy=policy if policy is not None else old.policy,
        )
        await self._append(self._event(old.id, payload), "memory.update_profile")
        return await self.get_profile(old.id)

    async def get_profile(self, profile_id: str) -> Profile:
        return await self._ctx.load(Profile, PROFILES, check_id(profile_id, "profile"), "profile")

    async def list_profiles(self, *, cursor: str | None = None, limit: int = 100) -> Page[Profile]:
        return await self._ctx.page(
            Profile, PROFILES, cursor=cursor, limit=limit, listing=Listing("memory.list_profiles")
        )

    # ------------------------------------------------------------------ nodes and edges

    async def put_node(
        self,
        profile_id: str,
        kind: str,
        *,
        content: str | None = None,
        attributes: dict[str, Any] | None = None,
        id: str | None = None,
        path_id: str | None = None,
    ) -> MemoryNode:
        profile = await self.get_profile(profile_id)
        node_id = self._ctx.new_id("node", id)
        payload = build(
            NodePut, "node", node_id=node_id, node_kind=kind, content=content, attributes=attributes
        )
        await self._append(self._event(profile.id, payload, path_id), "memory.put_node")
        return await self.get_node(profile.id, node_id)

    async def get_node(self, profile_id: str, node_id: str) -> MemoryNode:
        check_id(profile_id, "profile")
        return await self._ctx.load(
            MemoryNode, NODES, f"{profile_id}:{check_id(node_id, 'node')}", "node"
        )

    async def list_nodes(
        self,
        profile_id: str,
        *,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[MemoryNode]:
        profile = await self.get_profile(profile_id)
        where: dict[str, Any] = {"profile_id": profile.id}
        if kind is not None:
            where["kind"] = kind
        return await self._ctx.page(
            MemoryNode,
            NODES,
            where=where,
            order=("id",),
            cursor=cursor,
            limit=limit,
            listing=Listing("memory.list_nodes", [profile.id, kind]),
        )

    async def search_nodes(
        self, profile_id: str, text: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[MemoryNode]:
        profile = await self.get_profile(profile_id)
        if not isinstance(text, str) or not text.strip():
            raise StorageError("invalid", "a text search needs at least one word", {})
        return await self._ctx.page(
            MemoryNode,
            NODES,
            where={"profile_id": profile.id},
            order=("id",),
            cursor=cursor,
            limit=limit,
            text=text,
            listing=Listing("memory.search_nodes", [profile.id, text]),
        )

    async def forget_node(
        self,
        profile_id: str,
        node_id: str,
        *,
        reason: str | None = None,
        approval: ApprovalMarker | None = None,
        path_id: str | None = None,
    ) -> None:
        profile = await self.get_profile(profile_id)
        node = await self.get_node(profile.id, node_id)
        action = LifecycleAction(
            kind="forget_node", target=node.id, profile_id=profile.id, params={"reason": reason}
        )
        await review_gate(self._ctx, action, approval, _policy(profile))
        payload = build(NodeForgotten, "event", node_id=node.id, reason=reason)
        await self._append(
            self._event(profile.id, payload, path_id), "lifecycle.forget_node", approval
        )

    async def put_edge(
        self,
        profile_id: str,
        source_id: str,
        target_id: str,
        kind: str,
        *,
        attributes: dict[str, Any] | None = None,
        id: str | None = None,
        path_id: str | None = None,
    ) -> MemoryEdge:
        profile = await self.get_profile(profile_id)
        edge_id = self._ctx.new_id("edge", id)
        payload = build(
            EdgePut,
            "edge",
            edge_id=edge_id,
            source_id=source_id,
            target_id=target_id,
            edge_kind=kind,
            attributes=attributes,
        )
        await self._append(self._event(profile.id, payload, path_id), "memory.put_edge")
        return await self.get_edge(profile.id, edge_id)

    async def remove_edge(
        self, profile_id: str, edge_id: str, *, reason: str | None = None
    ) -> None:
        edge = await self.get_edge(profile_id, edge_id)
        payload = build(EdgeRemoved, "event", edge_id=edge.id, reason=reason)
        await self._append(self._event(edge.profile_id, payload), "memory.remove_edge")

    async def get_edge(self, profile_id: str, edge_id: str) -> MemoryEdge:
        check_id(profile_id, "profile")
        return await self._ctx.load(
            MemoryEdge, EDGES, f"{profile_id}:{check_id(edge_id, 'edge')}", "edge"
        )

    async def list_edges(
        self,
        profile_id: str,
        *,
        source_id: str | None = None,
        target_id: str | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[MemoryEdge]:
        profile = await self.get_profile(profile_id)
        where: dict[str, Any] = {"profile_id": profile.id}
        for column, value in (("source_id", source_id), ("target_id", target_id), ("kind", kind)):
            if value is not None:
                where[column] = value
        return await self._ctx.page(
            MemoryEdge,
            EDGES,
            where=where,
            order=("id",),
            cursor=cursor,
            limit=limit,
            listing=Listing("memory.list_edges", [profile.id, source_id, target_id, kind]),
        )

    # ------------------------------------------------------------------ paths

    async def create_path(
        self,
        profile_id: str,
        *,
        name: str | None = None,
        parent_path_id: str | None = None,
        fork_seq: int | None = None,
        id: str | None = None,
    ) -> MemoryPath:
        profile = await self.get_profile(profile_id)
        path_id = self._ctx.new_id("path", id)
        asked = build(
            PathCreated,
            "path",
            path_id=path_id,
            name=name,
            parent_path_id=parent_path_id,
            fork_seq=fork_seq,
        )

        async def write() -> MemoryPath:
            payload = asked
            if asked.parent_path_id is not None and asked.fork_seq is None:
                last = await self._events.last_seq()
                payload = asked.model_copy(update={"fork_seq": last})
            event = self._event(profile.id, payload, asked.parent_path_id)
            await self._append(event, "memory.create_path")
            return await self.get_path(profile.id, path_id)

        async def stored() -> MemoryPath | None:
            existing = await self._ctx.load_optional(MemoryPath, PATHS, f"{profile.id}:{path_id}")
            if existing is None:
                return None
            # A fork point left to the default is whatever the first create chose.
            fields = ("name", "parent_path_id", *(("fork_seq",) if fork_seq is not None else ()))
            return same_or_conflict(existing, asked, fields, "path", path_id)

        return await create_once(id, write, stored)

    async def get_path(self, profile_id: str, path_id: str) -> MemoryPath:
        check_id(profile_id, "profile")
        return await self._ctx.load(
            MemoryPath, PATHS, f"{profile_id}:{check_id(path_id, 'path')}", "path"
        )

    async def list_paths(
        self, profile_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[MemoryPath]:
        profile = await self.get_profile(profile_id)
        return await self._ctx.page(
            MemoryPath,
            PATHS,
            where={"profile_id": profile.id},
            order=("id",),
            cursor=cursor,
            limit=limit,
            listing=Listing("memory.list_paths", profile.id),
        )

    async def merge_path(self, profile_id: str, path_id: str, into_path_id: str) -> MemoryPath:
        path = await self.get_path(profile_id, path_id)
        await self.get_path(profile_id, into_path_id)
        tip = await self._ctx.engine.find(
            EVENTS,
            {"profile_id": path.profile_id, "path_id": path.id},
            order=("seq",),
            desc=True,
            limit=1,
        )
        at_seq = int(orjson.loads(tip[0])["seq"]) if tip else path.fork_seq
        payload = build(
            PathMerged, "event", path_id=path.id, into_path_id=into_path_id, at_seq=at_seq
        )
        await self._append(self._event(path.profile_id, payload, into_path_id), "memory.merge_path")
        return await self.get_path(path.profile_id, path.id)

    async def abandon_path(
        self,
        profile_id: str,
        path_id: str,
        reason: str,
        *,
        approval: ApprovalMarker | None = None,
    ) -> MemoryPath:
        profile = await self.get_profile(profile_id)
        path = await self.get_path(profile.id, path_id)
        action = LifecycleAction(
            kind="abandon_path", target=path.id, profile_id=profile.id, params={"reason": reason}
        )
        payload = build(PathAbandoned, "event", path_id=path.id, reason=reason)
        await review_gate(self._ctx, action, approval, _policy(profile))
        await self._append(
            self._event(profile.id, payload, path.id), "lifecycle.abandon_path", approval
        )
        return await self.get_path(profile.id, path.id)

    async def compact_path(
        self,
        profile_id: str,
        path_id: str,
        *,
        through_seq: int,
        summary: str,
        approval: ApprovalMarker | None = None,
    ) -> MemoryPath:
        profile = await self.get_profile(profile_id)
        path = await self.get_path(profile.id, path_id)
        from_seq = (path.compacted_through_seq or 0) + 1
        payload = build(
            PathCompacted,
            "event",
            path_id=path.id,
            from_seq=from_seq,
            through_seq=through_seq,
            summary=summary,
        )
        if through_seq < from_seq:
            raise StorageError(
                "invalid",
                f"path {path.id} is compacted through seq {from_seq - 1} already",
                {"path": path.id, "compacted_through_seq": from_seq - 1},
            )
        action = LifecycleAction(
            kind="compact_path",
            target=path.id,
            profile_id=profile.id,
            params={"through_seq": through_seq},
        )
        await review_gate(self._ctx, action, approval, _policy(profile))
        await self._append(
            self._event(profile.id, payload, path.id), "lifecycle.compact_path", approval
        )
        return await self.get_path(profile.id, path.id)

    # ------------------------------------------------------------------ graphs and views

    async def graph(
        self, profile_id: str, *, path_id: str | None = None, view: GraphView = "path"
    ) -> GraphSnapshot:
        profile, seen, path_ids = await self._view(profile_id, path_id, view, None)
        if seen is None or seen.sees_everything(path_ids):
            return await self._stored_graph(profile)
        return fold(profile.id, [e async for e in self._seen(profile.id, seen, None)])

    async def replay(
        self,
        profile_id: str,
        *,
        path_id: str | None = None,
        view: GraphView = "path",
        through_seq: int | None = None,
    ) -> GraphSnapshot:
        profile, seen, _ = await self._view(profile_id, path_id, view, through_seq)
        return fold(profile.id, [e async for e in self._seen(profile.id, seen, through_seq)])

    async def list_events(
        self,
        profile_id: str,
        *,
        path_id: str | None = None,
        view: GraphView = "path",
        through_seq: int | None = None,
        compacted: bool = False,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> Page[MemoryEvent]:
        check_limit(limit)
        listing = Listing(
            "memory.list_events",
            {
                "profile": profile_id,
                "path": path_id,
                "view": view,
                "through_seq": through_seq,
                "compacted": compacted,
            },
        )
        binding = listing_binding(listing, EVENTS.name, ("seq",))
        after = decode_cursor(cursor, binding, ("int", "str"))
        profile, seen, _ = await self._view(profile_id, path_id, view, through_seq)
        items: list[MemoryEvent] = []
        events = self._seen(profile.id, seen, through_seq, compacted=compacted, after=after)
        async with aclosing(events):
            async for event in events:
                if len(items) == limit:  # one more exists: the page ends at the last item
                    cursor = encode_cursor(binding, _at(items[-1]))
                    return Page[MemoryEvent](items=items, next_cursor=cursor)
                items.append(event)
        return Page[MemoryEvent](items=items)

    async def iterate_events(
        self,
        profile_id: str,
        *,
        path_id: str | None = None,
        view: GraphView = "path",
        through_seq: int | None = None,
        compacted: bool = False,
        batch_size: int = 5000,
    ) -> AsyncIterator[MemoryEvent]:
        check_limit(batch_size)
        profile, seen, _ = await self._view(profile_id, path_id, view, through_seq)
        async for event in self._seen(
            profile.id, seen, through_seq, compacted=compacted, batch=batch_size
        ):
            yield event

    async def _view(
        self, profile_id: str, path_id: str | None, view: object, through_seq: int | None
    ) -> tuple[Profile, PathView | None, list[str]]:
        """The profile, what the view sees (``None``: everything) and the
        profile's path ids, after checking the arguments."""
        check_view(view, path_id)
        if through_seq is not None and (
            not isinstance(through_seq, int) or isinstance(through_seq, bool) or through_seq < 0
        ):
            raise StorageError(
                "invalid",
                "through_seq must be a non-negative integer",
                {"through_seq": repr(through_seq)},
            )
        profile = await self.get_profile(profile_id)
        if view == "all":
            return profile, None, []
        where = {"profile_id": profile.id}
        found = await self._ctx.engine.find(PATHS, where, order=("id",))
        paths = {p.id: p for p in (parse(MemoryPath, r) for r in found)}
        if path_id is None:
            path_id = main_path(profile.id, paths.values())
        elif check_id(path_id, "path") not in paths:
            raise StorageError(
                "not_found",
                f"profile {profile.id} has no path {path_id!r}",
                {"profile": profile.id, "path": path_id},
            )
        merged = EventQuery(profile_id=profile.id, kinds=["path.merged"], through_seq=through_seq)
        merges = [e async for e in self._events.iterate(merged)]
        return profile, PathView(path_id, paths, merges, through_seq=through_seq), list(paths)

    async def _seen(
        self,
        profile_id: str,
        seen: PathView | None,
        through_seq: int | None,
        *,
        compacted: bool = False,
        after: tuple[Any, ...] | None = None,
        batch: int = 5000,
    ) -> AsyncGenerator[MemoryEvent, None]:
        """The events of the view in seq order, after the keyset ``after``;
        without those a compaction covers when ``compacted``."""
        covered: Compactions | None = None
        if compacted:
            query = EventQuery(
                profile_id=profile_id, kinds=["path.compacted"], through_seq=through_seq
            )
            covered = Compactions(
                [e async for e in self._events.iterate(query) if seen is None or seen.sees(e)]
            )
        where: dict[str, Any] = {"profile_id": profile_id}
        if through_seq is not None:
            where["seq"] = Cmp("<=", through_seq)
        while True:
            rows = await self._ctx.engine.find(
                EVENTS, where, order=("seq",), after=after, limit=batch
            )
            for raw in rows:
                event = parse(MemoryEvent, raw)
                after = _at(event)
                if seen is not None and not seen.sees(event):
                    continue
                if covered is not None and covered.covers(event):
                    continue
                yield event
            if len(rows) < batch:
                return

    async def _stored_graph(self, profile: Profile) -> GraphSnapshot:
        """The graph as stored: every event of the profile, folded on write."""
        where = {"profile_id": profile.id}
        nodes = [
            parse(MemoryNode, r) for r in await self._ctx.engine.find(NODES, where, order=("id",))
        ]
        edges = [
            parse(MemoryEdge, r) for r in await self._ctx.engine.find(EDGES, where, order=("id",))
        ]
        paths = [
            parse(MemoryPath, r) for r in await self._ctx.engine.find(PATHS, where, order=("id",))
        ]
        last = await self._ctx.engine.find(EVENTS, where, order=("seq",), desc=True, limit=1)
        return GraphSnapshot(
            profile_id=profile.id,
            profile=profile,
            nodes=nodes,
            edges=edges,
            paths=paths,
            through_seq=int(orjson.loads(last[0])["seq"]) if last else 0,
        )

    # ------------------------------------------------------------------ activations

    async def record_activation(
        self,
        profile_id: str,
        items: list[ActivationItem],
        *,
        path_id: str | None = None,
        context_id: str | None = None,
        planner: str | None = None,
        id: str | None = None,
    ) -> ActivationPlan:
        profile = await self.get_profile(profile_id)
        plan = build(
            ActivationPlan,
            "activation plan",
            id=self._ctx.new_id("act", id),
            profile_id=profile.id,
            path_id=path_id,
            context_id=context_id,
            items=items,
            planner=planner,
            created_at=self._ctx.now(),
        )
        ops: list[Op] = [
            Check(
                NODES,
                f"{profile.id}:{item.node_id}",
                "integrity",
                f"activation names node {item.node_id}, which does not exist",
                details={"node": item.node_id},
            )
            for item in plan.items
        ]
        if path_id is not None:
            ops.append(
                Check(
                    PATHS,
                    f"{profile.id}:{path_id}",
                    "integrity",
                    f"activation names path {path_id}, which does not exist",
                    details={"path": path_id},
                )
            )
        ops.append(Put(ACTIVATIONS, row(plan), expect="absent"))

        async def write() -> ActivationPlan:
            batch = WriteBatch(ops)
            self._ctx.audit(batch, "memory.record_activation", plan.id, {"items": len(plan.items)})
            await self._ctx.apply(batch)
            return plan

        async def stored() -> ActivationPlan | None:
            existing = await self._ctx.load_optional(ActivationPlan, ACTIVATIONS, plan.id)
            if existing is None:
                return None
            fields = ("profile_id", "path_id", "context_id", "items", "planner")
            return same_or_conflict(existing, plan, fields, "activation plan", plan.id)

        return await create_once(id, write, stored)

    async def list_activations(
        self,
        profile_id: str,
        *,
        path_id: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[ActivationPlan]:
        profile = await self.get_profile(profile_id)
        where: dict[str, Any] = {"profile_id": profile.id}
        if path_id is not None:
            where["path_id"] = path_id
        return await self._ctx.page(
            ActivationPlan,
            ACTIVATIONS,
            where=where,
            cursor=cursor,
            limit=limit,
            listing=Listing("memory.list_activations", [profile.id, path_id]),
        )


def _at(event: MemoryEvent) -> tuple[int, str]:
    """Where ``event`` sits in a listing of events (its keyset: seq, then id)."""
    return (event.seq or 0, event.id)


def _policy(profile: Profile) -> Any:
    return None if profile.policy is None else profile.policy.review_required
