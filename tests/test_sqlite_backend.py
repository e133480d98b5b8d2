"""What only the SQLite backend promises: URLs and options, opening and migrating,
the schema behind the queries, blob placement, group commit, dedup on disk."""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import sqlite3
import string
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

import keepstone
from keepstone.backends.sql.common import read_migrations
from keepstone.backends.sql.sqlite import SQLiteEngine, parse_url
from keepstone.backends.sql.sqlite_schema import (
    LAYOUTS,
    layout_of,
    load_migrations,
    select_sql,
)
from keepstone.engine.spi import Append, BatchResult, BlobPut, Cmp, In, Put, WriteBatch
from keepstone.engine.stager import BlobStored as BlobFile
from keepstone.engine.tables import ALL_TABLES, AUDIT, EVENTS, RUNS
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from keepstone.schemas.fulltext import WORDS_RULE


def _url(path: pathlib.Path) -> str:
    return f"sqlite:///{path}"


async def _open_error(url: str, **options: Any) -> StorageError:
    try:
        store = await keepstone.open(url, **options)
    except StorageError as exc:
        return exc
    await store.close()
    raise AssertionError(f"{url} opened")


# --------------------------------------------------------------------------- URLs and options


async def test_relative_and_absolute_urls(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    async with keepstone.open("sqlite:///sub/rel.db") as store:
        await store.runs.create("relative")
    assert (tmp_path / "sub" / "rel.db").is_file()
    absolute = tmp_path / "abs.db"
    assert absolute.is_absolute()
    async with keepstone.open(f"sqlite:///{absolute}") as store:  # sqlite:////tmp/...
        await store.runs.create("absolute")
    assert absolute.is_file()
    assert parse_url("sqlite:////a/b.db", {})[0] == pathlib.Path("/a/b.db")
    assert parse_url("sqlite:///a/b.db", {})[0] == pathlib.Path("a/b.db")


async def test_options_from_query_string_and_keywords(tmp_path: pathlib.Path) -> None:
    assert parse_url("sqlite:///x.db?blob_threshold=10", {})[1] == {"blob_threshold": 10}
    assert parse_url("sqlite:///x.db", {"blob_threshold": 7})[1] == {"blob_threshold": 7}
    assert parse_url("sqlite:///x.db", {})[1] == {"blob_threshold": 64 * 1024}
    async with keepstone.open(_url(tmp_path / "q.db") + "?blob_threshold=4") as store:
        info = await store.blobs.put(b"12345")
    assert (tmp_path / "q.db.blobs" / info.digest[7:9] / info.digest[9:11]).is_dir()


@pytest.mark.parametrize(
    ("url", "options", "fragment"),
    [
        ("sqlite:///{d}/x.db?colour=red", {}, "unknown sqlite option(s) colour"),
        ("sqlite:///{d}/x.db", {"journal": "delete"}, "unknown sqlite option(s) journal"),
        ("sqlite:///{d}/x.db?blob_threshold=big", {}, "blob_threshold is a number"),
        ("sqlite:///{d}/x.db", {"blob_threshold": -1}, "blob_threshold is a number"),
        ("sqlite://host/x.db", {}, "has no host"),
        ("sqlite://", {}, "needs a database file path"),
        ("sqlite:///:memory:", {}, "needs a database file path"),
        ("sqlite:///{d}/missing/x.db", {}, "does not exist; create it"),
        ("sqlite:///{d}", {}, "is a directory"),
    ],
)
async def test_config_errors(
    tmp_path: pathlib.Path, url: str, options: dict[str, Any], fragment: str
) -> None:
    err = await _open_error(url.format(d=tmp_path), **options)
    assert err.code == "config"
    assert fragment in err.message
    assert not (tmp_path / "missing").exists()


async def test_a_file_that_is_not_a_database(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    err = await _open_error(_url(path))
    assert err.code == "corrupt"
    assert "is not a SQLite database" in err.message
    assert path.read_bytes().startswith(b"these are my notes")


async def test_a_database_that_is_not_a_keepstone_store(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.close()
    err = await _open_error(_url(path))
    assert err.code == "config"
    assert "not a keepstone store" in err.message


async def test_a_store_from_a_newer_keepstone_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "newer.db"
    async with keepstone.open(_url(path)) as store:
        await store.runs.create("before")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE keepstone_meta SET value = 99 WHERE name = 'schema_version'")
    conn.close()
    err = await _open_error(_url(path))
    assert err.code == "unsupported_schema"
    assert err.details["schema_version"] == 99
    assert "upgrade keepstone" in err.message


async def test_reopening_keeps_the_stamp(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "stamp.db"
    for _ in range(2):
        async with keepstone.open(_url(path)) as store:
            await store.runs.create("again")
    with sqlite3.connect(path) as conn:
        stamps = dict(conn.execute("SELECT name, value FROM keepstone_meta").fetchall())
        mode = conn.execute("PRAGMA journal_mode").fetchone()
    conn.close()
    assert stamps == {"schema_version": len(load_migrations()), "words_rule": WORDS_RULE}
    assert mode == ("wal",)


_OPEN_AT_ONCE = textwrap.dedent(
    """
    import asyncio, sys, time
    import keepstone

    async def main():
        while time.time() < float(sys.argv[2]):
            time.sleep(0.001)
        async with keepstone.open("sqlite:///" + sys.argv[1]) as store:
            await store.runs.create("racer")
        print("ok")

    asyncio.run(main())
    """
)


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: pathlib.Path) -> None:
    for attempt in range(3):
        path = tmp_path / f"race{attempt}.db"
        start = time.time() + 1.5
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _OPEN_AT_ONCE, str(path), str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=60) for p in procs]
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0 and out.strip() == "ok", err
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM runs").fetchone() == (3,)
            newest = read_migrations("sqlite")[-1].version
            version = "SELECT value FROM keepstone_meta WHERE name = 'schema_version'"
            assert conn.execute(version).fetchone() == (newest,)
        conn.close()


# --------------------------------------------------------------------------- schema


async def test_migration_matches_all_tables(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "schema.db"
    engine = await SQLiteEngine.open(path)
    await engine.close()
    conn = sqlite3.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"keepstone_meta", "keepstone_counters", "blobs"} <= names
        for table in ALL_TABLES:
            layout = LAYOUTS[table.name]
            assert table.name in names
            columns = {r[1] for r in conn.execute(f'PRAGMA table_info("{table.name}")')}
            wanted = {c.replace(".", "_") for c in (*table.key, *table.columns)} | {"body"}
            if table.seq:
                wanted.add("seq")
            if table.key == ("seq",):
                wanted.discard("seq")
                assert "seq" in columns
            elif len(table.key) > 1:
                wanted.add("pk")
            assert wanted <= columns, (table.name, wanted - columns)
            assert layout.key_column in columns
            if table.tags:
                assert f"{table.name}_tags" in names
            if table.text:
                assert f"{table.name}_fts" in names
                fts = {r[1] for r in conn.execute(f'PRAGMA table_info("{table.name}_fts")')}
                assert fts == {c.replace(".", "_") for c in table.text}
        ours = {t.name for t in ALL_TABLES}
        extra = {
            n
            for n in names
            if n not in ours and not n.startswith(("keepstone_", "sqlite_")) and n != "blobs"
        }
        assert all(n.endswith("_tags") or "_fts" in n for n in extra), extra
    finally:
        conn.close()


_QUERIES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("runs", {}, {"order": ("created_at",), "limit": 101}),
    ("runs", {"name": "x"}, {"order": ("created_at",), "after": ("t", "r")}),
    ("runs", {"status": "running", "created_at": (Cmp(">", "a"),)}, {"order": ("created_at",)}),
    ("runs", {}, {"order": ("created_at",), "tags": {"team": "a"}}),
    ("snapshots", {"run_id": "r"}, {"order": ("number",), "desc": True, "limit": 1}),
    ("collections", {"name": "c"}, {"limit": 1}),
    ("collections", {}, {"order": ("name",), "limit": 101}),
    ("artifacts", {"collection_id": "c", "name": "n", "deleted_at": None}, {"limit": 1}),
    ("artifacts", {"deleted_at": None}, {"limit": 101}),
    ("artifacts", {"collection_id": "c", "deleted_at": None}, {"after": ("a",)}),
    ("artifacts", {"digest": "d", "deleted_at": None}, {}),
    ("artifacts", {"run_id": "r", "deleted_at": None}, {}),
    ("artifacts", {"type": "qa", "deleted_at": None}, {}),
    ("artifacts", {"id": In(("a", "b")), "deleted_at": None}, {}),
    ("artifacts", {"deleted_at": None}, {"tags": {"k": "v"}}),
    ("artifact_text", {}, {"text": "hello world"}),
    ("revisions", {"artifact_id": "a"}, {"order": ("number",)}),
    ("relationships", {"source_id": "a"}, {}),
    ("relationships", {"target_id": "a", "kind": "k"}, {"after": ("x",)}),
    ("relationships", {"source_id": "a", "target_id": "b", "kind": "k"}, {"limit": 1}),
    ("changes", {"artifact_id": "a"}, {"order": ("seq",)}),
    ("log_lines", {"run_id": "r", "seq": Cmp(">", 5), "level": In(("info",))}, {"order": ("seq",)}),
    ("events", {"profile_id": "p", "path_id": "x", "seq": (Cmp(">", 1),)}, {"order": ("seq",)}),
    ("events", {"profile_id": "p"}, {"order": ("seq",), "desc": True, "limit": 1}),
    ("events", {"payload.kind": In(("a", "b"))}, {"order": ("seq",)}),
    ("events", {}, {"order": ("seq",), "after": (5, "e")}),
    ("nodes", {"profile_id": "p", "kind": "k"}, {"order": ("id",)}),
    ("nodes", {"profile_id": "p"}, {"order": ("id",), "text": "foo"}),
    ("edges", {"profile_id": "p", "source_id": "n"}, {}),
    ("edges", {"profile_id": "p", "target_id": "n"}, {"order": ("id",)}),
    ("edges", {"profile_id": "p", "kind": "k"}, {"order": ("id",)}),
    ("paths", {"profile_id": "p"}, {"order": ("id",)}),
    ("activations", {"profile_id": "p", "path_id": "x"}, {}),
    ("audit", {"action": "a", "seq": Cmp(">", 3)}, {"order": ("seq",)}),
    ("audit", {"target": "t"}, {"order": ("seq",)}),
    ("audit", {"actor": "a"}, {"order": ("seq",)}),
    ("audit", {"outcome": "denied"}, {"order": ("seq",)}),
    ("externals", {"system": "s"}, {}),
]


