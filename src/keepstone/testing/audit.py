"""Conformance of :class:`keepstone.ports.AuditLog`: the hash-chained audit record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keepstone.schemas import ApprovalMarker, AuditQuery, FixedClock, SequentialIds
from keepstone.schemas.audit import GENESIS_HASH, audit_hash
from keepstone.testing.base import (
    ALL,
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

    # ------------------------------------------------------------------ tamper evidence

    async def _history(self, store: Store) -> dict[str, Any]:
        """A little of everything: a run moved to running, an event, a log
        line, an artifact revised (a change record), two blobs."""
        run = await store.runs.create("etl")
        run = await store.runs.transition(run.id, "running")
        profile = await store.memory.create_profile("agent")
        event = (await store.events.append([_custom_event(profile.id, "evt_tamper_1")]))[0]
        await store.logs.write(run.id, "counted", data={"n": 42})
        docs = await store.artifacts.create_collection("docs")
        art = await store.artifacts.create(docs.id, "notes", b"first text")
        art = await store.artifacts.update(art.id, b"second text")
        return {"run": run, "event": event, "artifact": art}

    async def test_verify_checks_every_row_and_gives_an_anchor(self, store: Store) -> None:
        await self._history(store)
        verdict = await store.audit.verify()
        assert verdict.ok, verdict
        assert verdict.rows_checked > 5 and verdict.mismatches == []
        head = await store.audit.head()
        assert head is not None and verdict.anchor == head.anchor
        assert (await store.audit.verify(against=head.anchor)).ok
        chain_only = await store.audit.verify(rows=False)
        assert chain_only.ok and chain_only.rows_checked == 0

    async def _tamper_and_verify(
        self, store: Store, table: str, key: str, body: bytes | None
    ) -> None:
        writer = await _last_writer(store, table, key)
        await self.tamper_row(store, table, key, body)
        verdict = await store.audit.verify()
        assert not verdict.ok, f"an edit of {table} {key} went unseen"
        assert (verdict.table, verdict.key) == (table, key), verdict
        assert verdict.first_broken_seq == writer
        assert any(m.table == table and m.key == key for m in verdict.mismatches)
        report = await store.diagnose(verify_blobs=False)
        found = [d for d in report.diagnostics if d.code == "tampered_record"]
        assert [d.location for d in found] == [f"{table}:{key}"], report.diagnostics
        assert not report.ok

    async def test_verify_finds_an_edited_run(self, store: Store) -> None:
        run = (await self._history(store))["run"]
        body = await _stored(store, "runs", run.id)
        await self._tamper_and_verify(
            store, "runs", run.id, body.replace(b'"running"', b'"succeeded"')
        )

    async def test_verify_finds_an_edited_event_payload(self, store: Store) -> None:
        event = (await self._history(store))["event"]
        body = await _stored(store, "events", event.id)
        await self._tamper_and_verify(store, "events", event.id, body.replace(b"kept", b"lost"))

    async def test_verify_finds_an_edited_log_line(self, store: Store) -> None:
        run = (await self._history(store))["run"]
        line = (await store.logs.read(run.id)).items[0]
        key = str(line.seq)
        body = await _stored(store, "log_lines", key)
        await self._tamper_and_verify(store, "log_lines", key, body.replace(b"42", b"43"))

    async def test_verify_finds_an_edited_change_record(self, store: Store) -> None:
        await self._history(store)
        change = (await store.artifacts.changes()).items[-1]
        key = str(change.seq)
        body = await _stored(store, "changes", key)
        actor = f'"actor":"{change.actor}"'.encode()
        forged = body.replace(actor, b'"actor":"' + b"m" * len(change.actor) + b'"')
        assert forged != body
        await self._tamper_and_verify(store, "changes", key, forged)

    async def test_verify_finds_a_revision_repointed_at_other_bytes(self, store: Store) -> None:
        art = (await self._history(store))["artifact"]
        revisions = (await store.artifacts.revisions(art.id)).items
        first, last = revisions[0], revisions[-1]
        key = f"{art.id}:{last.number}"
        body = await _stored(store, "revisions", key)
        forged = body.replace(last.digest.encode(), first.digest.encode())
        assert forged != body
        await self._tamper_and_verify(store, "revisions", key, forged)

    async def test_verify_finds_a_removed_row(self, store: Store) -> None:
        run = (await self._history(store))["run"]
        writer = await _last_writer(store, "runs", run.id)
        await self.tamper_row(store, "runs", run.id, None)
        verdict = await store.audit.verify()
        assert not verdict.ok and (verdict.table, verdict.key) == ("runs", run.id)
        assert verdict.first_broken_seq == writer
        assert "missing" in (verdict.problem or ""), verdict.problem

    async def test_verify_finds_an_added_row_the_store_serves(self, store: Store) -> None:
        run = (await self._history(store))["run"]
        body = await _stored(store, "runs", run.id)
        forged = _with_id(body.replace(b"etl", b"xyz"), "run_forged")
        await self.tamper_row(store, "runs", "run_forged", forged)
        served = [r.id for r in (await store.runs.list(limit=ALL)).items]
        verdict = await store.audit.verify()
        added = [m for m in verdict.mismatches if m.key == "run_forged"]
        if "run_forged" in served:  # a backend may ignore what it did not write
            assert not verdict.ok and added and added[0].seq is None, verdict
        else:
            assert verdict.ok and not added

    async def test_verify_against_an_anchor(self, store: Store) -> None:
        await self._history(store)
        head = await store.audit.head()
        assert head is not None
        ok = await store.audit.verify(against=f"{head.seq - 1}:{head.prev_hash}")
        assert ok.ok
        other = "sha256:" + "1" * 64
        rewritten = await store.audit.verify(against=f"{head.seq}:{other}")
        assert not rewritten.ok and rewritten.first_broken_seq == head.seq
        beyond = await store.audit.verify(against=f"{head.seq + 5}:{head.hash}")
        assert not beyond.ok and "removed" in (beyond.problem or "")
        for bad in ("", "x", "3", "0:" + head.hash, f"{head.seq}:sha256:xyz"):
            await expect_error("invalid", store.audit.verify(against=bad))


async def _stored(store: Store, table: str, key: str) -> bytes:
    """The stored bytes of one row, as an outsider would read them back."""
    from keepstone.engine.tables import ALL_TABLES

    found = {t.name: t for t in ALL_TABLES}[table]
    raw = await store.backend.engine.get(found, key)  # type: ignore[attr-defined]
    assert raw is not None, f"{table} {key} is not stored"
    return bytes(raw)


def _with_id(body: bytes, new_id: str) -> bytes:
    import orjson

    row = orjson.loads(body)
    row["id"] = new_id
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


async def _last_writer(store: Store, table: str, key: str) -> int:
    """The seq of the audit record that last wrote ``table`` ``key``."""
    last = 0
    cursor = None
    while True:
        page = await store.audit.list(cursor=cursor, limit=1000)
        for record in page.items:
            if key in ((record.writes or {}).get(table) or {}):
                last = record.seq
        if page.next_cursor is None:
            assert last, f"no audit record wrote {table} {key}"
            return last
        cursor = page.next_cursor


def _custom_event(profile_id: str, event_id: str) -> Any:
    from datetime import UTC, datetime

    from keepstone.schemas.memory import CustomEvent, MemoryEvent

    return MemoryEvent(
        id=event_id,
        profile_id=profile_id,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        payload=CustomEvent(name="note", data={"fact": "kept"}),
    )
