"""The engine conformance suite against the SQLite engine (a file, reopened).

``blob_threshold=1024`` keeps the suite's small blobs in the database and its
larger ones in files beside it, so both places are checked.
"""

from __future__ import annotations

import pathlib

from keepstone.backends.sql.sqlite import SQLiteEngine
from keepstone.engine.spi import RecordEngine
from keepstone.testing import EngineConformance


class TestSQLiteEngine(EngineConformance):
    async def make_engine(self, location: pathlib.Path) -> RecordEngine:
        return await SQLiteEngine.open(location / "engine.db", blob_threshold=1024)
