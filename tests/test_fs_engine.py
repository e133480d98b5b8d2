"""The filesystem engine held to the engine contract, op by op, and to the
reference engine on a random history — across reopen, index loss and rebuild."""

from __future__ import annotations

import asyncio
import pathlib
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from keepstone.backends.fs.engine import FsEngine
from keepstone.backends.memory.engine import MemoryEngine
from keepstone.engine.spi import (
    Append,
    BlobPut,
    CheckNone,
    Cmp,
    Delete,
    In,
    Put,
    Restore,
    Table,
    WriteBatch,
)
from keepstone.engine.tables import AUDIT, EVENTS, LOG_LINES, RUNS
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from tests import test_engine_contract as contract


async def open_engine(root: pathlib.Path, **options: Any) -> FsEngine:
    return await FsEngine.open(root, version="0.0.0-test", **options)


@pytest.fixture
async def engine(tmp_path: pathlib.Path) -> AsyncIterator[FsEngine]:
    made = await open_engine(tmp_path / "ws")
    try:
        yield made
    finally:
        await made.close()


class TestFsEngineContract(contract.TestEngineContract):
    """Every contract test of the memory and SQLite engines, on the filesystem engine."""


def _draft(action: str) -> dict[str, Any]:
    return contract._draft(action)


async def _history(rng: random.Random, engines: list[Any], steps: int, start: int) -> None:
    names, statuses, teams = ["etl", "train", "eval"], ["pending", "running", "failed"], "abc"
    for step in range(start, start + steps):
        ops: list[Any] = []
        for _ in range(rng.randint(1, 4)):
            rid = f"r{rng.randint(0, 30)}"
            choice = rng.random()
            if choice < 0.5:
                row = {
                    "id": rid,
                    "name": rng.choice(names),
                    "status": rng.choice([*statuses, None]),
                    "created_at": f"2026-01-{rng.randint(1, 28):02d}",
                    "labels": {"team": rng.choice(teams), "n": rng.randint(0, 2)},
                }
                ops.append(Put(RUNS, row, expect=rng.choice(["any", "any", "absent"])))
            elif choice < 0.6:
                ops.append(Delete(RUNS, rid))
            elif choice < 0.75:
                ops.append(Append(EVENTS, contract._event(step * 10 + len(ops), rng.choice(names))))
            elif choice < 0.85:
                line = {"run_id": rid, "level": rng.choice(["info", "error"]), "event": "e"}
                ops.append(Append(LOG_LINES, line))
            elif choice < 0.9:
                ops.append(Delete(LOG_LINES, str(rng.randint(1, 40))))
            elif choice < 0.95:
                data = f"blob {rng.randint(0, 5)}".encode()
                ops.append(BlobPut(sha256_digest(data), data))
            else:
                ops.append(CheckNone(RUNS, {"name": "etl", "status": "failed"}, "conflict", "m"))
        batch = WriteBatch(ops, [_draft(f"step{step}")])
        outcomes = []
        for eng in engines:
            try:
                outcomes.append(await eng.apply(batch))
            except StorageError as exc:
                outcomes.append(exc.to_dict())
        assert all(o == outcomes[0] for o in outcomes), step


QUERIES: list[tuple[Table, dict[str, Any]]] = [
    (RUNS, {"order": ("created_at",)}),
    (RUNS, {"order": ("created_at",), "desc": True, "limit": 7}),
    (RUNS, {"where": {"status": None}, "order": ("created_at",)}),
    (RUNS, {"where": {"name": "etl", "status": In(("failed", None))}}),
    (RUNS, {"where": {"created_at": (Cmp(">=", "2026-01-05"), Cmp("<", "2026-01-20"))}}),
    (RUNS, {"tags": {"team": "a"}, "order": ("created_at",)}),
    (RUNS, {"tags": {"team": "b", "n": 1}}),
    (RUNS, {"order": ("name", "created_at"), "after": ("etl", "2026-01-10", "r5")}),
    (EVENTS, {"order": ("seq",), "where": {"payload.kind": "train"}}),
    (EVENTS, {"order": ("seq",), "desc": True, "after": (20, "x"), "limit": 5}),
    (EVENTS, {}),
    (LOG_LINES, {"where": {"run_id": "r3"}, "order": ("seq",)}),
    (LOG_LINES, {"where": {"level": "error", "seq": Cmp(">", 5)}, "order": ("seq",)}),
    (LOG_LINES, {"order": ("seq",), "desc": True, "limit": 3}),
    (AUDIT, {"order": ("seq",), "where": {"seq": Cmp(">", 30)}}),
    (AUDIT, {"after": ("12",), "limit": 4}),
]


async def _same_answers(reference: MemoryEngine, fs: FsEngine) -> None:
    for table, kwargs in QUERIES:
        kwargs = dict(kwargs)
        where = kwargs.pop("where", None)
        expected = await reference.find(table, where, **kwargs)
        assert await fs.find(table, where, **kwargs) == expected, (table.name, kwargs)
        assert await fs.count(table, where) == await reference.count(table, where)
    for table in (RUNS, EVENTS, AUDIT, LOG_LINES):
        assert await fs.last_seq(table) == await reference.last_seq(table)
    assert await fs.blob_list(None, 100) == await reference.blob_list(None, 100)


