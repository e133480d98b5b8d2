"""The inspector's LangGraph thread pages over HTTP, in-process (no browser):
security headers, escaping, read-only, errors, pagination; and the rules of
the checkpoint drawing on random histories. The store is the one
``tests/ui/threads_store.py`` builds with real LangGraph graphs.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest

import keepstone
from keepstone.langgraph.inspect import CheckpointNode
from keepstone.ui import create_app
from keepstone.ui.checkpoint_tree import MAX_LANES, ROW_HEIGHT, layout
from tests.ui.conftest import thread_path
from tests.ui.threads_store import HOSTILE_THREAD, ThreadStore


@pytest.fixture
async def client(thread_store: ThreadStore) -> AsyncIterator[httpx.AsyncClient]:
    async with keepstone.open(thread_store.url) as store:
        app = create_app(store=store, loopback_only=True)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c


def thread_pages(t: ThreadStore) -> list[str]:
    hostile = quote(HOSTILE_THREAD, safe="")
    return [
        "/langgraph",
        "/langgraph?deleted=1",
        thread_path("support-42"),
        thread_path("support-42", checkpoint=t.fork_point, n="3"),
        f"/langgraph/diff/support-42?a={t.first_tip}&b={t.latest}",
        f"/langgraph/value/support-42?checkpoint={t.fork_point}&channel=draft",
        f"/langgraph/value/support-42?checkpoint={t.fork_point}&write=0",
        f"/langgraph/value/support-42?checkpoint={t.fork_point}",
        f"/langgraph/threads/{hostile}",
    ]


async def test_every_thread_page_is_safe_and_read_only(
    client: httpx.AsyncClient, thread_store: ThreadStore
) -> None:
    async with keepstone.open(thread_store.url) as store:
        head = await store.audit.head()
    for path in thread_pages(thread_store):
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp
        html = response.text
        assert "<script>" not in html and " style=" not in html, path
        assert "<script>alert" not in html and "<img src=x" not in html, path
    hostile = (await client.get(thread_pages(thread_store)[-1])).text
    assert "&lt;script&gt;alert(13)&lt;/script&gt;" in hostile
    assert "&lt;img src=x onerror=alert(14)&gt;" in hostile
    async with keepstone.open(thread_store.url) as store:
        assert await store.audit.head() == head


async def test_bad_thread_requests_get_an_error_page(
    client: httpx.AsyncClient, thread_store: ThreadStore
) -> None:
    cases = {
        thread_path("nobody"): (404, "no LangGraph thread"),
        thread_path("short-lived"): (404, "no LangGraph thread"),  # deleted
        thread_path("support-42", checkpoint="nope"): (404, "no checkpoint"),
        thread_path("support-42", n="0"): (400, "between"),
        "/langgraph/diff/support-42?a=" + thread_store.latest: (400, "choose two checkpoints"),
        "/langgraph/value/support-42": (400, "name the checkpoint"),
        f"/langgraph/value/support-42?checkpoint={thread_store.latest}&channel=zz": (
            404,
            "no channel",
        ),
        f"/langgraph/value/support-42?checkpoint={thread_store.latest}&write=99": (404, "pending"),
        "/langgraph?before=garbage": (400, "cursor"),
    }
    for path, (status, words) in cases.items():
        response = await client.get(path)
        assert response.status_code == status, (path, response.text[:300])
        assert words in response.text, (path, response.text[:800])


async def test_the_tree_and_the_list_are_paginated(
    client: httpx.AsyncClient, thread_store: ThreadStore
) -> None:
    seen: list[str] = []
    path: str | None = thread_path("support-42", n="3")
    pages = 0
    while path is not None:
        html = (await client.get(path)).text
        seen += re.findall(r'<tr data-checkpoint="([^"]+)"', html)
        older = re.search(r'<a href="([^"]+)" rel="next">', html)
        path = older.group(1).replace("&amp;", "&") if older else None
        pages += 1
    assert pages == 3 and len(seen) == thread_store.checkpoints == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    # asking for a checkpoint opens the page that holds it
    oldest = seen[-1]
    html = (await client.get(thread_path("support-42", n="3", checkpoint=oldest))).text
    assert re.findall(r'<tr data-checkpoint="([^"]+)"', html) == seen[6:]
    assert 'rel="prev"' in html and 'class="cp current"' in html

    names = []
    path = "/langgraph?n=1&deleted=1"
    while path is not None:
        html = (await client.get(path)).text
        names += re.findall(r'<tr data-thread="([^"]+)"', html)
        older = re.search(r'<a href="([^"]+)" rel="next">', html)
        path = older.group(1).replace("&amp;", "&") if older else None
    assert names[1:] == ["short-lived", "support-42"] and len(names) == 3


# --------------------------------------------------------------------------- the drawing


def random_history(rng: random.Random, size: int) -> list[CheckpointNode]:
    """A history grown like a thread's: mostly on from the newest checkpoint,
    sometimes from an older one (time travel), rarely a new root."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    nodes: list[CheckpointNode] = []
    roots = []
    for i in range(size):
        roll = rng.random()
        parent = None
        if nodes and roll > 0.03:
            parent = nodes[-1] if roll > 0.25 else rng.choice(nodes)
        node = CheckpointNode(f"c{i:05d}", "", parent and parent.checkpoint_id, i, "loop", at, 0)
        if parent is None:
            roots.append(node)
        else:
            parent.children.append(node)
        nodes.append(node)
    return roots


@pytest.mark.parametrize("seed", range(30))
def test_lanes_never_cross_and_every_edge_is_drawn(seed: int) -> None:
    rng = random.Random(seed)
    tree = layout(random_history(rng, rng.randint(1, 120)))
    assert tree.lanes <= MAX_LANES
    rows = tree.rows
    whole = [list(r.lines) for r in tree.draw(0, len(rows))]
    mid = ROW_HEIGHT // 2
    for r, row in enumerate(rows):
        through = [x1 for x1, y1, x2, y2 in whole[r] if (y1, y2) == (0, ROW_HEIGHT)]
        assert len(through) == len(set(through)), "two lines in one lane"
        assert row.x not in through, "a line runs over a checkpoint"
        for child in row.node.children:
            c = tree.row_of[child.checkpoint_id]
            x = rows[c].x
            assert c < r
            assert (x, mid, x, ROW_HEIGHT) in whole[c]
            assert all((x, 0, x, ROW_HEIGHT) in whole[k] for k in range(c + 1, r))
            assert (x, 0, row.x, mid) in whole[r]
        if row.node.children:  # the first child carries the line on
            first = min(row.node.children, key=lambda n: n.checkpoint_id)
            assert rows[tree.row_of[first.checkpoint_id]].lane == row.lane
    start = rng.randint(0, len(rows))
    stop = start + rng.randint(1, 40)
    part = [list(r.lines) for r in tree.draw(start, stop)]
    assert part == whole[start:stop]  # a page draws what it would in the whole
