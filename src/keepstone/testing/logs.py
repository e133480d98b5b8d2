"""Conformance of :class:`keepstone.ports.LogStore`: append-only JSONL streams per run."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from keepstone.schemas import LogLine, LogQuery, SequentialIds, sha256_digest
from keepstone.schemas.logs import LogLevel
from keepstone.testing.base import (
    ALL,
    APPROVAL,
    T0,
    ConformanceBase,
    assert_audited,
    assert_listing_refuses_bad_paging,
    assert_paginates,
    audit_seq,
    drain,
    expect_error,
    refused,
)

if TYPE_CHECKING:
    from keepstone import Store
    from keepstone.schemas import Run

LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error", "critical")


def _line(run_id: str, event: str, n: int = 0, **fields: object) -> LogLine:
    return LogLine.model_validate(
        {"run_id": run_id, "event": event, "at": T0 + timedelta(seconds=n), **fields}
    )


async def _run(store: Store, name: str = "job") -> Run:
    return await store.runs.create(name)


class LogStoreConformance(ConformanceBase):
    """Tests of ``store.logs``."""

    async def test_append_assigns_increasing_seq(self, store: Store) -> None:
        run = await _run(store)
        lines = [_line(run.id, "a", 0, data={}), _line(run.id, "b", 1, data=None, step="s")]
        stored = await store.logs.append(run.id, lines)
        seqs = [line.seq or 0 for line in stored]
        assert seqs == sorted(set(seqs)) and seqs[0] > 0
        assert [s.model_copy(update={"seq": None, "line": None}) for s in stored] == lines
        assert [s.line for s in stored] == [1, 2]
        read = (await store.logs.read(run.id)).items
        assert read == stored
        assert read[0].data == {} and read[1].data is None

    async def test_seq_is_store_wide_and_strictly_increasing(self, store: Store) -> None:
        one, two = await _run(store, "one"), await _run(store, "two")
        seqs: list[int] = []
        for i in range(6):
            target = one if i % 2 == 0 else two
            line = await store.logs.write(target.id, f"e{i}")
            assert line.seq is not None
            seqs.append(line.seq)
        assert all(a < b for a, b in itertools.pairwise(seqs)), seqs

    async def test_lines_are_numbered_per_run_from_one(self, store: Store) -> None:
        one, two = await _run(store, "one"), await _run(store, "two")
        for i in range(3):
            await store.logs.write(one.id, f"a{i}")
            await store.logs.write(two.id, f"b{i}")
        await store.logs.append(one.id, [_line(one.id, "batch", i) for i in range(3)])
        lines = (await store.logs.read(one.id)).items
        assert [(ln.line, ln.event) for ln in lines] == [
            (1, "a0"),
            (2, "a1"),
            (3, "a2"),
            (4, "batch"),
            (5, "batch"),
            (6, "batch"),
        ]
        assert [ln.line for ln in (await store.logs.read(two.id)).items] == [1, 2, 3]
        filtered = await store.logs.read(one.id, LogQuery(event="batch"), limit=2)
        assert [ln.line for ln in filtered.items] == [4, 5]
        ref = await store.logs.seal(one.id)
        sealed = [
            LogLine.model_validate_json(x) for x in (await store.blobs.get(ref.digest)).splitlines()
        ]
        assert [ln.line for ln in sealed] == [1, 2, 3, 4, 5, 6]
        await refused(store, "invalid", store.logs.append(two.id, [_line(two.id, "x", line=9)]))

    async def test_line_numbers_hold_with_concurrent_writers(self, store: Store) -> None:
        run = await _run(store)
        writers = [store]
        if "multi_process" in store.capabilities:  # a second connection, as another process
            writers.append(
                await self.make_store(self.location, clock=self.clock, ids=SequentialIds())
            )
            self._opened.append(writers[1])

        async def write(n: int) -> None:
            target = writers[n % len(writers)]
            for i in range(4):
                if i % 2:
                    await target.logs.write(run.id, f"w{n}.{i}")
                else:
                    await target.logs.append(
                        run.id, [_line(run.id, f"w{n}.{i}"), _line(run.id, "x")]
                    )

        await asyncio.gather(*(write(n) for n in range(8)))
        lines = (await store.logs.read(run.id, limit=ALL)).items
        assert len(lines) == 8 * 6
        assert [ln.line for ln in lines] == list(range(1, len(lines) + 1))

    async def test_write_stamps_with_store_clock(self, store: Store) -> None:
        run = await _run(store)
        line = await store.logs.write(
            run.id, "loaded", level="warning", message="m", step="s", data={"n": 1}
        )
        assert (line.run_id, line.event, line.level, line.message, line.step, line.data) == (
            run.id,
            "loaded",
            "warning",
            "m",
            "s",
            {"n": 1},
        )
        assert T0 <= line.at < self.clock.now()
        assert (await store.logs.read(run.id)).items == [line]

    async def test_append_is_all_or_nothing(self, store: Store) -> None:
        run, other = await _run(store), await _run(store, "other")
        await store.logs.write(run.id, "first")
        mixed = [_line(run.id, "ok"), _line(other.id, "elsewhere")]
        await refused(store, "invalid", store.logs.append(run.id, mixed))
        with_seq = [_line(run.id, "ok"), _line(run.id, "seq", seq=7)]
        await refused(store, "invalid", store.logs.append(run.id, with_seq))

    async def test_append_refusals(self, store: Store) -> None:
        await refused(
            store, "integrity", store.logs.append("run-missing", [_line("run-missing", "x")])
        )
        await refused(store, "integrity", store.logs.write("run-missing", "x"))
        run = await _run(store)
        await refused(store, "invalid", store.logs.write(run.id, "x", data={"v": float("nan")}))
        await refused(store, "invalid", store.logs.write(run.id, ""))
        await refused(store, "invalid", store.logs.write(run.id, "x", level="loud"))  # type: ignore[arg-type]

    async def test_read_filters_and_paginates(self, store: Store) -> None:
        run = await _run(store)
        written: list[LogLine] = []
        for i in range(10):
            written.append(
                await store.logs.write(
                    run.id, f"ev{i % 3}", level=LEVELS[i % 5], step="even" if i % 2 == 0 else None
                )
            )
        await store.logs.write((await _run(store, "noise")).id, "ev0")
        await assert_paginates(
            lambda c, n: store.logs.read(run.id, cursor=c, limit=n),
            key=lambda line: line.seq,
            expected=written,
        )

        async def seqs(query: LogQuery) -> list[int | None]:
            return [line.seq for line in (await store.logs.read(run.id, query, limit=ALL)).items]

        def expect(keep: Callable[[LogLine], bool]) -> list[int | None]:
            return [line.seq for line in written if keep(line)]

        pivot = written[4].seq
        assert pivot is not None
        assert await seqs(LogQuery(after_seq=pivot)) == expect(lambda x: (x.seq or 0) > pivot)
        assert await seqs(LogQuery(min_level="error")) == expect(
            lambda x: x.level in ("error", "critical")
        )
        assert await seqs(LogQuery(event="ev1")) == expect(lambda x: x.event == "ev1")
        assert await seqs(LogQuery(step="even")) == expect(lambda x: x.step == "even")
        both = LogQuery(event="ev0", step="even", min_level="info")
        assert await seqs(both) == expect(
            lambda x: x.event == "ev0" and x.step == "even" and x.level != "debug"
        )
        query = LogQuery(step="even")
        await assert_paginates(
            lambda c, n: store.logs.read(run.id, query, cursor=c, limit=n),
            key=lambda line: line.seq,
        )

    async def test_read_refusals(self, store: Store) -> None:
        await expect_error("not_found", store.logs.read("run-missing"))
        run = await _run(store)
        await store.logs.write(run.id, "x")
        await assert_listing_refuses_bad_paging(
            lambda c, n: store.logs.read(run.id, cursor=c, limit=n)
        )

    async def test_seal_stores_stream_as_blob(self, store: Store) -> None:
        run = await _run(store)
        assert await store.logs.reference(run.id) is None
        lines = [await store.logs.write(run.id, f"e{i}", data={"i": i}) for i in range(3)]
        ref = await store.logs.seal(run.id)
        blob = await store.blobs.get(ref.digest)
        assert (ref.run_id, ref.lines, ref.bytes, ref.digest) == (
            run.id,
            3,
            len(blob),
            sha256_digest(blob),
        )
        assert ref.location
        assert [LogLine.model_validate_json(x) for x in blob.splitlines()] == lines
        assert await store.logs.reference(run.id) == ref
        assert await store.logs.seal(run.id) == ref

    async def test_seal_empty_stream(self, store: Store) -> None:
        run = await _run(store)
        ref = await store.logs.seal(run.id)
        assert ref.lines == 0 and ref.bytes == 0 and ref.digest == sha256_digest(b"")

    async def test_sealed_stream_refuses_lines(self, store: Store) -> None:
        run = await _run(store)
        await store.logs.write(run.id, "x")
        await store.logs.seal(run.id)
        await refused(store, "conflict", store.logs.write(run.id, "late"))
        await refused(store, "conflict", store.logs.append(run.id, [_line(run.id, "late")]))

    async def test_seal_and_reference_unknown_run_not_found(self, store: Store) -> None:
        await refused(store, "not_found", store.logs.seal("run-missing"))
        await expect_error("not_found", store.logs.reference("run-missing"))

    async def test_purge_with_approval_removes_stream(self, store: Store) -> None:
        run, other = await _run(store), await _run(store, "other")
        for i in range(3):
            await store.logs.write(run.id, f"e{i}")
        kept = await store.logs.write(other.id, "kept")
        ref = await store.logs.seal(run.id)
        seq = await audit_seq(store)
        assert await store.logs.purge(run.id, approval=APPROVAL) == 3
        records = await assert_audited(store, seq, run.id)
        assert any(r.approval is not None for r in records)
        assert (await store.logs.read(run.id)).items == []
        assert await store.logs.reference(run.id) is None
        assert not await store.blobs.exists(ref.digest)
        assert (await store.logs.read(other.id)).items == [kept]
        assert await store.logs.purge(other.id, approval=APPROVAL) == 1

    async def test_purge_refusals(self, store: Store) -> None:
        run = await _run(store)
        await store.logs.write(run.id, "x")
        await refused(store, "review_required", store.logs.purge(run.id), audited=True)
        await refused(store, "not_found", store.logs.purge("run-missing", approval=APPROVAL))

    async def test_follow_yields_new_lines_and_ends_after_seal(self, store: Store) -> None:
        run = await _run(store)
        early = [await store.logs.write(run.id, f"early{i}") for i in range(2)]
        follower = asyncio.create_task(drain(store.logs.follow(run.id, poll_interval=0.01)))
        await asyncio.sleep(0.05)
        late = [await store.logs.write(run.id, f"late{i}") for i in range(2)]
        await asyncio.sleep(0.05)
        assert not follower.done(), "follow ended before the stream was sealed"
        more = await store.logs.write(run.id, "last")
        await store.logs.seal(run.id)
        followed = await asyncio.wait_for(follower, timeout=5)
        assert followed == [*early, *late, more]

    async def test_follow_after_seq_on_sealed_stream(self, store: Store) -> None:
        run = await _run(store)
        lines = [await store.logs.write(run.id, f"e{i}") for i in range(4)]
        await store.logs.seal(run.id)
        after = lines[1].seq
        assert after is not None
        followed = await asyncio.wait_for(
            drain(store.logs.follow(run.id, after_seq=after, poll_interval=0.01)), timeout=5
        )
        assert followed == lines[2:]

    async def test_follow_unknown_run_not_found(self, store: Store) -> None:
        follow = store.logs.follow("run-missing", poll_interval=0.01)
        await expect_error("not_found", asyncio.wait_for(drain(follow), timeout=5))

    async def test_mutations_are_audited(self, store: Store) -> None:
        run = await _run(store)
        seq = await audit_seq(store)
        await store.logs.write(run.id, "x")
        await assert_audited(store, seq, run.id)
        seq = await audit_seq(store)
        await store.logs.append(run.id, [_line(run.id, "y")])
        await assert_audited(store, seq, run.id)
        seq = await audit_seq(store)
        await store.logs.seal(run.id)
        await assert_audited(store, seq, run.id)

    async def test_logs_survive_reopen(self, store: Store) -> None:
        run = await _run(store)
        lines = [await store.logs.write(run.id, f"e{i}") for i in range(3)]
        ref = await store.logs.seal(run.id)
        reopened = await self.reopen(store)
        assert (await reopened.logs.read(run.id)).items == lines
        assert await reopened.logs.reference(run.id) == ref
        await refused(reopened, "conflict", reopened.logs.write(run.id, "late"))
