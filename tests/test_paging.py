"""Keyset paging (keepstone.core.paging) against the memory and SQLite engines.

Small pages force many resumptions: walking a listing page by page must give
exactly the rows one unbounded ``find`` gives, in the same order, and a row
that cannot be read must stop a strict scan with ``corrupt``.
"""

from __future__ import annotations

import base64
import pathlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from keepstone.backends.memory.engine import MemoryEngine
from keepstone.backends.sql.sqlite import SQLiteEngine
from keepstone.core.paging import (
    Listing,
    default_listing,
    encode_cursor,
    fetch_page,
    listing_binding,
    scan,
    scan_blobs,
)
from keepstone.engine.spi import Append, BlobPut, Put, RecordEngine, WriteBatch
from keepstone.engine.tables import CHANGES, EVENTS, RUNS
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest


@pytest.fixture(params=["memory", "sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Any]:
    made: RecordEngine
    if request.param == "memory":
        made = MemoryEngine()
    else:
        made = await SQLiteEngine.open(tmp_path / "engine.db", blob_threshold=1024)
    try:
        yield made
    finally:
        await made.close()


def _event(i: int, profile: str) -> dict[str, Any]:
    return {"id": f"evt_{i:02d}", "profile_id": profile, "path_id": None, "payload": {}}


async def _events(engine: RecordEngine) -> None:
    # Ids run against commit order, so seq order and key order differ.
    batch = [Append(EVENTS, _event(i, "p1" if i % 3 else "p2")) for i in reversed(range(11))]
    await engine.apply(WriteBatch(list(batch)))


async def _runs(engine: RecordEngine) -> None:
    # Names repeat, so the key breaks ties.
    rows = [{"id": f"run_{i:02d}", "name": f"n{i % 4}"} for i in range(10)]
    await engine.apply(WriteBatch([Put(RUNS, r) for r in rows]))


@pytest.mark.parametrize("batch", [1, 2, 3, 11, 50])
async def test_scan_gives_every_row_once_in_commit_order(engine: RecordEngine, batch: int) -> None:
    await _events(engine)
    whole = await engine.find(EVENTS, order=("seq",))
    assert [orjson.loads(r)["id"] for r in whole][:2] == ["evt_10", "evt_09"]
    assert [r async for r in scan(engine, EVENTS, batch=batch)] == whole
    where = {"profile_id": "p1"}
    wanted = await engine.find(EVENTS, where, order=("seq",))
    assert len(wanted) == 7
    assert [r async for r in scan(engine, EVENTS, where, batch=batch)] == wanted


async def test_scan_in_a_chosen_order_breaks_ties_by_key(engine: RecordEngine) -> None:
    await _runs(engine)
    whole = await engine.find(RUNS, order=("name",))
    assert [r async for r in scan(engine, RUNS, order=("name",), batch=3)] == whole
    assert [r async for r in scan(engine, RUNS, batch=4)] == await engine.find(RUNS)


async def test_scan_blobs_lists_every_blob_in_digest_order(engine: RecordEngine) -> None:
    datas = [f"blob {i}".encode() for i in range(5)]
    await engine.apply(WriteBatch([BlobPut(sha256_digest(d), d) for d in datas]))
    digests = [info.digest async for info in scan_blobs(engine, batch=2)]
    assert digests == sorted(sha256_digest(d) for d in datas)


async def test_fetch_page_cursors_walk_the_whole_listing(engine: RecordEngine) -> None:
    await _runs(engine)
    seen: list[bytes] = []
    cursor: str | None = None
    pages = 0
    while True:
        rows, cursor = await fetch_page(engine, RUNS, order=("name",), cursor=cursor, limit=3)
        seen += rows
        pages += 1
        if cursor is None:
            break
    assert pages == 4
    assert seen == await engine.find(RUNS, order=("name",))
    rows, cursor = await fetch_page(engine, RUNS, order=("name",), limit=10)
    assert len(rows) == 10
    assert cursor is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


_NAME_ORDER = listing_binding(default_listing(RUNS, None, None, None), "runs", ("name",))


@pytest.mark.parametrize(
    ("cursor", "message"),
    [
        ("not a cursor!", "not one keepstone made"),
        (_b64(orjson.dumps(["n1", "run_01"])), "not one keepstone made"),  # the format before 1
        (_b64(orjson.dumps([2, _NAME_ORDER, ["n1", "run_01"]])), "another version of keepstone"),
        (encode_cursor("someone-else", ("n1", "run_01")), "belongs to another listing"),
        (encode_cursor(_NAME_ORDER, ("n1",)), "not one keepstone made"),
        (encode_cursor(_NAME_ORDER, ("n1", 7)), "not one keepstone made"),
        (encode_cursor(_NAME_ORDER, (2**63, "run_01")), "not one keepstone made"),
        (encode_cursor(_NAME_ORDER, ("n1", "run_01")) + "==", "not one keepstone made"),
        (
            _b64(orjson.dumps([1, _NAME_ORDER, ["n1", "run_01"]], option=orjson.OPT_INDENT_2)),
            "not one keepstone made",
        ),
    ],
)
async def test_fetch_page_refuses_foreign_cursors(
    engine: RecordEngine, cursor: str, message: str
) -> None:
    await _runs(engine)
    with pytest.raises(StorageError) as info:
        await fetch_page(engine, RUNS, order=("name",), cursor=cursor, limit=3)
    assert info.value.code == "invalid"
    assert message in info.value.message


async def test_a_cursor_is_bound_to_its_listing_and_filter(engine: RecordEngine) -> None:
    await _runs(engine)
    mine = Listing("runs.by_name", {"name": None})
    _, cursor = await fetch_page(engine, RUNS, order=("name",), limit=3, listing=mine)
    assert cursor is not None
    rows, _ = await fetch_page(engine, RUNS, order=("name",), cursor=cursor, listing=mine)
    assert len(rows) == 7
    for other in (Listing("runs.by_name", {"name": "n1"}), Listing("runs.other", {"name": None})):
        with pytest.raises(StorageError, match="belongs to another listing"):
            await fetch_page(engine, RUNS, order=("name",), cursor=cursor, listing=other)
    # The binding covers the order too.
    with pytest.raises(StorageError, match="belongs to another listing"):
        await fetch_page(engine, RUNS, order=("id",), cursor=cursor, listing=mine)


async def test_a_table_keyed_by_seq_takes_only_its_own_seq_as_key(engine: RecordEngine) -> None:
    await engine.apply(WriteBatch([Append(CHANGES, {"artifact_id": "a"}) for _ in range(4)]))
    changes = Listing("changes")
    binding = listing_binding(changes, "changes", ("seq",))
    rows, _ = await fetch_page(
        engine, CHANGES, order=("seq",), cursor=encode_cursor(binding, (2, "2")), listing=changes
    )
    assert [orjson.loads(r)["seq"] for r in rows] == [3, 4]
    for forged in ((2, "3"), (2, "02"), (2, "x"), (2, 2), (-1, "-1")):
        with pytest.raises(StorageError, match="not one keepstone made"):
            await fetch_page(
                engine,
                CHANGES,
                order=("seq",),
                cursor=encode_cursor(binding, forged),
                listing=changes,
            )


async def test_an_unreadable_row_stops_a_strict_scan(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "engine.db"
    engine = await SQLiteEngine.open(path, blob_threshold=1024)
    try:
        await engine.apply(WriteBatch([Put(RUNS, {"id": f"run_{i}"}) for i in range(5)]))
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE runs SET body = ? WHERE id = 'run_4'", (b"not json",))
        conn.close()
        with pytest.raises(StorageError) as info:
            [r async for r in scan(engine, RUNS, batch=5)]
        assert info.value.code == "corrupt"
        assert info.value.details == {"table": "runs"}
        # The doctor's scan goes on after the last readable row, once per row.
        rows = [r async for r in scan(engine, RUNS, batch=5, skip_unreadable=True)]
        assert len(rows) == 5
        assert rows[-1] == b"not json"
        # A short last page needs no resumption, so a strict scan reads it all.
        assert len([r async for r in scan(engine, RUNS, batch=6)]) == 5
    finally:
        await engine.close()
