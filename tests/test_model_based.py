"""Model-based testing: random operation sequences on a durable backend and on
the in-memory reference, side by side, must give the same observable results,
errors included.

Both stores get the same FixedClock and SequentialIds, so results compare
exactly (models, ids, digests, seqs). CI runs a bounded budget; ``make
reliability`` sets ``KEEPSTONE_MODEL_EXAMPLES`` / ``KEEPSTONE_MODEL_STEPS``
for a long one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import keepstone
from keepstone.schemas import (
    ApprovalMarker,
    ArtifactQuery,
    CustomEvent,
    EventQuery,
    MemoryEvent,
    canonical_json,
)
from tests.conftest import DURABLE_BACKENDS, store_url

EXAMPLES = int(os.environ.get("KEEPSTONE_MODEL_EXAMPLES", "10"))
STEPS = int(os.environ.get("KEEPSTONE_MODEL_STEPS", "30"))
OK = ApprovalMarker(approved_by="model", reason="test")

names = st.sampled_from(["a", "b", "c", "d"])
texts = st.text(alphabet="abc xyz", min_size=0, max_size=12)
statuses = st.sampled_from(["pending", "running", "succeeded", "failed", "cancelled"])


def outcome(value: Any) -> Any:
    """A comparable form of a result or an error."""
    if isinstance(value, keepstone.StorageError):
        return ("error", value.code)
    if hasattr(value, "model_dump"):
        return canonical_json(value.model_dump(mode="json"))
    if isinstance(value, list | tuple):
        return [outcome(v) for v in value]
    if isinstance(value, bytes):
        return value
    return value


class SideBySide(RuleBasedStateMachine):
    """Drive a reference store and a backend store with the same calls."""

    backend = "sqlite"

    runs = Bundle("runs")
    artifacts = Bundle("artifacts")
    nodes = Bundle("nodes")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = Path(tempfile.mkdtemp(prefix="ks-model-"))
        self.stores: list[keepstone.Store] = []

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize()
    def open_stores(self) -> None:
        for url in ("memory://", store_url(self.backend, self.tmp)):
            store = self.run(
                keepstone.open(url, clock=keepstone.FixedClock(), ids=keepstone.SequentialIds())
            )
            self.stores.append(store)
        self.both(lambda s: s.artifacts.create_collection("docs", id="col"))
        self.both(lambda s: s.memory.create_profile("agent", id="prf"))

    def both(self, call: Any) -> Any:
        """Apply ``call`` to each store; the outcomes must be equal."""
        results = []
        for store in self.stores:
            try:
                results.append(self.run(call(store)))
            except keepstone.StorageError as exc:
                results.append(exc)
        reference, other = (outcome(r) for r in results)
        assert reference == other, f"memory gave {reference!r}, {self.backend} gave {other!r}"
        return None if isinstance(results[0], keepstone.StorageError) else results[0]

    # ------------------------------------------------------------------ runs

    @rule(target=runs, name=names)
    def create_run(self, name: str) -> str:
        run = self.both(lambda s: s.runs.create(name, params={"n": name}))
        return str(run.id)

    @rule(run=runs, status=statuses)
    def transition(self, run: str, status: str) -> None:
        self.both(lambda s: s.runs.transition(run, status))

    @rule(run=runs, step=names, status=st.sampled_from(["running", "succeeded", "failed"]))
    def set_step(self, run: str, step: str, status: str) -> None:
        self.both(lambda s: s.runs.set_step(run, step, status))

    @rule(run=runs, value=st.integers(0, 3))
    def snapshot(self, run: str, value: int) -> None:
        self.both(lambda s: s.runs.save_snapshot(run, {"v": value, "const": "k" * 100}))
        self.both(lambda s: s.runs.latest_snapshot(run))

    @rule(run=runs, text=texts)
    def log(self, run: str, text: str) -> None:
        self.both(lambda s: s.logs.write(run, "tick", message=text))

    # ------------------------------------------------------------------ artifacts

    @rule(target=artifacts, name=names, text=texts)
    def create_artifact(self, name: str, text: str) -> str:
        art = self.both(lambda s: s.artifacts.create("col", name, text, metadata={"k": name}))
        return "missing" if art is None else str(art.id)

    @rule(art=artifacts, text=texts)
    def update_artifact(self, art: str, text: str) -> None:
        self.both(lambda s: s.artifacts.update(art, text))

    @rule(art=artifacts)
    def delete_artifact(self, art: str) -> None:
        self.both(lambda s: s.artifacts.delete(art))

    @rule(a=artifacts, b=artifacts, kind=names)
    def relate(self, a: str, b: str, kind: str) -> None:
        self.both(lambda s: s.artifacts.relate(a, b, kind))

    @rule(word=st.sampled_from(["abc", "xyz", "a", "nothing"]))
    def search(self, word: str) -> None:
        self.both(lambda s: s.artifacts.query(ArtifactQuery(text=word)))

    @rule(art=artifacts)
    def read(self, art: str) -> None:
        self.both(lambda s: s.artifacts.read(art))

    # ------------------------------------------------------------------ memory

    @rule(target=nodes, key=names, text=texts)
    def put_node(self, key: str, text: str) -> str:
        self.both(lambda s: s.memory.put_node("prf", "fact", content=text, id=f"n{key}"))
        return f"n{key}"

    @rule(a=nodes, b=nodes, key=names)
    def put_edge(self, a: str, b: str, key: str) -> None:
        self.both(lambda s: s.memory.put_edge("prf", a, b, "rel", id=f"e{key}"))

    @rule(node=nodes, approve=st.booleans())
    def forget(self, node: str, approve: bool) -> None:
        approval = OK if approve else None
        self.both(lambda s: s.memory.forget_node("prf", node, approval=approval))

    @rule(key=names, name=names)
    def custom_event(self, key: str, name: str) -> None:
        event = MemoryEvent(
            id=f"evt_custom_{key}",
            profile_id="prf",
            at=keepstone.FixedClock().now(),
            payload=CustomEvent(name=name),
        )
        self.both(lambda s: s.events.append([event]))

    # ------------------------------------------------------------------ what must always hold

    @invariant()
    def same_observable_state(self) -> None:
        if not self.stores:
            return
        self.both(lambda s: s.audit.verify())
        self.both(lambda s: s.events.list(EventQuery(), limit=1000))
        self.both(lambda s: s.memory.graph("prf"))
        self.both(lambda s: s.artifacts.changes(limit=1000))
        self.both(lambda s: s.runs.list(limit=1000))

    def teardown(self) -> None:
        for store in self.stores:
            self.run(store.close())
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.mark.parametrize("backend", DURABLE_BACKENDS)
def test_backend_matches_the_reference(backend: str) -> None:
    machine = type(f"SideBySide_{backend}", (SideBySide,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


class _Diverging(SideBySide):
    """The backend store runs on another clock: every record differs."""

    @initialize()
    def open_stores(self) -> None:
        from datetime import UTC, datetime

        for url, start in (
            ("memory://", None),
            (store_url(self.backend, self.tmp), datetime(2030, 1, 1, tzinfo=UTC)),
        ):
            clock = keepstone.FixedClock(start)
            store = self.run(keepstone.open(url, clock=clock, ids=keepstone.SequentialIds()))
            self.stores.append(store)
        self.both(lambda s: s.runs.create("first"))


def test_the_harness_notices_a_divergence() -> None:
    machine = type("Diverging_sqlite", (_Diverging,), {"backend": "sqlite"})
    machine.TestCase.settings = settings(
        max_examples=3,
        stateful_step_count=5,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    with pytest.raises(AssertionError, match="memory gave"):
        machine.TestCase().runTest()
