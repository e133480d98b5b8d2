"""One writer per thread: claims and fences.

A saver instance that writes to a thread first *claims* it: it moves the
thread run's ``langgraph.writer`` step to ``running`` again, with the run's
revision as a precondition, and the step's attempt count becomes the
writer's *epoch*. Every later write by that instance checks, once it
landed, that the epoch is still its own. A second worker that
claims the thread therefore fences the first one off: the first worker's
next write (or the one in flight) fails with ``conflict`` and a message
saying so, and its graph run stops there. The newest claim wins, so a
process resuming a thread after a crash takes over at once.

A claim lasts one graph run: loading the thread's latest root checkpoint
again (``get_tuple`` with only a ``thread_id``, as every ``invoke`` does
first) ends it, and the next write claims the thread anew. So a worker that
lost a thread to another one yesterday can run it again today.

When an instance loaded the thread's latest checkpoint without naming one
(``get_tuple`` with only a ``thread_id``, which is how a graph starts or
resumes) and then writes on top of it, its claim also checks that the
latest checkpoint is still the one it loaded, before and after claiming:
a worker that raced another one on the same thread gets ``conflict``
instead of forking the thread. Writing on top of a checkpoint named
explicitly (time travel, ``update_state`` on an old checkpoint) forks, as
LangGraph intends.

Right after its claim, a writer stores a ``claim`` snapshot. A write
already in flight when another worker claims may still land: if it lands
after the newer claim snapshot, its label names an older epoch and readers
ignore it (it is *void*); if it lands before, it is a valid continuation
that the new writer's head check sees (and then the new writer backs off).
Either way the thread's history does not interleave, and the stale writer
is told with ``conflict`` right after its write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from keepstone.errors import StorageError
from keepstone.langgraph.layout import WRITER_STEP
from keepstone.langgraph.threads import ThreadIndex, is_deleted
from keepstone.schemas import Run
from keepstone.store import Store

NO_BASE: Final = "\x00none"
"""The base recorded when the latest checkpoint was loaded from an empty thread."""


@dataclass
class ThreadState:
    """What one saver instance knows about one thread."""

    thread_id: str
    run: Run | None
    generation: int
    index: ThreadIndex | None = None
    epoch: int | None = None
    bases: dict[str, str] = field(default_factory=dict)
    """Per namespace, the checkpoint ``get_tuple`` returned as the latest
    (``NO_BASE`` for none), until this instance first writes."""
    written: dict[tuple[str, str], set[tuple[str, int]]] = field(default_factory=dict)
    """Pending writes (task id, index) known to be stored, per checkpoint."""
    _lock: asyncio.Lock | None = None
    _saving: asyncio.Lock | None = None

    @property
    def lock(self) -> asyncio.Lock:
        """Held while claiming the thread."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    @property
    def saving(self) -> asyncio.Lock:
        """Held while storing a snapshot: the snapshots of one thread get
        their numbers one after the other instead of racing for them."""
        if self._saving is None:
            self._saving = asyncio.Lock()
        return self._saving


def epoch_of(run: Run) -> int:
    step = run.step(WRITER_STEP)
    return 0 if step is None else step.attempts


def check_epoch(state: ThreadState, run: Run) -> None:
    """Refuse a write when another writer claimed the thread or it was deleted.

    Raises:
        StorageError: ``conflict``.
    """
    if is_deleted(run):
        raise StorageError(
            "conflict",
            f"LangGraph thread {state.thread_id!r} was deleted while this worker was writing "
            "to it; its writes stop here",
            {"thread_id": state.thread_id, "run": run.id},
        )
    epoch = epoch_of(run)
    if epoch != state.epoch:
        step = run.step(WRITER_STEP)
        since = "" if step is None or step.started_at is None else f" at {step.started_at}"
        raise StorageError(
            "conflict",
            f"LangGraph thread {state.thread_id!r} was claimed by another worker{since} "
            f"(writer {epoch}; this worker is writer {state.epoch}): this worker's writes "
            "stop here so the two do not interleave. Load the thread again to continue it.",
            {
                "thread_id": state.thread_id,
                "run": run.id,
                "epoch": state.epoch,
                "current_epoch": epoch,
            },
        )


async def claim(
    store: Store,
    state: ThreadState,
    ns: str,
    parent: str | None,
    mark: Callable[[ThreadState, int], Awaitable[None]],
) -> None:
    """Make this instance the thread's writer (see the module docstring).

    Raises:
        StorageError: ``conflict`` when the thread moved since it was loaded,
            or when other writers keep claiming it.
    """
    assert state.run is not None
    base = state.bases.get(ns)
    guarded = base is not None and base == (parent or NO_BASE)
    for _ in range(5):
        if guarded:
            await _check_head(store, state, ns, parent)
        run = await store.runs.get(state.run.id)
        if is_deleted(run):
            state.epoch = -1
            check_epoch(state, run)
        try:
            claimed = await store.runs.set_step(
                run.id, WRITER_STEP, "running", expected_revision=run.revision
            )
        except StorageError as exc:
            if exc.code == "conflict" and "expected_revision" in exc.details:
                continue  # someone else changed the run meanwhile: look again
            raise
        if state.index is not None and state.index.revision == run.revision:
            state.index.revision = claimed.revision
        state.run = claimed
        state.epoch = epoch_of(claimed)
        state.bases.clear()
        await mark(state, state.epoch)
        if guarded:
            await _check_head(store, state, ns, parent)
        return
    raise StorageError(
        "conflict",
        f"LangGraph thread {state.thread_id!r} is being claimed by other writers too fast "
        "to take it over",
        {"thread_id": state.thread_id},
    )


async def _check_head(store: Store, state: ThreadState, ns: str, parent: str | None) -> None:
    assert state.run is not None and state.index is not None
    run = await store.runs.get(state.run.id)
    await state.index.refresh(store, run)
    head = state.index.latest.get(ns)
    head_id = None if head is None else head.label.checkpoint_id
    if head_id != parent:
        raise StorageError(
            "conflict",
            f"LangGraph thread {state.thread_id!r} moved on since this worker loaded it "
            f"(its latest checkpoint is now {head_id!r}, not {parent!r}): another worker is "
            "running it. Load the thread again to continue it.",
            {"thread_id": state.thread_id, "expected": parent, "latest": head_id},
        )
