"""Conformance of :class:`keepstone.ports.AuditLog`: the hash-chained audit record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keepstone.schemas import ApprovalMarker, AuditQuery, FixedClock, SequentialIds
from keepstone.schemas.audit import GENESIS_HASH, audit_hash
from keepstone.testing.base import (
    APPROVAL,
    T0,
    ConformanceBase,
    assert_listing_refuses_bad_paging,
    assert_paginates,
    audit_seq,
    audit_since,
    expect_error,
    refused,
)

if TYPE_CHECKING:
    from keepstone import Store
    from keepstone.schemas import AuditRecord


def _assert_chained(records: list[AuditRecord]) -> None:
    previous = GENESIS_HASH
    for expected_seq, record in enumerate(records, start=1):
        assert record.seq == expected_seq, "audit seqs have a gap"
        assert record.prev_hash == previous, f"record {record.seq} does not chain"
        assert record.hash == audit_hash(record.model_dump(mode="json")), record.seq
        previous = record.hash


class AuditLogConformance(ConformanceBase):
    """Tests of ``store.audit``."""

    async def test_empty_chain(self, store: Store) -> None:
        assert await store.audit.head() is None
        assert (await store.audit.list()).items == []
        verification = await store.audit.verify()
        assert (verification.ok, verification.checked) == (True, 0)
        assert verification.first_broken_seq is None

    async def test_record_appends_chained_record(self, store: Store) -> None:
        before = await store.audit.head()
        first = await store.audit.record("deploy", "service-a", details={})
        assert first.seq == (0 if before is None else before.seq) + 1
        assert first.prev_hash == (GENESIS_HASH if before is None else before.hash)
        assert (first.action, first.target, first.outcome) == ("deploy", "service-a", "applied")
        assert first.details == {} and first.approval is None
        assert first.hash == audit_hash(first.model_dump(mode="json"))
        approval = ApprovalMarker(approved_by="alice", reason="scheduled", approved_at=T0)
        second = await store.audit.record(
            "purge", "x", outcome="denied", approval=approval, details=None
        )
        assert (second.seq, second.prev_hash) == (first.seq + 1, first.hash)
        assert (second.outcome, second.approval, second.details) == ("denied", approval, None)
        assert await store.audit.head() == second
        assert await store.audit.get(first.seq) == first
        assert await store.audit.get(second.seq) == second

    async def test_record_refusals(self, store: Store) -> None:
        await refused(store, "invalid", store.audit.record("", "t"))
        await refused(store, "invalid", store.audit.record("a", "t", details={"x": float("nan")}))
        await refused(store, "invalid", store.audit.record("a", "t", outcome="maybe"))  # type: ignore[arg-type]

    async def test_get_unknown_not_found(self, store: Store) -> None:
        await store.audit.record("a", "t")
        await expect_error("not_found", store.audit.get(await audit_seq(store) + 1))
        await expect_error("not_found", store.audit.get(0))

    async def test_list_filters_and_paginates(self, store: Store) -> None:
        for i in range(7):
            outcome: Any = "denied" if i % 3 == 0 else "applied"
            await store.audit.record(f"act{i % 2}", f"target{i % 3}", outcome=outcome)
        await store.runs.create("job")
        records = await assert_paginates(
            lambda c, n: store.audit.list(cursor=c, limit=n), key=lambda r: r.seq
        )
        assert [r.seq for r in records] == list(range(1, len(records) + 1))

        async def seqs(**kw: Any) -> list[int]:
            return [r.seq for r in (await store.audit.list(AuditQuery(**kw), limit=100)).items]

        def expect(**kw: Any) -> list[int]:
            return [r.seq for r in records if all(getattr(r, k) == v for k, v in kw.items())]

        assert await seqs(action="act1") == expect(action="act1")
        assert await seqs(target="target0") == expect(target="target0")
        assert await seqs(outcome="denied") == expect(outcome="denied") != []
        assert await seqs(action="act0", outcome="applied") == expect(
            action="act0", outcome="applied"
        )
        actor = records[0].actor
        assert await seqs(actor=actor) == expect(actor=actor)
        assert await seqs(actor=actor + "-nobody") == []
        assert await seqs(after_seq=3) == [r.seq for r in records if r.seq > 3]
        query = AuditQuery(action="act0")
        await assert_paginates(
            lambda c, n: store.audit.list(query, cursor=c, limit=n), key=lambda r: r.seq
        )
        await assert_listing_refuses_bad_paging(lambda c, n: store.audit.list(cursor=c, limit=n))

    async def test_every_store_write_extends_one_chain(self, store: Store) -> None:
        run = await store.runs.create("job")
        await store.runs.transition(run.id, "running")
        coll = await store.artifacts.create_collection("c")
        await store.artifacts.create(coll.id, "a", "x")
        await store.audit.record("note", "manual")
        profile = await store.memory.create_profile("p")
        await store.memory.put_node(profile.id, "fact")
        await store.context.put_external("mem0", "ref-1", provenance={})
        records = await audit_since(store, 0)
        assert len(records) >= 8
        _assert_chained(records)
        verification = await store.audit.verify()
        assert (verification.ok, verification.checked) == (True, len(records))
        assert verification.first_broken_seq is None and verification.problem is None

    async def test_verify_names_edited_record(self, store: Store) -> None:
        for i in range(4):
            await store.audit.record("note", f"t{i}")
        second = await store.audit.get(2)
        await self.tamper_audit(store, second.model_copy(update={"target": "rewritten"}))
        verification = await store.audit.verify()
        assert (verification.ok, verification.first_broken_seq) == (False, 2)
        assert verification.problem

    async def test_verify_names_broken_link(self, store: Store) -> None:
        for i in range(4):
            await store.audit.record("note", f"t{i}")
        second = (await store.audit.get(2)).model_copy(update={"target": "rewritten"})
        rehashed = second.model_copy(update={"hash": audit_hash(second.model_dump(mode="json"))})
        await self.tamper_audit(store, rehashed)
        verification = await store.audit.verify()
        assert (verification.ok, verification.first_broken_seq) == (False, 3)
        assert verification.problem

    async def test_actor_given_to_open_is_recorded(self, store: Store) -> None:
        async with self.scratch_store(actor="alice") as other:
            run = await other.runs.create("job")
            coll = await other.artifacts.create_collection("c")
            await other.artifacts.create(coll.id, "a", "x")
            await other.audit.record("note", run.id)
            records = await audit_since(other, 0)
            assert records and {r.actor for r in records} == {"alice"}
            changes = (await other.artifacts.changes()).items
            assert changes and {c.actor for c in changes} == {"alice"}

    async def test_denied_lifecycle_action_is_audited_with_target(self, store: Store) -> None:
        profile = await store.memory.create_profile("p")
        node = await store.memory.put_node(profile.id, "fact")
        seq = await audit_seq(store)
        await expect_error("review_required", store.memory.forget_node(profile.id, node.id))
        denied = await audit_since(store, seq)
        assert [r.outcome for r in denied] == ["denied"]
        assert node.id in denied[0].target or node.id in str(denied[0].details)
        await store.memory.forget_node(profile.id, node.id, approval=APPROVAL)
        applied = await audit_since(store, seq + 1)
        assert any(
            r.outcome == "applied"
            and r.approval is not None
            and r.approval.approved_by == "reviewer"
            for r in applied
        )
        assert (await store.audit.verify()).ok

    async def test_audit_survives_reopen(self, store: Store) -> None:
        await store.runs.create("job")
        await store.audit.record("note", "t", details={"k": None})
        records = await audit_since(store, 0)
        reopened = await self.reopen(store)
        assert await audit_since(reopened, 0) == records
        appended = await reopened.audit.record("after", "t")
        assert (appended.seq, appended.prev_hash) == (records[-1].seq + 1, records[-1].hash)
        assert (await reopened.audit.verify()).ok

    async def test_fresh_stores_do_not_share_a_chain(self, store: Store) -> None:
        await store.audit.record("note", "t")
        async with self.scratch_store(clock=FixedClock(T0), ids=SequentialIds()) as other:
            assert await other.audit.head() is None
