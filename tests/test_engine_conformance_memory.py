"""The engine conformance suite against the memory engine, the reference."""

from __future__ import annotations

import pathlib

from keepstone.backends.memory.engine import MemoryEngine
from keepstone.engine.spi import RecordEngine
from keepstone.testing import EngineConformance


class TestMemoryEngine(EngineConformance):
    async def make_engine(self, location: pathlib.Path) -> RecordEngine:
        return MemoryEngine()
