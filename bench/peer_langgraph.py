"""langgraph's SQLite checkpointers, used the way a compiled graph uses them:
``put``/``aput`` a checkpoint whose ``channel_values`` is the state (one
channel per top-level key), chained to its parent; ``get_tuple``/``aget_tuple``
with only a thread id returns the latest.

Importing this module raises ImportError when langgraph-checkpoint-sqlite
(or aiosqlite, for the async saver) is not installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from bench import peer_raw


@contextmanager
def sync_saver(path: Path) -> Iterator[SqliteSaver]:
    with SqliteSaver.from_conn_string(str(path)) as saver:
        saver.setup()
        yield saver


@asynccontextmanager
async def async_saver(path: Path) -> AsyncIterator[AsyncSqliteSaver]:
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        yield saver


def durability(saver: SqliteSaver) -> str:
    """The journal mode and ``synchronous`` level of the saver's connection."""
    return peer_raw.durability(saver.conn)


class Thread:
    """Successive checkpoints of one thread, as the graph runtime builds them."""

    def __init__(self, saver: BaseCheckpointSaver[str], thread_id: str) -> None:
        self.saver = saver
        self.config: dict[str, Any] = {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": ""}
        }
        self.previous: dict[str, Any] = {}
        self.versions: dict[str, Any] = {}
        self.step = -1

    def next(self, state: dict[str, Any]) -> tuple[Checkpoint, dict[str, Any], dict[str, Any]]:
        """The checkpoint, metadata and new channel versions for ``state``."""
        self.step += 1
        new_versions = {}
        for key, value in state.items():
            if key not in self.previous or self.previous[key] is not value:
                version = self.saver.get_next_version(self.versions.get(key), None)
                self.versions[key] = new_versions[key] = version
        self.previous = dict(state)
        checkpoint = empty_checkpoint()
        checkpoint["id"] = str(uuid6(clock_seq=self.step))
        checkpoint["channel_values"] = dict(state)
        checkpoint["channel_versions"] = dict(self.versions)
        checkpoint["updated_channels"] = sorted(new_versions)
        metadata = {"source": "loop", "step": self.step, "parents": {}}
        return checkpoint, metadata, new_versions

    def put(self, state: dict[str, Any]) -> None:
        checkpoint, metadata, new_versions = self.next(state)
        self.config = self.saver.put(self.config, checkpoint, metadata, new_versions)  # type: ignore[arg-type]

    async def aput(self, state: dict[str, Any]) -> None:
        checkpoint, metadata, new_versions = self.next(state)
        self.config = await self.saver.aput(self.config, checkpoint, metadata, new_versions)  # type: ignore[arg-type]

    def latest_config(self) -> dict[str, Any]:
        thread_id = self.config["configurable"]["thread_id"]
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}

    def get_latest(self) -> Any:
        return self.saver.get_tuple(self.latest_config())  # type: ignore[arg-type]

    async def aget_latest(self) -> Any:
        return await self.saver.aget_tuple(self.latest_config())  # type: ignore[arg-type]
