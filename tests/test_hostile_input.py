"""Hostile and broken input on every backend: a StorageError with the documented
code, and the store unchanged — checked by exporting before and after and
comparing the bytes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import keepstone
from keepstone.schemas import (
    ArtifactQuery,
    CustomEvent,
    LogLine,
    MemoryEvent,
    NodePut,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Call = Callable[[keepstone.Store, dict[str, str]], Awaitable[Any]]


async def seed(store: keepstone.Store) -> dict[str, str]:
    run = await store.runs.create("etl")
    coll = await store.artifacts.create_collection("docs")
    art = await store.artifacts.create(coll.id, "a", "text")
    prof = await store.memory.create_profile("agent")
    node = await store.memory.put_node(prof.id, "fact", content="x")
    return {"run": run.id, "coll": coll.id, "art": art.id, "prof": prof.id, "node": node.id}


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def event(profile: str, payload: Any, id: str = "evt_h") -> MemoryEvent:
    return MemoryEvent(id=id, profile_id=profile, at=T0, payload=payload)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels):
        value = {"d": value}
    return value


CASES: dict[str, tuple[str, Call]] = {
    # path traversal and hostile ids
    "run id with ../": ("invalid", lambda s, k: s.runs.create("x", id="../../etc")),
    "absolute id": ("invalid", lambda s, k: s.runs.get("/etc/passwd")),
    "id with NUL": ("invalid", lambda s, k: s.artifacts.get("art\x00x")),
    "very long id": ("invalid", lambda s, k: s.memory.create_profile("p", id="p" * 5000)),
    "id with slash": ("invalid", lambda s, k: s.context.get_package("a/b")),
    "blob digest traversal": ("invalid", lambda s, k: s.blobs.get("sha256:../../x")),
    "empty name": ("invalid", lambda s, k: s.runs.create("")),
    "very long name": ("invalid", lambda s, k: s.artifacts.create(k["coll"], "n" * 600, "x")),
    # encodings and numbers
    "lone surrogate text": ("invalid", lambda s, k: s.artifacts.create(k["coll"], "b", "\ud800")),
    "lone surrogate metadata": (
        "invalid",
        lambda s, k: s.runs.create("x", params={"k": "\udfff"}),
    ),
    "NaN in params": ("invalid", lambda s, k: s.runs.create("x", params={"v": float("nan")})),
    "Infinity in metadata": (
        "invalid",
        lambda s, k: s.artifacts.create(k["coll"], "c", "x", metadata={"v": float("inf")}),
    ),
    "JSON too deep": ("invalid", lambda s, k: s.runs.save_snapshot(k["run"], deep(100))),
    "non-dict state": ("invalid", lambda s, k: s.runs.save_snapshot(k["run"], [1, 2])),  # type: ignore[arg-type]
    "bytes that are not bytes": ("invalid", lambda s, k: s.blobs.put("text")),  # type: ignore[arg-type]
    # duplicates, conflicts and dangling references
    "duplicate event id in one batch": (
        "conflict",
        lambda s, k: s.events.append(
            [
                event(k["prof"], CustomEvent(name="a"), "evt_dup"),
                event(k["prof"], CustomEvent(name="b"), "evt_dup"),
            ]
        ),
    ),
    "event for a missing profile": (
        "integrity",
        lambda s, k: s.events.append([event("prf_missing", CustomEvent(name="a"))]),
    ),
    "edge to a missing node": (
        "integrity",
        lambda s, k: s.memory.put_edge(k["prof"], k["node"], "node_missing", "rel"),
    ),
    "relationship to a missing artifact": (
        "integrity",
        lambda s, k: s.artifacts.relate(k["art"], "art_missing", "cites"),
    ),
    "log line for a missing run": ("integrity", lambda s, k: s.logs.write("run_missing", "x")),
    "log line claiming a seq": (
        "invalid",
        lambda s, k: s.logs.append(k["run"], [LogLine(run_id=k["run"], at=T0, event="x", seq=7)]),
    ),
    "event claiming a seq": (
        "invalid",
        lambda s, k: s.events.append(
            [
                event(k["prof"], NodePut(node_id="n1", node_kind="fact")).model_copy(
                    update={"seq": 3}
                )
            ]
        ),
    ),
    "manifest naming a missing artifact": (
        "integrity",
        lambda s, k: s.runs.put_manifest(
            k["run"], outputs=[keepstone.schemas.ArtifactRef(artifact_id="art_missing")]
        ),
    ),
    "illegal transition": ("conflict", lambda s, k: s.runs.transition(k["run"], "succeeded")),
    "name taken": ("conflict", lambda s, k: s.artifacts.create(k["coll"], "a", "again")),
    "stale revision": (
        "conflict",
        lambda s, k: s.artifacts.update(k["art"], "new", expected_revision=9),
    ),
    "unknown status": ("invalid", lambda s, k: s.runs.transition(k["run"], "exploded")),  # type: ignore[arg-type]
    "bad cursor": ("invalid", lambda s, k: s.runs.list(cursor="'; DROP TABLE runs; --")),
    "empty text query": ("invalid", lambda s, k: s.artifacts.query(ArtifactQuery(text="  "))),
    "zero limit": ("invalid", lambda s, k: s.events.list(limit=0)),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_hostile_input_is_refused_and_changes_nothing(
    store: keepstone.Store, tmp_path: Path, case: str
) -> None:
    keys = await seed(store)
    code, call = CASES[case]
    await store.snapshots.export_to(tmp_path / "before", created_at=T0)
    with pytest.raises(keepstone.StorageError) as info:
        await call(store, keys)
    assert info.value.code == code, info.value
    assert info.value.message
    await store.snapshots.export_to(tmp_path / "after", created_at=T0)
    assert tree(tmp_path / "before") == tree(tmp_path / "after")


async def test_sql_looking_strings_are_just_data(store: keepstone.Store) -> None:
    evil = "'; DROP TABLE artifacts; --"
    coll = await store.artifacts.create_collection(evil)
    art = await store.artifacts.create(
        coll.id, evil, f"text {evil}", metadata={evil: evil, "k": "v' OR '1'='1"}
    )
    assert (await store.artifacts.get_by_name(coll.id, evil)).id == art.id
    hits = await store.artifacts.query(ArtifactQuery(metadata={evil: evil}))
    assert [a.id for a in hits.items] == [art.id]
    none = await store.artifacts.query(ArtifactQuery(metadata={"k": "v"}))
    assert none.items == []
    text = await store.artifacts.query(ArtifactQuery(text='DROP "artifacts" *'))
    assert [a.id for a in text.items] == [art.id]
    run = await store.runs.create(evil, labels={evil: evil})
    assert (await store.runs.get(run.id)).labels == {evil: evil}


async def test_names_with_path_traversal_stay_inside_the_store(
    store: keepstone.Store, tmp_path: Path
) -> None:
    coll = await store.artifacts.create_collection("../../outside")
    await store.artifacts.create(coll.id, "../../../escaped.txt", "x")
    await store.runs.create("../../run-escape")
    outside = tmp_path.parent
    assert not any(p.name in ("escaped.txt", "outside", "run-escape") for p in outside.iterdir())


async def test_limits_are_configurable(open_store: Callable[..., Any]) -> None:
    limits = keepstone.Limits(max_blob_bytes=1000, max_record_bytes=2000, max_batch=3)
    async with open_store(limits=limits) as store:
        with pytest.raises(keepstone.StorageError) as info:
            await store.blobs.put(b"x" * 1001)
        assert info.value.code == "invalid" and info.value.details["limit"] == 1000
        with pytest.raises(keepstone.StorageError) as info:
            await store.runs.create("big", params={"v": "x" * 3000})
        assert info.value.code == "invalid" and "limit" in info.value.message
        run = await store.runs.create("ok")
        lines = [LogLine(run_id=run.id, at=T0, event="e") for _ in range(4)]
        with pytest.raises(keepstone.StorageError) as info:
            await store.logs.append(run.id, lines)
        assert info.value.code == "invalid"
        assert (await store.blobs.put(b"x" * 1000)).size == 1000
