"""Conformance of :class:`keepstone.ports.RunStore`: lifecycle, steps, snapshots, manifests."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from hypothesis import given

from keepstone.schemas import (
    ArtifactRef,
    ErrorInfo,
    FixedClock,
    InputBundle,
    RunQuery,
    SequentialIds,
)
from keepstone.schemas.runs import STEP_TRANSITIONS
from keepstone.testing.base import (
    ALL,
    APPROVAL,
    BAD_IDS,
    PROPERTY,
    T0,
    ConformanceBase,
    assert_audited,
    assert_listing_refuses_bad_paging,
    assert_paginates,
    audit_seq,
    collect,
    drain,
    expect_error,
    json_objects,
    refused,
)

if TYPE_CHECKING:
    from keepstone import Store
    from keepstone.ports import RunStore
    from keepstone.schemas import Run

# The run lifecycle as the RunStore docstring states it.
LEGAL_RUN = {
    "pending": {"running", "failed", "cancelled"},
    "running": {"succeeded", "failed", "cancelled"},
    "succeeded": set(),
    "failed": set(),
    "cancelled": set(),
}
STATUSES = tuple(LEGAL_RUN)
# Statuses RunStore.reopen takes back to running (a new attempt).
REOPENABLE = {"running", "failed", "cancelled"}
ILLEGAL_RUN = [(a, b) for a in STATUSES for b in STATUSES if b not in LEGAL_RUN[a]]


async def _run_in(store: Store, status: str, name: str = "pipeline") -> Run:
    """A run brought to ``status`` by legal transitions."""
    run = await store.runs.create(name)
    path = {
        "pending": [],
        "running": ["running"],
        "succeeded": ["running", "succeeded"],
        "failed": ["running", "failed"],
        "cancelled": ["running", "cancelled"],
    }
    for step in path.get(status, [status]):
        run = await store.runs.transition(run.id, step)  # type: ignore[arg-type]
    return run


def _port(store: Store) -> RunStore:
    """``store.runs`` as the RunStore port (it is the port plus pipeline helpers)."""
    return cast("RunStore", store.runs)


class RunStoreConformance(ConformanceBase):
    """Tests of ``store.runs``."""

    # ------------------------------------------------------------------ create / get

    async def test_create_returns_pending_run(self, store: Store) -> None:
        run = await store.runs.create("ingest", params={"n": 1}, labels={"team": "a"})
        assert run.id.startswith("run_")
        assert (run.name, run.status, run.revision) == ("ingest", "pending", 1)
        assert run.params == {"n": 1} and run.labels == {"team": "a"}
        assert run.started_at is None and run.ended_at is None and run.steps == []
        assert run.created_at.tzinfo is not None
        assert await store.runs.get(run.id) == run

    async def test_create_keeps_none_and_empty_apart(self, store: Store) -> None:
        unknown = await store.runs.create("a", params=None, labels=None)
        empty = await store.runs.create("b", params={}, labels={})
        nested = await store.runs.create("c", params={"x": None, "y": {}, "z": []})
        assert (await store.runs.get(unknown.id)).params is None
        assert (await store.runs.get(unknown.id)).labels is None
        assert (await store.runs.get(empty.id)).params == {}
        assert (await store.runs.get(empty.id)).labels == {}
        assert (await store.runs.get(nested.id)).params == {"x": None, "y": {}, "z": []}

    @PROPERTY
    @given(params=json_objects)
    async def test_create_round_trips_any_json_params(
        self, store: Store, params: dict[str, Any]
    ) -> None:
        run = await store.runs.create("prop", params=params)
        assert (await store.runs.get(run.id)).params == params

    async def test_create_uses_injected_clock_and_ids(self, store: Store) -> None:
        class Ids(SequentialIds):
            def __init__(self) -> None:
                super().__init__()
                self.made: list[str] = []

            def new_id(self, prefix: str) -> str:
                made = super().new_id(prefix)
                self.made.append(made)
                return made

        ids, clock = Ids(), FixedClock(self.clock.now() + timedelta(days=400))
        async with self.scratch_store(ids=ids, clock=clock) as other:
            run = await other.runs.create("x")
            assert run.id in ids.made
            start = clock.now() - timedelta(days=1)
            assert start <= run.created_at < clock.now()

    async def test_create_with_own_id_is_idempotent(self, store: Store) -> None:
        run = await store.runs.create("job", params={}, labels={"k": "v"}, id="my-run.1")
        assert run.id == "my-run.1"
        again = await store.runs.create("job", params={}, labels={"k": "v"}, id="my-run.1")
        assert again == run
        assert len((await store.runs.list()).items) == 1

    async def test_create_same_id_other_content_conflicts(self, store: Store) -> None:
        await store.runs.create("job", params={"a": 1}, id="r1")
        await refused(store, "conflict", store.runs.create("job", params={"a": 2}, id="r1"))
        await refused(store, "conflict", store.runs.create("other", params={"a": 1}, id="r1"))
        await refused(store, "conflict", store.runs.create("job", params=None, id="r1"))

    @pytest.mark.parametrize("bad_id", BAD_IDS)
    async def test_create_malformed_id_invalid(self, store: Store, bad_id: str) -> None:
        await refused(store, "invalid", store.runs.create("job", id=bad_id))

    async def test_create_bad_input_invalid(self, store: Store) -> None:
        await refused(store, "invalid", store.runs.create(""))
        await refused(store, "invalid", store.runs.create("job", params={"x": float("nan")}))
        await refused(store, "invalid", store.runs.create("job", params={"x": float("inf")}))
        await refused(store, "invalid", store.runs.create("job", labels={"k": 1}))  # type: ignore[dict-item]

    async def test_get_unknown_not_found(self, store: Store) -> None:
        await expect_error("not_found", store.runs.get("run-missing"))

    # ------------------------------------------------------------------ list

    async def test_list_paginates_oldest_first(self, store: Store) -> None:
        made = [await store.runs.create(f"job-{i % 2}") for i in range(7)]
        expected = sorted(made, key=lambda r: (r.created_at, r.id))
        await assert_paginates(
            lambda c, n: store.runs.list(cursor=c, limit=n), key=lambda r: r.id, expected=expected
        )
        query = RunQuery(name="job-0")
        await assert_paginates(
            lambda c, n: store.runs.list(query, cursor=c, limit=n),
            key=lambda r: r.id,
            expected=[r for r in expected if r.name == "job-0"],
        )

    async def test_list_filters_by_every_field(self, store: Store) -> None:
        a = await store.runs.create("etl", labels={"env": "prod", "team": "x"})
        b = await _run_in(store, "running", "etl")
        c = await store.runs.create("train", labels={"env": "dev"})

        async def ids(query: RunQuery) -> list[str]:
            return [r.id for r in (await store.runs.list(query, limit=ALL)).items]

        assert await ids(RunQuery(name="etl")) == [a.id, b.id]
        assert await ids(RunQuery(status="running")) == [b.id]
        assert await ids(RunQuery(status="pending", name="etl")) == [a.id]
        assert await ids(RunQuery(labels={"env": "prod"})) == [a.id]
        assert await ids(RunQuery(labels={"env": "prod", "team": "y"})) == []
        tick = timedelta(microseconds=1)
        assert await ids(RunQuery(created_after=a.created_at + tick)) == [b.id, c.id]
        assert await ids(RunQuery(created_before=b.created_at - tick)) == [a.id]

    async def test_list_refuses_bad_cursor_and_limit(self, store: Store) -> None:
        await store.runs.create("job")
        await assert_listing_refuses_bad_paging(lambda c, n: store.runs.list(cursor=c, limit=n))

    # ------------------------------------------------------------------ transition

    async def test_transition_legal_path_sets_timestamps_and_revision(self, store: Store) -> None:
        run = await store.runs.create("job")
        running = await store.runs.transition(run.id, "running", expected_revision=1)
        assert running.status == "running" and running.revision == 2
        assert running.started_at is not None and running.ended_at is None
        done = await store.runs.transition(run.id, "succeeded", expected_revision=2)
        assert done.status == "succeeded" and done.revision == 3
        assert done.ended_at is not None and done.ended_at >= running.started_at
        assert done.started_at == running.started_at
        assert await store.runs.get(run.id) == done

    @pytest.mark.parametrize(
        ("start", "end"), [(a, b) for a, allowed in LEGAL_RUN.items() for b in sorted(allowed)]
    )
    async def test_transition_every_legal_move(self, store: Store, start: str, end: str) -> None:
        run = await _run_in(store, start)
        error = ErrorInfo(type="Boom", message="it broke", details={}) if end == "failed" else None
        moved = await store.runs.transition(run.id, end, error=error)  # type: ignore[arg-type]
        assert moved.status == end and moved.revision == run.revision + 1
        assert moved.error == error
        if end in ("succeeded", "failed", "cancelled"):
            assert moved.ended_at is not None

    @pytest.mark.parametrize(("start", "end"), ILLEGAL_RUN)
    async def test_transition_illegal_conflict(self, store: Store, start: str, end: str) -> None:
        run = await _run_in(store, start)
        error = await refused(store, "conflict", store.runs.transition(run.id, end))  # type: ignore[arg-type]
        assert error.details["from"] == start and error.details["to"] == end
        assert set(error.details["allowed"]) == LEGAL_RUN[start]

    async def test_transition_expected_revision_conflict(self, store: Store) -> None:
        run = await store.runs.create("job")
        await refused(
            store, "conflict", store.runs.transition(run.id, "running", expected_revision=2)
        )
        await store.runs.transition(run.id, "running", expected_revision=1)
        await refused(
            store, "conflict", store.runs.transition(run.id, "failed", expected_revision=1)
        )

    async def test_transition_unknown_run_or_status(self, store: Store) -> None:
        await refused(store, "not_found", store.runs.transition("run-missing", "running"))
        run = await store.runs.create("job")
        await refused(store, "invalid", store.runs.transition(run.id, "paused"))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ reopen (resume)

    async def test_reopen_starts_a_new_attempt(self, store: Store) -> None:
        for start in sorted(REOPENABLE):
            run = await _run_in(store, start)
            assert [a.outcome for a in run.history] == [start]
            seq = await audit_seq(store)
            reopened = await _port(store).reopen(run.id, expected_revision=run.revision)
            assert (reopened.status, reopened.error, reopened.ended_at) == ("running", None, None)
            assert reopened.revision == run.revision + 1
            assert reopened.started_at == run.started_at
            assert [a.number for a in reopened.history] == [1, 2]
            assert reopened.history[0].outcome == {"running": "interrupted"}.get(start, start)
            assert reopened.history[0].ended_at is not None
            assert (reopened.history[1].outcome, reopened.history[1].ended_at) == ("running", None)
            assert await store.runs.get(run.id) == reopened
            records = await assert_audited(store, seq, run.id)
            assert [r.action for r in records] == ["run.reopen"]
            assert records[0].details is not None and records[0].details["from"] == start
            moved = await store.runs.set_step(run.id, "s", "running")
            assert moved.status == "running"
            done = await store.runs.transition(run.id, "succeeded", error=None)
            assert [a.outcome for a in done.history][-1] == "succeeded"

    async def test_reopen_opens_the_log_stream_again(self, store: Store) -> None:
        run = await _run_in(store, "running")
        first = await store.logs.write(run.id, "before")
        await store.runs.transition(run.id, "failed")
        await store.logs.seal(run.id)
        await _port(store).reopen(run.id)
        assert await store.logs.reference(run.id) is None
        second = await store.logs.write(run.id, "after")
        ref = await store.logs.seal(run.id)
        assert ref.lines == 2
        assert (await store.logs.read(run.id)).items == [first, second]

    async def test_reopen_refusals(self, store: Store) -> None:
        reopen = _port(store).reopen
        await refused(store, "not_found", reopen("run-missing"))
        for status in ("pending", "succeeded"):
            run = await _run_in(store, status)
            error = await refused(store, "conflict", reopen(run.id))
            assert error.details["status"] == status
            assert set(error.details["allowed"]) == REOPENABLE
        failed = await _run_in(store, "failed")
        await refused(store, "conflict", reopen(failed.id, expected_revision=failed.revision - 1))
        await refused(store, "conflict", store.runs.transition(failed.id, "running"))

    async def test_history_keeps_every_attempt_with_its_outcome(self, store: Store) -> None:
        run = await _run_in(store, "running")
        boom = ErrorInfo(type="TimeoutError", message="slow", traceback="Traceback ...", step="s")
        await store.runs.set_step(run.id, "s", "running")
        await store.runs.set_step(run.id, "s", "failed", error=boom)
        await store.runs.transition(run.id, "failed", error=boom)
        await _port(store).reopen(run.id)
        await store.runs.set_step(run.id, "s", "running")
        await store.runs.set_step(run.id, "s", "running")  # the process died mid-step
        await store.runs.set_step(run.id, "s", "succeeded")
        done = await store.runs.transition(run.id, "succeeded")
        assert [(a.number, a.outcome, a.error) for a in done.history] == [
            (1, "failed", boom),
            (2, "succeeded", None),
        ]
        step = done.step("s")
        assert step is not None and step.attempts == 3
        assert [(a.number, a.outcome, a.error) for a in step.history] == [
            (1, "failed", boom),
            (2, "interrupted", None),
            (3, "succeeded", None),
        ]
        assert all(a.ended_at is not None for a in step.history)
        assert done.error is None and (await store.runs.get(run.id)) == done

    async def test_create_rerun_links_the_origin(self, store: Store) -> None:
        origin = await _run_in(store, "failed")
        rerun = await store.runs.create("job", rerun_of=origin.id, rerun_from_step="s2", id="r2")
        assert (rerun.rerun_of, rerun.rerun_from_step) == (origin.id, "s2")
        assert await store.runs.get(rerun.id) == rerun
        again = await store.runs.create("job", rerun_of=origin.id, rerun_from_step="s2", id="r2")
        assert again == rerun
        await refused(store, "conflict", store.runs.create("job", rerun_of=origin.id, id="r2"))
        await refused(store, "integrity", store.runs.create("job", rerun_of="run-missing"))
        await refused(store, "invalid", store.runs.create("job", rerun_from_step="s2"))

    # ------------------------------------------------------------------ steps

    async def test_set_step_adds_steps_in_first_seen_order(self, store: Store) -> None:
        run = await _run_in(store, "running")
        for name in ("load", "parse", "load", "write"):
            run = await store.runs.set_step(run.id, name, "running")
        assert [s.name for s in run.steps] == ["load", "parse", "write"]
        assert (await store.runs.get(run.id)).steps == run.steps

    async def test_set_step_counts_attempts_and_bumps_revision(self, store: Store) -> None:
        run = await _run_in(store, "running")
        rev = run.revision
        sequence: list[tuple[Any, int]] = [
            ("running", 1),
            ("failed", 1),
            ("running", 2),
            ("running", 3),
            ("succeeded", 3),
        ]
        for status, attempts in sequence:
            run = await store.runs.set_step(run.id, "fetch", status, expected_revision=rev)
            rev += 1
            step = run.step("fetch")
            assert step is not None and step.status == status and step.attempts == attempts
            assert run.revision == rev
        failed = ErrorInfo(type="E", message="m")
        run = await store.runs.set_step(run.id, "other", "running")
        run = await store.runs.set_step(run.id, "other", "failed", error=failed)
        other = run.step("other")
        assert other is not None and other.error == failed

    @pytest.mark.parametrize(
        ("start", "end"),
        [
            (a, b)
            for a in ("succeeded", "skipped")
            for b in ("pending", "running", "failed", "succeeded", "skipped")
            if b != a and b not in STEP_TRANSITIONS[a]
        ],
    )
    async def test_set_step_illegal_transition_conflict(
        self, store: Store, start: str, end: str
    ) -> None:
        run = await _run_in(store, "running")
        if start == "succeeded":
            await store.runs.set_step(run.id, "s", "running")
        await store.runs.set_step(run.id, "s", start)  # type: ignore[arg-type]
        await refused(store, "conflict", store.runs.set_step(run.id, "s", end))  # type: ignore[arg-type]

    async def test_set_step_refusals(self, store: Store) -> None:
        await refused(store, "not_found", store.runs.set_step("run-missing", "s", "running"))
        run = await _run_in(store, "running")
        await refused(
            store, "conflict", store.runs.set_step(run.id, "s", "running", expected_revision=1)
        )
        ended = await store.runs.transition(run.id, "cancelled")
        await refused(store, "conflict", store.runs.set_step(ended.id, "s", "running"))

    # ------------------------------------------------------------------ snapshots

    async def test_save_snapshot_numbers_and_round_trips(self, store: Store) -> None:
        run = await _run_in(store, "running")
        states: list[dict[str, Any]] = [
            {"a": 1, "none": None, "empty": {}},
            {},
            {"a": 2, "list": []},
        ]
        for number, state in enumerate(states, start=1):
            snap = await store.runs.save_snapshot(run.id, state, step=f"s{number}")
            assert (snap.number, snap.state, snap.step, snap.run_id) == (
                number,
                state,
                f"s{number}",
                run.id,
            )
            assert snap.digest.startswith("sha256:")
        latest = await store.runs.latest_snapshot(run.id)
        assert latest is not None and latest.number == 3 and latest.state == states[2]
        for number, state in enumerate(states, start=1):
            got = await store.runs.get_snapshot(run.id, number)
            assert got.state == state and got.number == number
        records = await assert_paginates(
            lambda c, n: store.runs.list_snapshots(run.id, cursor=c, limit=n),
            key=lambda r: r.number,
        )
        assert [r.number for r in records] == [1, 2, 3]
        assert [set(r.parts) for r in records] == [set(s) for s in states]
        assert records[0].digest != records[2].digest

    async def test_save_snapshot_same_state_same_digest(self, store: Store) -> None:
        run = await _run_in(store, "running")
        first = await store.runs.save_snapshot(run.id, {"k": [1, 2], "m": "x"})
        second = await store.runs.save_snapshot(run.id, {"m": "x", "k": [1, 2]})
        assert first.digest == second.digest and second.number == 2

    async def test_save_snapshot_stores_constant_part_once(self, store: Store) -> None:
        run = await _run_in(store, "running")
        big = "x" * 200_000
        await store.runs.save_snapshot(run.id, {"big": big, "counter": 0})
        before = {b.digest for b in await collect(lambda c: store.blobs.list(cursor=c))}
        for i in range(1, 4):
            await store.runs.save_snapshot(run.id, {"big": big, "counter": i})
        after = await collect(lambda c: store.blobs.list(cursor=c))
        added = sum(b.size for b in after if b.digest not in before)
        assert added < len(big), f"{added} new bytes for three snapshots sharing a part"
        records = (await store.runs.list_snapshots(run.id)).items
        assert len({r.parts["big"] for r in records}) == 1
        assert len({r.parts["counter"] for r in records}) == 4

    async def test_snapshot_damaged_part_corrupt(self, store: Store) -> None:
        run = await _run_in(store, "running")
        await store.runs.save_snapshot(run.id, {"keep": 1, "hurt": "x" * 100})
        record = (await store.runs.list_snapshots(run.id)).items[0]
        await self.damage_blob(store, record.parts["hurt"], b'"y"')
        await expect_error("corrupt", store.runs.latest_snapshot(run.id))
        await expect_error("corrupt", store.runs.get_snapshot(run.id, 1))

    async def test_snapshot_refusals(self, store: Store) -> None:
        await refused(store, "not_found", store.runs.save_snapshot("run-missing", {}))
        run = await _run_in(store, "running")
        await refused(store, "invalid", store.runs.save_snapshot(run.id, [1, 2]))  # type: ignore[arg-type]
        await refused(store, "invalid", store.runs.save_snapshot(run.id, {"x": float("nan")}))
        assert await store.runs.latest_snapshot(run.id) is None
        await expect_error("not_found", store.runs.latest_snapshot("run-missing"))
        await expect_error("not_found", store.runs.get_snapshot(run.id, 1))
        await store.runs.save_snapshot(run.id, {"a": 1})
        await expect_error("not_found", store.runs.get_snapshot(run.id, 2))
        await expect_error("not_found", store.runs.get_snapshot("run-missing", 1))
        await expect_error("not_found", store.runs.list_snapshots("run-missing"))
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.runs.list_snapshots(run.id, cursor=c, limit=n)
        )

    async def test_save_snapshot_at_a_chosen_number_fences_writers(self, store: Store) -> None:
        run = await _run_in(store, "running")
        first = await store.runs.save_snapshot(run.id, {"a": 1}, number=1)
        assert first.number == 1
        # A second writer that also saw "nothing yet" loses, and nothing of it is stored.
        await refused(store, "conflict", store.runs.save_snapshot(run.id, {"a": 2}, number=1))
        assert (await store.runs.latest_snapshot(run.id)).state == {"a": 1}  # type: ignore[union-attr]
        assert (await store.runs.save_snapshot(run.id, {"a": 3}, number=2)).number == 2
        assert (await store.runs.save_snapshot(run.id, {"a": 4})).number == 3
        for bad in (0, -1, True, "2"):
            await refused(
                store,
                "invalid",
                store.runs.save_snapshot(run.id, {}, number=bad),  # type: ignore[arg-type]
            )
        await refused(store, "not_found", store.runs.save_snapshot("run-missing", {}, number=1))

    async def test_snapshot_numbers_stay_consecutive_across_connections(self, store: Store) -> None:
        if "multi_process" not in store.capabilities:
            pytest.skip("needs the 'multi_process' capability: a second store on one location")
        run = await _run_in(store, "running")
        other = await self.make_store(self.location, clock=self.clock, ids=SequentialIds())
        self._opened.append(other)
        numbers = []
        for i in range(6):
            writer = store if i % 2 == 0 else other
            numbers.append((await writer.runs.save_snapshot(run.id, {"i": i})).number)
        assert numbers == [1, 2, 3, 4, 5, 6]
        records = (await store.runs.list_snapshots(run.id)).items
        assert [r.number for r in records] == numbers

    async def test_prune_snapshots_with_approval(self, store: Store) -> None:
        run = await _run_in(store, "running")
        big = "shared " * 1000
        for i in range(1, 5):
            await store.runs.save_snapshot(run.id, {"big": big, "i": i})
        seq = await audit_seq(store)
        prune = _port(store).prune_snapshots
        assert await prune(run.id, [1, 2], approval=APPROVAL) == 2
        records = await assert_audited(store, seq, run.id)
        assert any(r.approval is not None for r in records)
        assert [r.number for r in (await store.runs.list_snapshots(run.id)).items] == [3, 4]
        await expect_error("not_found", store.runs.get_snapshot(run.id, 1))
        assert (await store.runs.get_snapshot(run.id, 3)).state == {"big": big, "i": 3}
        latest = await store.runs.latest_snapshot(run.id)
        assert latest is not None and latest.state == {"big": big, "i": 4}
        assert await prune(run.id, [1], approval=APPROVAL) == 0
        assert [r.number for r in (await store.runs.list_snapshots(run.id)).items] == [3, 4]
        await store.runs.transition(run.id, "succeeded")
        assert await prune(run.id, [3, 4], approval=APPROVAL) == 2
        assert await store.runs.latest_snapshot(run.id) is None

    async def test_prune_snapshots_refusals(self, store: Store) -> None:
        run = await _run_in(store, "running")
        for i in range(3):
            await store.runs.save_snapshot(run.id, {"i": i})
        prune = _port(store).prune_snapshots
        await refused(store, "review_required", prune(run.id, [1]), audited=True)
        await refused(store, "conflict", prune(run.id, [2, 3], approval=APPROVAL))
        await refused(store, "not_found", prune("run-missing", [1], approval=APPROVAL))

    # ------------------------------------------------------------------ manifests

    async def test_put_manifest_round_trips_and_replaces(self, store: Store) -> None:
        run = await _run_in(store, "running")
        assert await store.runs.get_manifest(run.id) is None
        coll = await store.artifacts.create_collection("inputs")
        art = await store.artifacts.create(coll.id, "in.txt", "hello")
        inputs = InputBundle(artifacts=[ArtifactRef(artifact_id=art.id, revision=1)], params={})
        first = await store.runs.put_manifest(run.id, inputs=inputs, outputs=[], diagnostics=None)
        assert first.inputs == inputs and first.outputs == [] and first.diagnostics is None
        assert (first.started_at, first.ended_at) == (run.started_at, None)
        assert await store.runs.get_manifest(run.id) == first
        outputs = [ArtifactRef(artifact_id=art.id, digest=art.digest)]
        second = await store.runs.put_manifest(
            run.id, inputs=None, outputs=outputs, diagnostics=[{"warn": "slow"}, {}]
        )
        got = await store.runs.get_manifest(run.id)
        assert got == second and got is not None
        assert got.inputs is None and got.outputs == outputs
        assert got.diagnostics == [{"warn": "slow"}, {}]
        assert got.created_at == first.created_at and got.updated_at >= first.updated_at
        ended = await store.runs.transition(run.id, "succeeded")
        third = await store.runs.put_manifest(run.id)
        assert (third.started_at, third.ended_at) == (ended.started_at, ended.ended_at)
        assert (third.inputs, third.outputs, third.diagnostics) == (None, None, None)

    async def test_put_manifest_refusals(self, store: Store) -> None:
        await refused(store, "not_found", store.runs.put_manifest("run-missing"))
        await expect_error("not_found", store.runs.get_manifest("run-missing"))
        run = await store.runs.create("job")
        missing = [ArtifactRef(artifact_id="art-missing")]
        await refused(store, "integrity", store.runs.put_manifest(run.id, outputs=missing))
        await refused(
            store,
            "integrity",
            store.runs.put_manifest(run.id, inputs=InputBundle(artifacts=missing)),
        )

    # ------------------------------------------------------------------ audit and durability

    async def test_mutations_are_audited(self, store: Store) -> None:
        seq = await audit_seq(store)
        run = await store.runs.create("job")
        await assert_audited(store, seq, run.id)
        for action in (
            store.runs.transition(run.id, "running"),
            store.runs.set_step(run.id, "s", "running"),
            store.runs.save_snapshot(run.id, {"a": 1}),
            store.runs.put_manifest(run.id, diagnostics=[]),
        ):
            seq = await audit_seq(store)
            await action
            await assert_audited(store, seq, run.id)

    async def test_closed_store_refuses_unavailable(self, store: Store) -> None:
        location = self.location / "closed"
        location.mkdir()
        other = await self.make_store(location, clock=FixedClock(T0), ids=SequentialIds())
        run = await other.runs.create("job")
        await other.close()
        for call in (
            other.runs.get(run.id),
            other.runs.create("job"),
            other.artifacts.query(),
            other.blobs.put(b"x"),
            other.logs.write(run.id, "x"),
            other.events.last_seq(),
            drain(other.events.iterate()),
            other.memory.create_profile("p"),
            other.audit.head(),
            other.audit.verify(),
            other.context.list_packages(),
        ):
            await expect_error("unavailable", call)

    async def test_runs_survive_reopen(self, store: Store) -> None:
        run = await _run_in(store, "running")
        run = await store.runs.set_step(run.id, "s", "running")
        snap = await store.runs.save_snapshot(run.id, {"a": [1], "b": None})
        manifest = await store.runs.put_manifest(run.id, diagnostics=[])
        reopened = await self.reopen(store)
        assert await reopened.runs.get(run.id) == run
        assert await reopened.runs.latest_snapshot(run.id) == snap
        assert await reopened.runs.get_manifest(run.id) == manifest
        moved = await reopened.runs.transition(run.id, "succeeded", expected_revision=run.revision)
        assert moved.revision == run.revision + 1
