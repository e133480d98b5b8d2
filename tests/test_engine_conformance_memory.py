"""The engine conformance suite against the memory engine, the reference."""

from __future__ import annotations

import pathlib

import pytest

from keepstone.backends.memory.engine import MemoryEngine
from keepstone.engine.spi import RecordEngine
from keepstone.testing import EngineConformance


class TestMemoryEngine(EngineConformance):
    async def make_engine(self, location: pathlib.Path) -> RecordEngine:
        return MemoryEngine()

    @pytest.mark.xfail(
        strict=True,
        reason="known engine bug: MemoryEngine keeps the dicts a batch's Put (itself) and "
        "Append (a shallow copy) carry, so a caller changing them later changes what find "
        "matches and what an idempotent append compares; remove this override once fixed",
    )
    async def test_rows_are_stored_as_they_were_when_applied(self, engine: RecordEngine) -> None:
        await super().test_rows_are_stored_as_they_were_when_applied(engine)
