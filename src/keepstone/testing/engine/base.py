"""Shared machinery of the engine conformance suite: the factory hook, the
``engine`` fixture, the capability names, rows and checks the tests share.

See :mod:`keepstone.testing.engine` for how to use the suite.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from keepstone.engine.spi import Put, RecordEngine, WriteBatch
from keepstone.engine.tables import ARTIFACTS, AUDIT
from keepstone.errors import StorageError
from keepstone.schemas.audit import GENESIS_HASH, audit_hash

CAPABILITIES: dict[str, str] = {
    "durable": "committed data survives close() and reopening the same location",
    "multi_process": "several engines may have one location open and commit to it in turn",
    "fts": "find(text=...) matches whole words, case-insensitively, like the reference",
    "blob_files": "large blobs are files beside the records (informational)",
}
"""Every capability name an engine may declare, with what it promises."""


def requires(engine: RecordEngine, capability: str) -> None:
    """Skip the calling test unless ``engine`` declares ``capability``."""
    if capability not in engine.capabilities:
        pytest.skip(
            f"the {engine.name} engine does not declare the {capability!r} capability "
            f"({CAPABILITIES[capability]})"
        )


class EngineConformanceBase:
    """The factory hook and fixtures every part of the engine suite shares."""

    location: pathlib.Path
    _opened: list[RecordEngine]

    async def make_engine(self, location: pathlib.Path) -> RecordEngine:
        """Open an engine of the kind under test.

        Args:
            location: an existing, per-test directory for the engine's files
                (or anything else the engine derives its place from). Opening
                the same location again must reopen the same data when the
                engine declares ``"durable"``, and share it with the engine
                still open when it declares ``"multi_process"``.
        """
        raise NotImplementedError("an engine's conformance test class implements make_engine()")

    @pytest.fixture
    async def engine(self, tmp_path: pathlib.Path) -> AsyncIterator[RecordEngine]:
        """A fresh engine at a per-test location; every engine the test opened
        is closed after it."""
        self.location = tmp_path
        self._opened = []
        made = await self.open_engine()
        try:
            yield made
        finally:
            while self._opened:
                await self._opened.pop().close()

    async def open_engine(self) -> RecordEngine:
        """Another engine on this test's location (closed after the test)."""
        made = await self.make_engine(self.location)
        self._opened.append(made)
        return made

    async def reopen(self, engine: RecordEngine) -> RecordEngine:
        """Close ``engine`` and open its location again."""
        requires(engine, "durable")
        await engine.close()
        return await self.open_engine()


# --------------------------------------------------------------------------- shared helpers


def audit_draft(action: str, target: str = "t") -> dict[str, Any]:
    """An audit draft (a record without ``seq``, ``prev_hash`` and ``hash``)."""
    return {
        "schema_version": 1,
        "at": "2026-01-01T00:00:00.000000Z",
        "actor": "tester",
        "action": action,
        "target": target,
        "outcome": "applied",
        "approval": None,
        "details": None,
    }


def event_row(i: int, kind: str = "custom", profile: str = "p1") -> dict[str, Any]:
    """An events row with id ``evt_<i>``."""
    return {"id": f"evt_{i:04d}", "profile_id": profile, "path_id": None, "payload": {"kind": kind}}


async def assert_audit_chain(engine: RecordEngine, count: int) -> list[dict[str, Any]]:
    """Assert the audit table holds seqs 1..``count``, each record hashing its
    predecessor; return the records."""
    records = rows_of(await engine.find(AUDIT, order=("seq",)))
    assert [r["seq"] for r in records] == list(range(1, count + 1))
    prev = GENESIS_HASH
    for record in records:
        assert record["prev_hash"] == prev
        assert audit_hash(record) == record["hash"]
        prev = record["hash"]
    return records


# --------------------------------------------------------------------------- rows and checks


def rows_of(raw: list[bytes]) -> list[dict[str, Any]]:
    """Decoded rows of a read."""
    return [orjson.loads(r) for r in raw]


def ids_of(raw: list[bytes], field: str = "id") -> list[Any]:
    """``field`` of each row of a read."""
    return [orjson.loads(r)[field] for r in raw]


async def refusal(engine: RecordEngine, batch: WriteBatch) -> StorageError:
    """Apply ``batch``, assert it is refused with a :class:`StorageError`, return that."""
    with pytest.raises(StorageError) as info:
        await engine.apply(batch)
    return info.value


def node_row(profile: str, node: str, content: str) -> dict[str, Any]:
    """A nodes row (full text in ``content``)."""
    return {"profile_id": profile, "id": node, "kind": "fact", "content": content}


def run_row(run_id: str, created: str) -> dict[str, Any]:
    """A runs row created on date ``created``."""
    return {"id": run_id, "name": "n", "status": "pending", "created_at": created}


def line_row(i: int) -> dict[str, Any]:
    """A log line of run ``r1``."""
    return {"run_id": "r1", "level": "info", "event": f"line {i}"}


def artifact_row(
    art_id: str, name: str, *, deleted: str | None = None, **more: Any
) -> dict[str, Any]:
    """An artifacts row of collection ``c1``."""
    row: dict[str, Any] = {"id": art_id, "collection_id": "c1", "name": name, "type": "document"}
    row.update({"deleted_at": deleted, "run_id": None, **more})
    return row


async def put_artifacts(engine: RecordEngine) -> None:
    """Four artifacts (one deleted, one in collection ``c2``)."""
    rows = [
        artifact_row("a1", "one", run_id="r1"),
        artifact_row("a2", "two", type="qa", run_id="r2"),
        artifact_row("a3", "three", deleted="2026-01-01", run_id="r1"),
        {**artifact_row("a4", "four", type="export"), "collection_id": "c2"},
    ]
    await engine.apply(WriteBatch([Put(ARTIFACTS, r) for r in rows]))
