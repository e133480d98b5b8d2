"""The public API is pinned: changing it must be deliberate."""

from __future__ import annotations

import asyncio

import pytest

import keepstone

PUBLIC = [
    "ERROR_CODES",
    "ApprovalMarker",
    "FixedClock",
    "Limits",
    "RetryPolicy",
    "SequentialIds",
    "StorageError",
    "Store",
    "SyncStore",
    "SystemClock",
    "UlidIds",
    "__version__",
    "acting_as",
    "connect",
    "open",
]


def test_all_is_pinned() -> None:
    assert sorted(keepstone.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(keepstone, name), name


def test_ports_are_all_exported() -> None:
    import keepstone.ports as ports

    assert sorted(ports.__all__) == [
        "ArtifactStore",
        "AuditLog",
        "BlobStore",
        "ContextStore",
        "EventLog",
        "LogStore",
        "MemoryStore",
        "RunStore",
        "SnapshotStore",
    ]


def test_engine_spi_is_exported() -> None:
    import keepstone.engine as engine

    assert "RecordEngine" in engine.__all__
    assert "EngineFactory" in engine.__all__
    for name in engine.__all__:
        assert hasattr(engine, name), name


async def test_open_works_as_await_and_as_context_manager() -> None:
    store = await keepstone.open("memory://")
    assert isinstance(store, keepstone.Store)
    await store.close()
    await store.close()  # idempotent
    async with keepstone.open("memory://") as store2:
        assert (await store2.runs.create("x")).status == "pending"


async def test_unknown_scheme_is_config_and_names_the_known_ones() -> None:
    with pytest.raises(keepstone.StorageError) as info:
        await keepstone.open("nosuch://x")
    assert info.value.code == "config"
    assert "memory" in info.value.message
    assert "sqlite" in info.value.details["known"]


async def test_memory_refuses_options() -> None:
    with pytest.raises(keepstone.StorageError) as info:
        await keepstone.open("memory://", colour="blue")
    assert info.value.code == "config"


async def test_closed_store_is_unavailable() -> None:
    store = await keepstone.open("memory://")
    await store.close()
    with pytest.raises(keepstone.StorageError) as info:
        await store.runs.create("x")
    assert info.value.code == "unavailable"


async def test_acting_as_names_the_actor_in_audit() -> None:
    async with keepstone.open("memory://", actor="svc") as store:
        await store.runs.create("a")
        with keepstone.acting_as("alice"):
            await store.runs.create("b")
        actors = [r.actor for r in (await store.audit.list()).items]
        assert actors == ["svc", "alice"]


def test_redact_hides_secrets() -> None:
    from keepstone.urls import redact

    url = redact("postgresql://u:hunter2@h/db?blobs=s3://b&secret_key=abc&region=x")
    assert "hunter2" not in url and "abc" not in url
    assert "region=x" in url


def test_no_event_loop_needed_at_import() -> None:
    # Importing keepstone opens nothing; a fresh loop can still run it.
    assert asyncio.run(_roundtrip()) == "x"


async def _roundtrip() -> str:
    async with keepstone.open("memory://") as store:
        return (await store.runs.create("x")).name