async def test_every_store_query_is_served_by_an_index(tmp_path: pathlib.Path) -> None:
    """The query shapes the record stores issue never scan a whole table."""
    path = tmp_path / "plans.db"
    engine = await SQLiteEngine.open(path)
    await engine.close()
    conn = sqlite3.connect(path)
    try:
        for name, where, kwargs in _QUERIES:
            sql, params = select_sql(LAYOUTS[name], where, **kwargs)
            plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            scans = [p for p in plan if p.startswith(f"SCAN {name}") and "INDEX" not in p]
            assert not scans, (name, where, kwargs, plan)
            if where and not kwargs.get("text") and not kwargs.get("tags"):
                assert any(p.startswith(f"SEARCH {name}") for p in plan), (name, where, plan)
    finally:
        conn.close()


# --------------------------------------------------------------------------- blobs


async def test_small_blobs_inline_large_blobs_as_files(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "blobs.db"
    engine = await SQLiteEngine.open(path, blob_threshold=100)
    small, large = b"s" * 100, os.urandom(5000)
    try:
        await engine.apply(WriteBatch([BlobPut(sha256_digest(d), d) for d in (small, large)]))

        async def chunks() -> Any:
            for i in range(0, 3 << 20, 100_000):
                yield bytes([i % 251]) * 100_000

        streamed = await engine.blob_put_stream(chunks())
        assert await engine.blob_size(streamed.digest) == streamed.size
    finally:
        await engine.close()
    hexes = {d: sha256_digest(d)[7:] for d in (small, large)}
    files = path.with_name("blobs.db.blobs")
    assert (files / hexes[large][:2] / hexes[large][2:4] / hexes[large]).read_bytes() == large
    assert not (files / hexes[small][:2] / hexes[small][2:4] / hexes[small]).exists()
    assert list((files / "tmp").iterdir()) == []
    with sqlite3.connect(path) as conn:
        rows = dict(conn.execute("SELECT digest, data FROM blobs").fetchall())
    conn.close()
    assert rows[sha256_digest(small)] == small
    assert rows[sha256_digest(large)] is None
    assert rows[streamed.digest] is None
    reopened = await SQLiteEngine.open(path, blob_threshold=100)
    try:
        assert await reopened.blob_get(sha256_digest(large)) == large
        got = b"".join([c async for c in reopened.blob_stream(streamed.digest, 1 << 20)])
        assert sha256_digest(got) == streamed.digest
        await reopened.blob_delete(sha256_digest(large))
        assert not (files / hexes[large][:2] / hexes[large][2:4] / hexes[large]).exists()
        assert await reopened.blob_get(sha256_digest(large)) is None
    finally:
        await reopened.close()


async def test_new_store_files_are_owner_only(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "private.db"
    engine = await SQLiteEngine.open(path, blob_threshold=10)
    try:
        await engine.apply(WriteBatch([BlobPut(sha256_digest(b"x" * 50), b"x" * 50)]))
        modes = _modes(tmp_path)
        assert set(modes) >= {"private.db", "private.db-wal", "private.db.blobs"}
        assert all(mode & 0o077 == 0 for mode in modes.values()), modes
    finally:
        await engine.close()


async def test_snapshots_store_unchanged_parts_once(tmp_path: pathlib.Path) -> None:
    """100 snapshots of a 1 MiB constant part plus a 32 KB changing part take at
    most 1.2 x (1 MiB + 100 x 32 KB) on disk, database, WAL and blob files."""
    rng = random.Random(7)
    small = 32_000
    const = "".join(rng.choices(string.ascii_letters, k=1 << 20))
    async with keepstone.open(_url(tmp_path / "dedup.db")) as store:
        run = await store.runs.create("dedup")
        await store.runs.transition(run.id, "running")
        for step in range(100):
            state = {"const": const, "step": "".join(rng.choices(string.ascii_letters, k=small))}
            await store.runs.save_snapshot(run.id, state, step=f"s{step}")
        latest = await store.runs.latest_snapshot(run.id)
        assert latest is not None and latest.number == 100 and latest.state["const"] == const
    total = _disk_bytes(tmp_path)
    assert not (tmp_path / "dedup.db-wal").exists()  # closing checkpointed the WAL
    assert total <= 1.2 * ((1 << 20) + 100 * small), total


# --------------------------------------------------------------------------- group commit, locks


async def test_concurrent_batches_share_transactions(tmp_path: pathlib.Path) -> None:
    engine = await SQLiteEngine.open(tmp_path / "group.db")
    try:
        before = engine.transactions
        batches = [
            WriteBatch([Append(EVENTS, {"id": f"e{i}", "payload": {"kind": "k"}})], [_draft()])
            for i in range(64)
        ]
        results = await asyncio.gather(*(engine.apply(b) for b in batches))
        assert sorted(r.seqs[0] or 0 for r in results) == list(range(1, 65))
        assert engine.transactions - before < 64
    finally:
        await engine.close()


async def test_reads_do_not_wait_for_a_locked_writer(tmp_path: pathlib.Path) -> None:
    """Another process holds the write lock: reads still answer at once, and the
    write waits (no "database is locked") and lands once the lock is released."""
    path = tmp_path / "locked.db"
    engine = await SQLiteEngine.open(path)
    try:
        await engine.apply(WriteBatch([Put(RUNS, {"id": "r0"})]))
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(engine.apply(WriteBatch([Put(RUNS, {"id": "r1"})])))
        await asyncio.sleep(0.3)
        assert not write.done()
        started = time.monotonic()
        assert await engine.get(RUNS, "r0") is not None
        assert await engine.count(RUNS) == 1
        assert time.monotonic() - started < 0.2
        blocker.execute("COMMIT")
        blocker.close()
        await asyncio.wait_for(write, 30)
        assert await engine.get(RUNS, "r1") is not None
    finally:
        await engine.close()


async def test_one_group_refuses_only_the_refused_batch(tmp_path: pathlib.Path) -> None:
    """Jobs queued while another process holds the lock commit as one group;
    a refused job in the middle fails alone, and a blob deleted then stored
    again within the group keeps its file."""
    path = tmp_path / "group.db"
    engine = await SQLiteEngine.open(path, blob_threshold=10)
    big = b"B" * 100
    digest = sha256_digest(big)
    try:
        await engine.apply(WriteBatch([BlobPut(digest, big)]))
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        jobs = [
            engine.apply(WriteBatch([Put(RUNS, {"id": "r1"})], [_draft()])),
            engine.blob_delete(digest),
            engine.apply(WriteBatch([Put(RUNS, {"id": "r1"}, expect="absent")], [_draft()])),
            # What apply() queues for a large BlobPut once its file is written:
            engine._submit(WriteBatch(), [BlobFile(digest, len(big))]),
            engine.apply(WriteBatch([Put(RUNS, {"id": "r2"})], [_draft()])),
        ]
        pending = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.sleep(0.3)
        before = engine.transactions
        blocker.execute("COMMIT")
        blocker.close()
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert isinstance(results[2], StorageError) and results[2].code == "conflict"
        assert [isinstance(r, BaseException) for r in results] == [False] * 2 + [True] + [False] * 2
        assert engine.transactions - before == 1
        assert await engine.blob_get(digest) == big
        first, last = results[0], results[4]
        assert isinstance(first, BatchResult) and isinstance(last, BatchResult)
        assert (first.audit_seqs, last.audit_seqs) == ([1], [2])  # the refused one took none
    finally:
        await engine.close()


async def test_close_finishes_queued_writes_then_refuses(tmp_path: pathlib.Path) -> None:
    engine = await SQLiteEngine.open(tmp_path / "close.db")
    pending = [
        asyncio.ensure_future(engine.apply(WriteBatch([Put(RUNS, {"id": f"r{i}"})])))
        for i in range(20)
    ]
    await asyncio.sleep(0)
    await engine.close()
    await engine.close()  # idempotent
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(not isinstance(r, BaseException) for r in results), results
    with pytest.raises(StorageError) as info:
        await engine.get(RUNS, "r1")
    assert info.value.code == "unavailable"
    reopened = await SQLiteEngine.open(tmp_path / "close.db")
    try:
        assert await reopened.count(RUNS) == 20
    finally:
        await reopened.close()


async def test_unknown_table_and_odd_field_names_are_invalid(tmp_path: pathlib.Path) -> None:
    from keepstone.engine.spi import Table

    engine = await SQLiteEngine.open(tmp_path / "t.db")
    try:
        with pytest.raises(StorageError) as info:
            await engine.find(Table("nope"))
        assert info.value.code == "invalid"
        assert layout_of(AUDIT).key_column == "seq"
        with pytest.raises(StorageError) as info:
            await engine.find(RUNS, {"x') OR 1=1 --": 1})
        assert info.value.code == "invalid"
    finally:
        await engine.close()


def _modes(folder: pathlib.Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode for p in folder.rglob("*")}


def _disk_bytes(folder: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _draft() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "at": "2026-01-01T00:00:00.000000Z",
        "actor": "t",
        "action": "test",
        "target": "t",
        "outcome": "applied",
        "approval": None,
        "details": None,
    }
