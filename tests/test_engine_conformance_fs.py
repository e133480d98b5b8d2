"""The engine conformance suite against the filesystem engine (a workspace, reopened)."""

from __future__ import annotations

import pathlib

import pytest

from keepstone.backends.fs.engine import FsEngine
from keepstone.engine.spi import RecordEngine
from keepstone.testing import EngineConformance


class TestFsEngine(EngineConformance):
    async def make_engine(self, location: pathlib.Path) -> RecordEngine:
        return await FsEngine.open(location / "ws", version="0.0.0-test")

    @pytest.mark.xfail(
        strict=True,
        reason="known engine bug: the workspace's in-memory index keeps nested objects of "
        "the rows a batch carries (a tags field), so a caller changing them later changes "
        "what find(tags=...) matches; remove this override once fixed",
    )
    async def test_rows_are_stored_as_they_were_when_applied(self, engine: RecordEngine) -> None:
        await super().test_rows_are_stored_as_they_were_when_applied(engine)
