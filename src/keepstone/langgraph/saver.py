"""``KeepstoneSaver``: a LangGraph checkpointer on any keepstone store.

.. code-block:: python

    with KeepstoneSaver.from_url("sqlite:///agent.db") as saver:
        graph = builder.compile(checkpointer=saver)
        graph.invoke(inputs, {"configurable": {"thread_id": "t1"}})

    async with KeepstoneSaver.from_url("postgresql://...") as saver:
        graph = builder.compile(checkpointer=saver)
        await graph.ainvoke(inputs, {"configurable": {"thread_id": "t1"}})

Both the sync and the async methods of ``BaseCheckpointSaver`` are
implemented, over one async core. Opening the store applies keepstone's
migrations: there is no ``setup()`` to call. How threads are stored is
described in :mod:`keepstone.langgraph.layout`; writers are fenced as
:mod:`keepstone.langgraph.fencing` explains; removals follow
:mod:`keepstone.langgraph.retention`.
"""

from __future__ import annotations

import builtins
import copy
import os
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from keepstone.errors import StorageError
from keepstone.langgraph._bridge import LoopBinding, Opening
from keepstone.langgraph.checkpoints import ThreadCheckpoints
from keepstone.langgraph.retention import PrunePlan, ThreadRetention
from keepstone.langgraph.serde import KeepstoneSerializer
from keepstone.schemas import ApprovalMarker
from keepstone.schemas._base import current_actor
from keepstone.store import Store

Approval = ApprovalMarker | Literal["auto"] | None


class KeepstoneSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer that keeps threads in a keepstone store.

    Args:
        store: an open :class:`keepstone.Store` (any backend). It is used on
            the event loop it was opened on; sync methods may be called from
            other threads. :meth:`from_url` opens one for you.
        serde: the serializer of channel values and writes (default: a
            :class:`~keepstone.langgraph.KeepstoneSerializer`; pickle is
            refused whatever you pass).
        ttl: threads idle for longer than this are removed by :meth:`sweep`.
        approval: the approval recorded when LangGraph asks to delete or prune
            (``delete_thread``, ``delete_for_runs``, ``prune``, the TTL sweep).
            ``"auto"`` (default) records an approval naming the actor and the
            LangGraph call, since that call is the explicit request; ``None``
            makes those calls raise ``review_required`` unless you pass an
            approval to :meth:`aapply`; or pass your own ``ApprovalMarker``.
        cache_bytes: the budget of the in-process cache of headers and values
            (content-addressed, so it never goes stale).
    """

    serde: SerializerProtocol

    def __init__(
        self,
        store: Store,
        *,
        serde: SerializerProtocol | None = None,
        ttl: timedelta | None = None,
        approval: Approval = "auto",
        cache_bytes: int = 64 << 20,
        max_threads: int = 4096,
        _binding: LoopBinding | None = None,
    ) -> None:
        super().__init__(serde=serde or KeepstoneSerializer())
        self.store = store
        self.ttl = ttl
        self.approval = approval
        self._binding = _binding or LoopBinding(store)
        self._core = ThreadCheckpoints(
            store, self.serde, cache_bytes=cache_bytes, max_threads=max_threads
        )
        self._retention = ThreadRetention(self._core)

    @classmethod
    def from_url(
        cls,
        url: str | os.PathLike[str],
        *,
        serde: SerializerProtocol | None = None,
        ttl: timedelta | None = None,
        approval: Approval = "auto",
        **options: Any,
    ) -> Opening[KeepstoneSaver]:
        """Open the store at ``url`` for a saver: ``with`` runs it on a
        background event loop of its own (for ``graph.invoke``), ``async
        with`` on the current loop (for ``graph.ainvoke``). The store is
        closed on exit. ``options`` go to :func:`keepstone.open`."""

        def build(binding: LoopBinding) -> KeepstoneSaver:
            return cls(binding.store, serde=serde, ttl=ttl, approval=approval, _binding=binding)

        async def close(_: KeepstoneSaver) -> None:
            return None

        return Opening(url, build, close, options)

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> KeepstoneSaver:
        """A shallow copy whose serializer also rebuilds ``extra_allowlist``
        (LangGraph passes a compiled graph's state types here)."""
        if not isinstance(self.serde, KeepstoneSerializer):
            return self
        serde = self.serde.with_allowed(extra_allowlist)
        if serde is self.serde:
            return self
        clone = copy.copy(self)
        clone.serde = serde
        core = copy.copy(self._core)
        core.codec = type(self._core.codec)(serde)
        clone._core = core
        clone._retention = ThreadRetention(core)
        return clone

    def get_next_version(self, current: int | None, channel: None) -> int:
        """Channel versions are plain counters: values are stored by content, so
        two forks giving one channel the same version number never collide."""
        if current is None:
            return 1
        if isinstance(current, int):
            return current + 1
        return int(str(current).split(".")[0]) + 1

    # ------------------------------------------------------------------ async API

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = _configurable(config)
        return await self._binding.run(
            self._core.get_tuple(
                _thread_id(conf), conf.get("checkpoint_ns") or "", get_checkpoint_id(config)
            )
        )

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in await self._binding.run(self._list(config, filter, before, limit)):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = _configurable(config)
        thread_id = _thread_id(conf)
        ns = conf.get("checkpoint_ns") or ""
        await self._binding.run(
            self._core.put(
                thread_id,
                ns,
                conf.get("checkpoint_id"),
                checkpoint,
                get_checkpoint_metadata(config, metadata),
                new_versions,
            )
        )
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        conf = _configurable(config)
        checkpoint_id = conf.get("checkpoint_id")
        if not checkpoint_id:
            raise StorageError(
                "invalid", "put_writes needs a config naming the checkpoint (checkpoint_id)", {}
            )
        await self._binding.run(
            self._core.put_writes(
                _thread_id(conf),
                conf.get("checkpoint_ns") or "",
                str(checkpoint_id),
                writes,
                task_id,
                task_path,
            )
        )

    async def adelete_thread(self, thread_id: str) -> None:
        await self._binding.run(self._delete_thread(str(thread_id)))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._binding.run(self._delete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._binding.run(self._retention.copy(str(source_thread_id), str(target_thread_id)))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._binding.run(self._prune(thread_ids, strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """The writes and seed each ``DeltaChannel`` is rebuilt from (one walk
        of the parent chain, in this process's index of the thread)."""
        conf = _configurable(config)
        return await self._binding.run(
            self._core.delta_history(
                _thread_id(conf),
                conf.get("checkpoint_ns") or "",
                get_checkpoint_id(config),
                list(channels),
            )
        )

    # ------------------------------------------------------------------ plans

    async def aplan_prune(
        self, thread_ids: Sequence[str], *, strategy: str = "keep_latest"
    ) -> PrunePlan:
        """What :meth:`aprune` would remove, without removing it (a dry run)."""
        ids = _thread_list(thread_ids)
        return await self._binding.run(self._retention.plan(ids, strategy))

    async def aplan_sweep(self, now: datetime | None = None) -> PrunePlan:
        """The threads idle for longer than the saver's ``ttl`` (a dry run).

        Raises:
            StorageError: ``config`` when the saver has no ``ttl``.
        """
        ttl = self._ttl()
        return await self._binding.run(self._retention.plan_ttl(ttl, now))

    async def aapply(self, plan: PrunePlan, *, approval: ApprovalMarker | None = None) -> int:
        """Apply a plan from :meth:`aplan_prune` or :meth:`aplan_sweep`; returns
        the number of snapshots removed. ``approval`` overrides the saver's."""
        marker = approval or self._approval(f"{plan.action} plan applied")
        return await self._binding.run(self._retention.apply(plan, marker))

    async def asweep(self, now: datetime | None = None) -> PrunePlan:
        """Delete the threads idle for longer than ``ttl``; returns what went."""
        plan = await self.aplan_sweep(now)
        await self.aapply(plan)
        return plan

    # ------------------------------------------------------------------ sync API

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._binding.call(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._binding.call(self._list(config, filter, before, limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._binding.call(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._binding.call(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._binding.call(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._binding.call(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._binding.call(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._binding.call(self.aprune(thread_ids, strategy=strategy))

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._binding.call(self.aget_delta_channel_history(config=config, channels=channels))

    def plan_prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> PrunePlan:
        """Sync :meth:`aplan_prune`."""
        return self._binding.call(self.aplan_prune(thread_ids, strategy=strategy))

    def plan_sweep(self, now: datetime | None = None) -> PrunePlan:
        """Sync :meth:`aplan_sweep`."""
        return self._binding.call(self.aplan_sweep(now))

    def apply(self, plan: PrunePlan, *, approval: ApprovalMarker | None = None) -> int:
        """Sync :meth:`aapply`."""
        return self._binding.call(self.aapply(plan, approval=approval))

    def sweep(self, now: datetime | None = None) -> PrunePlan:
        """Sync :meth:`asweep`."""
        return self._binding.call(self.asweep(now))

    # ------------------------------------------------------------------ internals

    async def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> builtins.list[CheckpointTuple]:
        conf = _configurable(config) if config else {}
        thread_id = conf.get("thread_id")
        return await self._core.list_tuples(
            None if thread_id is None else str(thread_id),
            conf.get("checkpoint_ns"),
            conf.get("checkpoint_id"),
            filter=filter,
            before=None if before is None else get_checkpoint_id(before),
            limit=limit,
        )

    async def _delete_thread(self, thread_id: str) -> None:
        plan = await self._retention.plan_delete(thread_id)
        await self._retention.apply(plan, self._approval(f"delete_thread({thread_id!r})"))

    async def _delete_for_runs(self, run_ids: Sequence[str]) -> None:
        plan = await self._retention.plan_runs([str(r) for r in _thread_list(run_ids)])
        await self._retention.apply(plan, self._approval("delete_for_runs"))

    async def _prune(self, thread_ids: Sequence[str], strategy: str) -> None:
        plan = await self._retention.plan(_thread_list(thread_ids), strategy)
        await self._retention.apply(plan, self._approval(f"prune(strategy={strategy!r})"))

    def _approval(self, what: str) -> ApprovalMarker | None:
        if isinstance(self.approval, ApprovalMarker) or self.approval is None:
            return self.approval
        who = current_actor.get() or "langgraph"
        return ApprovalMarker(approved_by=who, reason=f"LangGraph {what}")

    def _ttl(self) -> timedelta:
        if self.ttl is None:
            raise StorageError(
                "config",
                "this KeepstoneSaver has no ttl: open it with ttl=timedelta(...) to sweep threads",
                {},
            )
        return self.ttl


def _configurable(config: RunnableConfig) -> dict[str, Any]:
    conf = config.get("configurable")
    if not isinstance(conf, dict):
        raise StorageError(
            "invalid", "a LangGraph config needs a 'configurable' mapping with a thread_id", {}
        )
    return conf


def _thread_id(conf: dict[str, Any]) -> str:
    thread_id = conf.get("thread_id")
    if thread_id is None or thread_id == "":
        raise StorageError(
            "invalid",
            "a LangGraph config needs configurable.thread_id to use a checkpointer",
            {},
        )
    return str(thread_id)


def _thread_list(thread_ids: Sequence[str]) -> list[str]:
    if isinstance(thread_ids, str):
        raise StorageError(
            "invalid",
            "pass a list of thread ids, not one string",
            {"thread_ids": thread_ids},
        )
    return [str(t) for t in thread_ids]