@pytest.mark.parametrize("lose_index", [False, True])
async def test_answers_like_memory_across_reopen(tmp_path: pathlib.Path, lose_index: bool) -> None:
    """Same random batches into both engines; every query must answer the same,
    before and after a reopen (from index.json, or rebuilt from the files)."""
    rng = random.Random(20260105)
    memory = MemoryEngine()
    root = tmp_path / "ws"
    fs = await open_engine(root)
    try:
        await _history(rng, [memory, fs], 80, 0)
        await _same_answers(memory, fs)
        await fs.close()
        if lose_index:
            (root / "index.json").unlink()
        fs = await open_engine(root)
        await _same_answers(memory, fs)
        await _history(rng, [memory, fs], 80, 80)
        await _same_answers(memory, fs)
    finally:
        await memory.close()
        await fs.close()


async def test_small_checkpoints_keep_every_answer(tmp_path: pathlib.Path) -> None:
    """A journal limit of 1 byte checkpoints after every commit."""
    rng = random.Random(7)
    memory = MemoryEngine()
    fs = await open_engine(tmp_path / "ws", checkpoint_bytes=1)
    try:
        await _history(rng, [memory, fs], 60, 0)
        await _same_answers(memory, fs)
    finally:
        await memory.close()
        await fs.close()


async def test_two_engines_on_one_workspace_see_each_other(tmp_path: pathlib.Path) -> None:
    """Two stores in one process: each commit catches up with the other's."""
    root = tmp_path / "ws"
    one, two = await open_engine(root), await open_engine(root)
    try:
        for i in range(20):
            eng = one if i % 2 else two
            await eng.apply(WriteBatch([Append(EVENTS, contract._event(i))], [_draft(f"a{i}")]))
        for eng in (one, two):
            seqs = [orjson.loads(r)["seq"] for r in await eng.find(EVENTS)]
            assert sorted(seqs) == list(range(1, 21))
            assert await eng.last_seq(AUDIT) == 20
        await contract._assert_chain(one, 20)
        await contract._assert_chain(two, 20)
    finally:
        await one.close()
        await two.close()


async def test_restore_then_reopen_keeps_counters(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "ws"
    fs = await open_engine(root)
    await fs.apply(WriteBatch([Restore(EVENTS, {**contract._event(1), "seq": 41})]))
    await fs.close()
    fs = await open_engine(root)
    try:
        result = await fs.apply(WriteBatch([Append(EVENTS, contract._event(2))]))
        assert result.seqs == [42]
    finally:
        await fs.close()


@pytest.mark.parametrize("commits", [1, 5])
async def test_a_reader_follows_checkpoints_of_another_writer(
    tmp_path: pathlib.Path, commits: int
) -> None:
    """The writer checkpoints (and starts a new journal) after every commit.
    One checkpoint: the reader drains the old journal and goes on; several:
    it has lost track of commits and rebuilds its view under the lock."""
    root = tmp_path / "ws"
    reader = await open_engine(root)
    writer = await open_engine(root, checkpoint_bytes=1)
    try:
        assert await reader.find(EVENTS) == []
        for i in range(commits):
            await writer.apply(WriteBatch([Append(EVENTS, contract._event(i))], [_draft("a")]))
        assert len(await reader.find(EVENTS)) == commits
        assert await reader.last_seq(AUDIT) == commits
        await reader.apply(WriteBatch([Append(EVENTS, contract._event(99))], [_draft("b")]))
        assert await writer.last_seq(EVENTS) == commits + 1
        await contract._assert_chain(writer, commits + 1)
    finally:
        await reader.close()
        await writer.close()


async def test_diagnose_and_checkpoint_interleave_with_commits(tmp_path: pathlib.Path) -> None:
    """Tasks that take the workspace lock (commits, diagnose, checkpoint) in one
    process take turns: every commit lands once, the chain holds."""
    fs = await open_engine(tmp_path / "ws")
    try:

        async def writer(w: int) -> None:
            for i in range(10):
                event = contract._event(w * 100 + i)
                await fs.apply(WriteBatch([Append(EVENTS, event)], [_draft(f"w{w}")]))

        async def inspector() -> None:
            for _ in range(5):
                assert await fs.diagnose() == []
                await fs.checkpoint()

        await asyncio.gather(*(writer(w) for w in range(8)), inspector())
        assert await fs.last_seq(EVENTS) == 80
        await contract._assert_chain(fs, 80)
    finally:
        await fs.close()


async def test_a_reader_finishes_the_commit_of_a_writer_that_died(tmp_path: pathlib.Path) -> None:
    """A commit line without its done line, and files never written: once the
    workspace lock is free (its writer is gone), a reader applies it."""
    root = tmp_path / "ws"
    reader = await open_engine(root)
    writer = await open_engine(root)
    try:
        await writer.apply(WriteBatch([Append(EVENTS, contract._event(1))], [_draft("a")]))
        journal = (root / "journal.jsonl").read_bytes().splitlines(keepends=True)
        assert orjson.loads(journal[-1]) == {"done": 1}
        # As if the writer had died right after its fsync: no done line, no files.
        (root / "journal.jsonl").write_bytes(b"".join(journal[:-1]))
        for name in ("events.jsonl", "audit.jsonl"):
            (root / name).write_bytes(b"")
        rows = await reader.find(EVENTS)
        assert [orjson.loads(r)["id"] for r in rows] == ["evt_0001"]
        assert orjson.loads((root / "journal.jsonl").read_bytes().splitlines()[-1]) == {"done": 1}
        await contract._assert_chain(reader, 1)
        notes = await reader.diagnose()
        assert [n["code"] for n in notes] == ["recovered"]
    finally:
        await reader.close()
        writer._ws.close()
