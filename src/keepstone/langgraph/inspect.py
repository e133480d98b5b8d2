"""Looking at LangGraph threads as data, without LangGraph: what the
``keepstone threads`` commands show.

Values are read as the JSON keepstone stored and made readable: a tagged
object such as a message becomes ``{"__class__": "...AIMessage", ...fields}``,
a datetime its ISO text, a set or tuple a list. Nothing is rebuilt, so
nothing runs.
"""

from __future__ import annotations

import asyncio
import base64
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keepstone.errors import StorageError
from keepstone.langgraph.layout import entry_digests, header_digests
from keepstone.langgraph.parts import join
from keepstone.langgraph.serde import TAG
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
from keepstone.schemas import Run
from keepstone.store import Store


@dataclass(frozen=True)
class ThreadSummary:
    thread_id: str
    run_id: str
    status: str
    checkpoints: int
    pending_writes: int
    namespaces: int
    latest: str | None
    latest_step: int | None
    updated_at: datetime | None


@dataclass
class CheckpointNode:
    """One checkpoint in a thread's history."""

    checkpoint_id: str
    checkpoint_ns: str
    parent_id: str | None
    step: Any
    source: Any
    created_at: datetime
    writes: int
    children: list[CheckpointNode] = field(default_factory=list)


@dataclass(frozen=True)
class CheckpointState:
    """The state at one checkpoint, readable."""

    thread_id: str
    checkpoint_id: str
    checkpoint_ns: str
    parent_id: str | None
    metadata: Any
    values: dict[str, Any]
    versions: dict[str, Any]
    writes: list[dict[str, Any]]


