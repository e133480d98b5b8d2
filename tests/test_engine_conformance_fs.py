"""The engine conformance suite against the filesystem engine (a workspace, reopened)."""

from __future__ import annotations

import pathlib

from keepstone.backends.fs.engine import FsEngine
from keepstone.engine.spi import RecordEngine
from keepstone.testing import EngineConformance


class TestFsEngine(EngineConformance):
    async def make_engine(self, location: pathlib.Path) -> RecordEngine:
        return await FsEngine.open(location / "ws", version="0.0.0-test")
