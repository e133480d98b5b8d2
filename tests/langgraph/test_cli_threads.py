"""``keepstone threads``: list, show (a tree with forks), state, diff, prune."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from keepstone.cli import app
from keepstone.langgraph import KeepstoneSaver
from tests.langgraph.conftest import pipeline, start


def keepstone(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--store", url, *args])


async def forked_thread(url: str) -> dict[str, str]:
    """A thread a -> b -> c, then an edit after a and a second run from there."""
    async with KeepstoneSaver.from_url(url) as saver:
        graph = pipeline("a", "b", "c").compile(checkpointer=saver)
        cfg: Any = {"configurable": {"thread_id": "tt"}}
        await graph.ainvoke(start(), cfg)
        history = [s async for s in graph.aget_state_history(cfg)]
        first_end = history[0].config["configurable"]["checkpoint_id"]
        after_a = next(s for s in history if s.next == ("b",))
        fork = await graph.aupdate_state(after_a.config, {"count": 100})
        await graph.ainvoke(None, fork)
        latest = (await graph.aget_state(cfg)).config["configurable"]["checkpoint_id"]
        await graph.ainvoke(start(), {"configurable": {"thread_id": "other"}})
        return {
            "fork_point": after_a.config["configurable"]["checkpoint_id"],
            "first_end": first_end,
            "latest": latest,
        }


def test_the_threads_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = asyncio.run(forked_thread(url))

    listed = keepstone(url, "threads", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {t["thread_id"]: t for t in json.loads(listed.output)}
    assert sorted(rows) == ["other", "tt"]
    assert rows["tt"]["checkpoints"] == 8 and rows["tt"]["latest"] == ids["latest"]
    assert "tt" in keepstone(url, "threads", "list").output

    shown = keepstone(url, "threads", "show", "tt", "--json")
    assert shown.exit_code == 0, shown.output
    (root,) = json.loads(shown.output)["roots"]
    node = root
    while len(node["children"]) == 1:
        node = node["children"][0]
    assert node["checkpoint_id"] == ids["fork_point"] and len(node["children"]) == 2
    text = keepstone(url, "threads", "show", "tt").output
    assert "fork: 2 branches" in text and "branch 2" in text and "update" in text

    state = json.loads(keepstone(url, "threads", "state", "tt", "--json").output)
    assert state["checkpoint_id"] == ids["latest"] and state["values"]["count"] == 102
    message = state["values"]["messages"][1]
    assert message["__class__"] == "langchain_core.messages.ai.AIMessage"
    assert message["content"] == "a says 0"
    early = keepstone(url, "threads", "state", "tt", "--checkpoint", ids["fork_point"])
    assert early.exit_code == 0 and "pending writes" in early.output

    changes = json.loads(
        keepstone(url, "threads", "diff", "tt", ids["first_end"], ids["latest"], "--json").output
    )
    assert changes["changed"]["count"] == {"from": 3, "to": 102}
    assert "steps" in changes["unchanged"]
    assert (
        "count" in keepstone(url, "threads", "diff", "tt", ids["first_end"], ids["latest"]).output
    )

    missing = keepstone(url, "threads", "state", "nobody")
    assert missing.exit_code == 1 and "error [not_found]" in missing.output

    dry = keepstone(url, "threads", "prune", "tt", "--dry-run")
    assert dry.exit_code == 0 and "remove 7" in dry.output and "dry run" in dry.output
    refused = keepstone(url, "threads", "prune", "tt")
    assert refused.exit_code == 1 and "review_required" in refused.output
    done = keepstone(url, "threads", "prune", "tt", "--approve", "ops: tidy", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["snapshots_removed"] > 0
    after = json.loads(keepstone(url, "threads", "show", "tt", "--json").output)
    assert [r["checkpoint_id"] for r in after["roots"]] == [ids["latest"]]
    gone = keepstone(url, "threads", "prune", "other", "--delete", "--approve", "ops: drop")
    assert gone.exit_code == 0, gone.output
    final = json.loads(keepstone(url, "threads", "list", "--deleted", "--json").output)
    assert {t["thread_id"]: t["status"] for t in final} == {"tt": "live", "other": "deleted"}
