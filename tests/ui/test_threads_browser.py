"""The inspector's LangGraph thread pages in the system Chromium: the thread
list, a thread's checkpoint history drawn with its fork, the state at a
checkpoint, the diff between two, hostile ids and values. Over a store where
real LangGraph graphs ran through ``KeepstoneSaver``, with a fork made by time
travel (see ``tests/ui/threads_store.py``). Every test fails on a console
error or a dialog (see ``watched_page``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keepstone.ui import create_app
from tests.ui.conftest import ServedUi, thread_path, watched_page
from tests.ui.test_browser import ROOT, no_injected_markup
from tests.ui.threads_store import HOSTILE_THREAD, HOSTILE_VALUE, LONG_DRAFT, ThreadStore


@pytest.fixture(scope="module")
def served_threads(thread_store: ThreadStore) -> Iterator[ServedUi]:
    app = create_app(thread_store.url, loopback_only=True, shown_as="sqlite:///agent.db")
    with ServedUi(app) as ui:
        yield ui


@pytest.fixture
def tab(browser: Any, served_threads: ServedUi) -> Iterator[Any]:
    with watched_page(browser, served_threads.base) as found:
        yield found


def test_the_list_and_the_tree_show_the_fork(tab: Any, thread_store: ThreadStore) -> None:
    tab.goto("/langgraph")
    listed = tab.eval_on_selector_all("tr[data-thread]", "rows => rows.map(r => r.dataset.thread)")
    assert listed == [HOSTILE_THREAD, "support-42"]  # newest first; the deleted one hidden
    row = tab.locator("tr[data-thread='support-42'] td")
    assert row.nth(2).inner_text() == str(thread_store.checkpoints) == "8"
    tab.click("#with-deleted")
    tab.wait_for_url(re.compile(r"deleted=1"))
    assert tab.locator("tr[data-thread='short-lived'] .badge").inner_text() == "deleted"

    tab.goto("/langgraph")
    tab.click("a.thread-link:text-is('support-42')")
    tab.wait_for_url("**/langgraph/threads/support-42")
    ids = tab.eval_on_selector_all("tr.cp", "rows => rows.map(r => r.dataset.checkpoint)")
    assert len(ids) == thread_store.checkpoints and ids == sorted(ids, reverse=True)
    assert ids[0] == thread_store.latest
    fork = tab.locator(f"tr.cp[data-checkpoint='{thread_store.fork_point}']")
    assert fork.get_attribute("data-children") == "2"
    assert "fork · 2 branches" in fork.inner_text()
    assert tab.locator(".badge.fork").count() == 1
    assert tab.locator(".badge.branch").count() == 1 and tab.locator(".badge.tip").count() == 1
    lanes = tab.eval_on_selector_all("tr.cp", "rows => rows.map(r => r.dataset.lane)")
    assert sorted(set(lanes)) == ["0", "1"]
    # the drawing: the branch leaves the fork's dot for the other lane
    diagonals = fork.evaluate(
        "row => [...row.querySelectorAll('svg line')]"
        ".filter(l => l.getAttribute('x1') !== l.getAttribute('x2')).length"
    )
    assert diagonals == 1
    assert tab.locator("tr.cp svg circle").count() == thread_store.checkpoints


def test_clicking_a_checkpoint_shows_its_state(tab: Any, thread_store: ThreadStore) -> None:
    tab.goto(thread_path("support-42"))
    assert tab.get_attribute("#state", "data-checkpoint") == thread_store.latest
    assert '"Dear Ada, short."' in tab.locator("tr[data-channel=draft] pre").inner_text()
    tab.click(f"tr.cp[data-checkpoint='{thread_store.fork_point}'] a.cp-link")
    tab.wait_for_url(re.compile(r"checkpoint=" + thread_store.fork_point))
    assert tab.get_attribute("#state", "data-checkpoint") == thread_store.fork_point
    assert tab.locator("tr.current").get_attribute("data-checkpoint") == thread_store.fork_point
    channels = tab.eval_on_selector_all(
        "tr[data-channel]", "rows => rows.map(r => r.dataset.channel)"
    )
    assert {"draft", "messages", "count"} <= set(channels)
    assert tab.locator("tr[data-channel=count] pre").inner_text() == "1"
    writes = tab.locator("table.writes tbody tr")
    assert writes.count() >= 1  # what the review task wrote after this checkpoint
    assert "too long" in tab.locator("table.writes").inner_text()
    # the long draft is cut, and shown whole on its own page
    draft = tab.locator("tr[data-channel=draft]")
    assert len(draft.locator("pre").inner_text()) < len(LONG_DRAFT)
    draft.locator("a.whole").click()
    tab.wait_for_url(re.compile(r"/langgraph/value/support-42\?.*channel=draft"))
    assert tab.locator("#whole-value").inner_text() == f'"{LONG_DRAFT}"'
    tab.go_back()
    tab.click("#parent-link")
    tab.wait_for_url(re.compile(r"checkpoint="))
    assert tab.locator("tr.current").count() == 1
    assert tab.get_attribute("#state", "data-checkpoint") != thread_store.fork_point


def test_the_diff_between_two_checkpoints(tab: Any, thread_store: ThreadStore) -> None:
    tab.goto(thread_path("support-42"))
    tab.check(f"tr.cp[data-checkpoint='{thread_store.first_tip}'] input[name=a]")
    tab.check(f"tr.cp[data-checkpoint='{thread_store.latest}'] input[name=b]")
    tab.click("#compare")
    tab.wait_for_url(re.compile(r"/langgraph/diff/support-42\?"))
    changed = tab.locator("#summary .tag.changed").all_inner_texts()
    assert changed == ["draft", "messages", "notes"]
    assert "count" in tab.locator("#summary").inner_text()  # unchanged: 3 on both branches
    draft = tab.locator("section.channel-diff[data-channel=draft]")
    assert draft.locator("tr.d-add pre").all_inner_texts() == ['"Dear Ada, short."']
    assert draft.locator("tr.d-del pre").inner_text().startswith('"Dear Ada, the numbers')
    review = tab.locator("section.channel-diff[data-channel=messages]")
    added = [line.strip() for line in review.locator("tr.d-add pre").all_inner_texts()]
    assert added == ['"content": "short enough",']


def test_hostile_thread_ids_and_values_are_text(tab: Any, thread_store: ThreadStore) -> None:
    tab.goto("/langgraph")
    link = tab.locator("a.thread-link").first
    assert link.inner_text() == HOSTILE_THREAD
    link.click()
    tab.wait_for_selector("#thread-id")
    assert tab.locator("#thread-id").inner_text() == HOSTILE_THREAD
    assert tab.locator("tr[data-channel=notes] pre").inner_text() == f'"{HOSTILE_VALUE} (seen)"'
    no_injected_markup(tab)
    tabs = tab.locator("#namespaces a")
    assert tabs.count() == 2  # the root graph and the subgraph's namespace
    tabs.nth(1).click()
    tab.wait_for_url(re.compile(r"ns="))
    assert tab.locator("tr.cp").count() >= 2
    assert tab.get_attribute("#state", "data-checkpoint")
    tab.click("#compare")
    tab.wait_for_url(re.compile(r"/langgraph/diff/"))
    assert tab.locator("h1").count() == 1
    no_injected_markup(tab)


def test_screenshots_of_the_thread_pages(
    tab: Any, thread_store: ThreadStore, tmp_path: Path
) -> None:
    """For docs/ui.md: written there with KEEPSTONE_UI_SCREENSHOTS=1."""
    target = ROOT / "docs" / "ui" if os.environ.get("KEEPSTONE_UI_SCREENSHOTS") else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    tab.goto(thread_path("support-42", checkpoint=thread_store.fork_point))
    tab.screenshot(path=str(target / "thread.png"), full_page=True)
    tab.goto(f"/langgraph/diff/support-42?a={thread_store.first_tip}&b={thread_store.latest}")
    tab.screenshot(path=str(target / "thread-diff.png"))
    for name in ("thread", "thread-diff"):
        assert (target / f"{name}.png").stat().st_size > 10_000