class ThreadInspector:
    """Reads threads for people (see the module docstring).

    One inspector may serve many requests (the web inspector keeps one):
    it keeps the index of the threads it read last (up to
    :data:`INDEX_BUDGET` snapshots in all) and brings each up to date with
    one short read when it is used again, and caches headers and values by
    digest.
    """

    INDEX_BUDGET = 200_000
    """Snapshots kept in the indexes of recently read threads, in all."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cache = DigestCache(32 << 20)
        self._indexes: OrderedDict[str, tuple[ThreadIndex, asyncio.Lock]] = OrderedDict()

    async def _refreshed(self, run: Run) -> ThreadIndex:
        """The index of ``run``, up to date (kept for the next call)."""
        found = self._indexes.get(run.id)
        if found is None:
            found = (ThreadIndex(run.id), asyncio.Lock())
            self._indexes[run.id] = found
        self._indexes.move_to_end(run.id)
        index, lock = found
        async with lock:  # a refresh reads in several steps: one at a time
            await index.refresh(self.store, run)
        kept = sum(len(i.entries) for i, _ in self._indexes.values())
        while kept > self.INDEX_BUDGET and len(self._indexes) > 1:
            _, (old, _) = self._indexes.popitem(last=False)
            kept -= len(old.entries)
        return index

    async def _index(self, thread_id: str, *, deleted: bool = False) -> tuple[Run, ThreadIndex]:
        run, _ = await current_run(self.store, thread_id)
        if run is None and deleted:
            runs = [
                r
                for r in await thread_runs(self.store, include_deleted=True)
                if run_thread_id(r) == thread_id
            ]
            run = runs[-1] if runs else None
        if run is None:
            raise StorageError(
                "not_found",
                f"no LangGraph thread {thread_id!r} in this store "
                "(keepstone threads list shows the threads)",
                {"thread_id": thread_id},
            )
        return run, await self._refreshed(run)

    async def threads(self, *, deleted: bool = False) -> list[ThreadSummary]:
        """Every thread (with ``deleted``, their tombstones too), oldest first."""
        return [
            await self.summary(run)
            for run in await thread_runs(self.store, include_deleted=deleted)
        ]

    async def thread(self, thread_id: str) -> ThreadSummary:
        """The summary of the live thread ``thread_id``.

        Raises:
            StorageError: ``not_found`` when there is no such live thread.
        """
        run, _ = await self._index(thread_id)
        return await self.summary(run)

    async def summary(self, run: Run) -> ThreadSummary:
        """The summary of the thread a run named ``langgraph.thread`` holds
        (what ``keepstone threads list`` shows for it)."""
        index = await self._refreshed(run)
        latest = index.latest.get("")
        step = None
        if latest is not None:
            step = (await self._metadata(latest)).get("step")
        return ThreadSummary(
            thread_id=run_thread_id(run),
            run_id=run.id,
            status="deleted" if is_deleted(run) else "live",
            checkpoints=len(index.checkpoints),
            pending_writes=sum(len(w) for w in index.writes.values()),
            namespaces=len(index.latest),
            latest=None if latest is None else latest.label.checkpoint_id,
            latest_step=step if isinstance(step, int) else None,
            updated_at=index.entries[-1].created_at if index.entries else None,
        )

    async def _metadata(self, entry: Entry) -> dict[str, Any]:
        header = await read_header(self.store, self.cache, entry)
        meta = await self._plain_entry(header.get("metadata"))
        return meta if isinstance(meta, dict) else {}

    async def _node_facts(self, entry: Entry) -> tuple[str | None, Any, Any]:
        """A checkpoint's parent, step and source (kept by header digest:
        what a digest names never changes)."""
        key = f"facts:{entry.header_digest}"
        found = self.cache.get(key)
        if found is None:
            header = await read_header(self.store, self.cache, entry)
            meta = await self._plain_entry(header.get("metadata"))
            meta = meta if isinstance(meta, dict) else {}
            found = (header.get("parent_checkpoint_id"), meta.get("step"), meta.get("source"))
            self.cache.put(key, found, 200)
        parent_id, step, source = found
        return parent_id, step, source

    async def history(self, thread_id: str) -> list[CheckpointNode]:
        """The thread's checkpoints as trees (roots first, children by id):
        one tree per line of history; a fork is a node with several children."""
        _, index = await self._index(thread_id)
        nodes: dict[tuple[str, str], CheckpointNode] = {}
        for (ns, cid), entry in sorted(index.checkpoints.items(), key=lambda kv: kv[0][1]):
            parent_id, step, source = await self._node_facts(entry)
            nodes[(ns, cid)] = CheckpointNode(
                checkpoint_id=cid,
                checkpoint_ns=ns,
                parent_id=parent_id,
                step=step,
                source=source,
                created_at=entry.created_at,
                writes=len(index.writes.get((ns, cid), [])),
            )
        roots = []
        for (ns, _), node in nodes.items():
            parent = None if node.parent_id is None else nodes.get((ns, node.parent_id))
            if parent is None:
                roots.append(node)
            else:
                parent.children.append(node)
        roots.sort(key=lambda n: (n.checkpoint_ns, n.checkpoint_id))
        return roots

    async def state(
        self, thread_id: str, checkpoint_id: str | None = None, checkpoint_ns: str = ""
    ) -> CheckpointState:
        """The state at a checkpoint (default: the latest of the namespace)."""
        _, index = await self._index(thread_id)
        if checkpoint_id is None:
            entry = index.latest.get(checkpoint_ns)
        else:
            entry = index.checkpoints.get((checkpoint_ns, checkpoint_id))
        if entry is None:
            what = "no checkpoint" if checkpoint_id is None else f"no checkpoint {checkpoint_id!r}"
            raise StorageError(
                "not_found",
                f"thread {thread_id!r} has {what} in namespace {checkpoint_ns!r}",
                {"thread_id": thread_id, "checkpoint_id": checkpoint_id},
            )
        header = await read_header(self.store, self.cache, entry)
        blobs = await load_closure(self.store, self.cache, sorted(header_digests(header)))
        values = {ch: self._plain(e, blobs) for ch, e in (header.get("values") or {}).items()}
        writes = []
        for w_entry in index.writes.get((checkpoint_ns, entry.label.checkpoint_id), []):
            w_header = await read_header(self.store, self.cache, w_entry)
            w_blobs = await load_closure(self.store, self.cache, sorted(header_digests(w_header)))
            for idx, channel, value in w_header.get("writes") or []:
                writes.append(
                    {
                        "task_id": w_entry.label.task_id,
                        "task_path": w_header.get("task_path") or "",
                        "index": idx,
                        "channel": channel,
                        "value": self._plain(value, w_blobs),
                    }
                )
        return CheckpointState(
            thread_id=thread_id,
            checkpoint_id=entry.label.checkpoint_id,
            checkpoint_ns=checkpoint_ns,
            parent_id=header.get("parent_checkpoint_id"),
            metadata=self._plain(header.get("metadata"), blobs),
            values=values,
            versions=dict(header.get("versions") or {}),
            writes=writes,
        )

    async def _plain_entry(self, entry: Any) -> Any:
        if not isinstance(entry, dict):
            return None
        blobs = await load_closure(self.store, self.cache, entry_digests(entry))
        return self._plain(entry, blobs)

    @staticmethod
    def _plain(entry: Any, blobs: dict[str, Any]) -> Any:
        if not isinstance(entry, dict):
            return None
        kind = entry.get("s")
        if "v" in entry:
            data = join(entry["v"], blobs)
            return plain(data) if kind == "json" else f"<{kind} value>"
        raw = join(entry.get("b"), blobs)
        size = len(base64.b64decode(raw)) if isinstance(raw, str) else 0
        return f"<{kind} value, {size} bytes>"


def plain(value: Any) -> Any:
    """Tagged JSON made readable (see the module docstring)."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {k: plain(v) for k, v in value.items()}
    data: Any = value.get("v")
    if tag == "obj":
        module, name = value.get("cls") or ["?", "?"]
        body = plain(data)
        label = f"{module}.{name}"
        return (
            {"__class__": label, **body}
            if isinstance(body, dict)
            else {"__class__": label, "value": body}
        )
    if tag == "dict":
        return {str(plain(k)): plain(v) for k, v in data}
    if tag in ("bytes", "bytearray"):
        return f"<{len(base64.b64decode(data))} bytes>"
    if tag == "delta_snapshot":
        return {"__delta_snapshot__": plain(data)}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


def diff(a: CheckpointState, b: CheckpointState) -> dict[str, Any]:
    """What changed from ``a`` to ``b``: channels added, removed and changed
    (with both values), and the metadata of each."""
    changed = {
        ch: {"from": a.values[ch], "to": b.values[ch]}
        for ch in sorted(set(a.values) & set(b.values))
        if a.values[ch] != b.values[ch]
    }
    return {
        "from": a.checkpoint_id,
        "to": b.checkpoint_id,
        "added": {ch: b.values[ch] for ch in sorted(set(b.values) - set(a.values))},
        "removed": {ch: a.values[ch] for ch in sorted(set(a.values) - set(b.values))},
        "changed": changed,
        "unchanged": sorted(ch for ch in set(a.values) & set(b.values) if ch not in changed),
        "metadata": {"from": a.metadata, "to": b.metadata},
    }
