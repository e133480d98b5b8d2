"""The filesystem engine held to the reference engine on a random history
across reopen, index loss and rebuild, and sharing a workspace with other
engines (the engine conformance suite runs in test_engine_conformance_fs.py)."""

from __future__ import annotations

import asyncio
import pathlib
import random
from typing import Any

import orjson
import pytest

from keepstone.backends.fs.engine import FsEngine
from keepstone.backends.memory.engine import MemoryEngine
from keepstone.engine.spi import (
    Append,
    Restore,
    WriteBatch,
)
from keepstone.engine.tables import AUDIT, EVENTS
from keepstone.testing.engine import (
    assert_audit_chain,
    assert_same_answers,
    audit_draft,
    event_row,
    random_history,
)


async def open_engine(root: pathlib.Path, **options: Any) -> FsEngine:
    return await FsEngine.open(root, version="0.0.0-test", **options)


@pytest.mark.parametrize("lose_index", [False, True])
async def test_answers_like_memory_across_reopen(tmp_path: pathlib.Path, lose_index: bool) -> None:
    """Same random batches into both engines; every query must answer the same,
    before and after a reopen (from index.json, or rebuilt from the files)."""
    rng = random.Random(20260105)
    memory = MemoryEngine()
    root = tmp_path / "ws"
    fs = await open_engine(root)
    try:
        await random_history(rng, [memory, fs], 80, 0)
        await assert_same_answers(memory, fs)
        await fs.close()
        if lose_index:
            (root / "index.json").unlink()
        fs = await open_engine(root)
        await assert_same_answers(memory, fs)
        await random_history(rng, [memory, fs], 80, 80)
        await assert_same_answers(memory, fs)
    finally:
        await memory.close()
        await fs.close()


async def test_small_checkpoints_keep_every_answer(tmp_path: pathlib.Path) -> None:
    """A journal limit of 1 byte checkpoints after every commit."""
    rng = random.Random(7)
    memory = MemoryEngine()
    fs = await open_engine(tmp_path / "ws", checkpoint_bytes=1)
    try:
        await random_history(rng, [memory, fs], 60, 0)
        await assert_same_answers(memory, fs)
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
            await eng.apply(WriteBatch([Append(EVENTS, event_row(i))], [audit_draft(f"a{i}")]))
        for eng in (one, two):
            seqs = [orjson.loads(r)["seq"] for r in await eng.find(EVENTS)]
            assert sorted(seqs) == list(range(1, 21))
            assert await eng.last_seq(AUDIT) == 20
        await assert_audit_chain(one, 20)
        await assert_audit_chain(two, 20)
    finally:
        await one.close()
        await two.close()


async def test_restore_then_reopen_keeps_counters(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "ws"
    fs = await open_engine(root)
    await fs.apply(WriteBatch([Restore(EVENTS, {**event_row(1), "seq": 41})]))
    await fs.close()
    fs = await open_engine(root)
    try:
        result = await fs.apply(WriteBatch([Append(EVENTS, event_row(2))]))
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
            await writer.apply(WriteBatch([Append(EVENTS, event_row(i))], [audit_draft("a")]))
        assert len(await reader.find(EVENTS)) == commits
        assert await reader.last_seq(AUDIT) == commits
        await reader.apply(WriteBatch([Append(EVENTS, event_row(99))], [audit_draft("b")]))
        assert await writer.last_seq(EVENTS) == commits + 1
        await assert_audit_chain(writer, commits + 1)
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
                event = event_row(w * 100 + i)
                await fs.apply(WriteBatch([Append(EVENTS, event)], [audit_draft(f"w{w}")]))

        async def inspector() -> None:
            for _ in range(5):
                assert await fs.diagnose() == []
                await fs.checkpoint()

        await asyncio.gather(*(writer(w) for w in range(8)), inspector())
        assert await fs.last_seq(EVENTS) == 80
        await assert_audit_chain(fs, 80)
    finally:
        await fs.close()


async def test_a_reader_finishes_the_commit_of_a_writer_that_died(tmp_path: pathlib.Path) -> None:
    """A commit line without its done line, and files never written: once the
    workspace lock is free (its writer is gone), a reader applies it."""
    root = tmp_path / "ws"
    reader = await open_engine(root)
    writer = await open_engine(root)
    try:
        await writer.apply(WriteBatch([Append(EVENTS, event_row(1))], [audit_draft("a")]))
        journal = (root / "journal.jsonl").read_bytes().splitlines(keepends=True)
        assert orjson.loads(journal[-1]) == {"done": 1}
        # As if the writer had died right after its fsync: no done line, no files.
        (root / "journal.jsonl").write_bytes(b"".join(journal[:-1]))
        for name in ("events.jsonl", "audit.jsonl"):
            (root / name).write_bytes(b"")
        rows = await reader.find(EVENTS)
        assert [orjson.loads(r)["id"] for r in rows] == ["evt_0001"]
        assert orjson.loads((root / "journal.jsonl").read_bytes().splitlines()[-1]) == {"done": 1}
        await assert_audit_chain(reader, 1)
        notes = await reader.diagnose()
        assert [n["code"] for n in notes] == ["recovered"]
    finally:
        await reader.close()
        writer._ws.close()
