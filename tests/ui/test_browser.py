"""The inspector in a real browser (the system Chromium, through Playwright),
against the store ``make run``'s demo makes plus hostile content.

Every test fails on a console error (CSP violations included), an uncaught
page error, or a dialog (what an injected ``alert`` would open): see the
``page`` fixture.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import keepstone
from tests.ui.conftest import (
    HOSTILE_ACTOR,
    HOSTILE_HTML,
    HOSTILE_LINK_NODE,
    HOSTILE_NODE,
    HOSTILE_RUN,
    DemoStore,
    run_in_thread,
)

ROOT = Path(__file__).resolve().parents[2]


def graph_nodes(page: Any, selector: str = "#graph") -> int:
    page.wait_for_selector(f"{selector}[data-ready=yes]")
    return int(page.get_attribute(selector, "data-nodes"))


def no_injected_markup(page: Any) -> None:
    """Stored HTML never became elements, and no link runs script."""
    assert page.locator("#injected, #injected-link, img[src=x]").count() == 0
    assert page.locator("a[href^='javascript:' i]").count() == 0
    scripts = page.eval_on_selector_all("script", "els => els.map(e => e.getAttribute('src'))")
    assert all(src and src.startswith("/static/") for src in scripts), scripts


def test_overview_lists_the_demo(page: Any, demo_store: DemoStore) -> None:
    page.goto("/")
    assert page.title() == "Overview · keepstone ui"
    assert page.locator("main").get_by_text("nightly-digest").count() >= 1
    assert page.get_by_role("link", name="demo-agent").count() == 1
    assert page.locator("svg.spark rect").count() > 0


def test_runs_newest_first_with_filters(page: Any, demo_store: DemoStore) -> None:
    page.goto("/runs")
    ids = page.eval_on_selector_all("tr[data-run]", "rows => rows.map(r => r.dataset.run)")
    # created last, shown first: the live run, then the hostile one, then the demo's
    assert ids == [demo_store.live_run_id, demo_store.hostile_run_id, demo_store.run_id]
    assert page.locator("tr[data-run] td.name").nth(1).inner_text() == HOSTILE_RUN
    page.fill("input[name=name]", "nightly-digest")
    page.click("form.filters button")
    page.wait_for_url(re.compile(r"name=nightly-digest"))
    assert page.locator("tr[data-run]").count() == 1
    page.goto("/runs?status=failed")
    assert page.locator("tr[data-run]").count() == 1
    page.goto("/runs?label=kind%3Dlive")
    assert page.locator("tr[data-run]").count() == 1
    page.goto("/runs?n=1")  # paginated: one per page, three pages
    seen = [page.get_attribute("tr[data-run]", "data-run")]
    for _ in range(2):
        page.click("a[rel=next]")
        seen.append(page.get_attribute("tr[data-run]", "data-run"))
    assert seen == ids
    assert page.locator("a[rel=next]").count() == 0
    no_injected_markup(page)


def test_run_page_timeline_outputs_snapshots_logs(page: Any, demo_store: DemoStore) -> None:
    page.goto(f"/runs/{demo_store.run_id}")
    counts = demo_store.counts
    assert page.locator("svg.timeline rect").count() == counts["run_steps"]
    assert page.locator("table.steps tbody tr").count() == counts["run_steps"]
    assert page.locator("a.output-link").count() == counts["outputs"]
    assert page.locator("form.snapdiff tbody tr").count() == counts["snapshots"]
    assert page.locator(".logline").count() > 5
    assert "summarize ×2" in page.locator("svg.timeline").text_content()
    page.click("form.snapdiff button")
    page.wait_for_url(re.compile(r"/snapshots/diff\?"))
    assert page.locator("tr.d-add").count() > 0


def test_logs_level_filter_and_live_tail(page: Any, demo_store: DemoStore) -> None:
    run_id = demo_store.live_run_id
    page.goto(f"/runs/{run_id}/logs?level=error")
    assert page.locator(".logline").count() == 1
    assert page.locator(".logline .msg").inner_text() == "an error line"
    page.goto(f"/runs/{run_id}/logs")
    assert page.locator(".logline").count() == 2
    assert page.locator(".tail .live").count() == 1

    async def write() -> None:
        async with keepstone.open(demo_store.url) as store:
            await store.logs.write(run_id, "progress", level="warning", message="tailed line")

    run_in_thread(write)
    page.wait_for_selector(".logline:has-text('tailed line')", timeout=5000)
    assert page.locator(".logline").count() == 3


def test_artifact_search_highlights_and_diff(page: Any, demo_store: DemoStore) -> None:
    page.goto("/artifacts")
    page.fill("#search", "chien")
    page.press("#search", "Enter")
    page.wait_for_url(re.compile(r"q=chien"))
    marks = page.locator(".snippet mark").all_inner_texts()
    assert marks and {m.lower() for m in marks} == {"chien"}
    page.goto(f"/artifacts/{demo_store.glossary_id}")
    assert page.locator("table.revisions tbody tr").count() == 2
    assert "dog: chien" in page.locator("#content").inner_text()
    page.click("text=Compare a → b")
    page.wait_for_url(re.compile(r"/diff\?"))
    added = page.locator("tr.d-add pre").all_inner_texts()
    assert "dog: chien" in added


def test_lineage_graph_draws_what_the_api_returns(page: Any, demo_store: DemoStore) -> None:
    data = page.request.get(f"/api/lineage?kind=artifact&id={demo_store.glossary_id}").json()
    page.goto(f"/artifacts/{demo_store.glossary_id}/lineage")
    assert graph_nodes(page) == len(data["nodes"]) == 6
    assert page.get_attribute("#graph", "data-edges") == str(len(data["edges"]))
    assert page.locator("#graph-list li").count() == 6
    assert page.locator("#graph canvas").count() >= 1


def click_graph_node(page: Any, node_id: str) -> None:
    box = page.locator("#graph").bounding_box()
    pos = page.evaluate(
        "id => window.keepstoneGraphs[0].getElementById(id).renderedPosition()", node_id
    )
    page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])


def test_click_from_run_to_artifact_to_lineage_and_back(page: Any, demo_store: DemoStore) -> None:
    page.goto(f"/runs/{demo_store.run_id}")
    page.click("a.output-link:text-is('glossary')")
    page.wait_for_url(f"**/artifacts/{demo_store.glossary_id}")
    page.click("#lineage-link")
    page.wait_for_url(f"**/artifacts/{demo_store.glossary_id}/lineage")
    graph_nodes(page)
    click_graph_node(page, f"run:{demo_store.run_id}")
    page.wait_for_url(f"**/runs/{demo_store.run_id}")
    assert page.locator("h1 .name").inner_text() == "nightly-digest"
    page.go_back()
    page.wait_for_url(f"**/artifacts/{demo_store.glossary_id}/lineage")
    assert graph_nodes(page) == 6
    page.go_back()
    page.wait_for_url(f"**/artifacts/{demo_store.glossary_id}")
    assert page.locator("h1 .name").inner_text() == "glossary"


def test_memory_graph_and_the_as_of_slider(page: Any, demo_store: DemoStore) -> None:
    page.goto(f"/memory/{demo_store.profile_id}")
    assert graph_nodes(page) == demo_store.counts["nodes"] == 3
    replays: dict[int, int] = demo_store.counts["replay_nodes"]
    seq = next(s for s, n in sorted(replays.items()) if n == 1)
    page.evaluate(
        """seq => { const s = document.getElementById('asof'); s.value = seq;
                    s.dispatchEvent(new Event('change')); }""",
        seq,
    )
    page.wait_for_url(re.compile(rf"as_of={seq}"))
    assert graph_nodes(page) == 1
    page.reload()  # the address bar keeps the view
    assert graph_nodes(page) == 1
    page.goto(f"/memory/{demo_store.profile_id}?kind=idea")
    assert graph_nodes(page) == 2


def test_path_tree_and_the_graph_on_a_path(page: Any, demo_store: DemoStore) -> None:
    page.goto(f"/memory/{demo_store.profile_id}/paths")
    assert graph_nodes(page, "#paths") == demo_store.counts["paths"] == 3
    assert page.locator("#path-tree li[data-path]").count() == 3
    assert page.locator("#path-tree .badge").all_inner_texts() == ["active", "merged", "abandoned"]
    page.click("#path-tree a.name:text-is('main')")
    page.wait_for_url(f"**/paths/{demo_store.main_path_id}")
    assert graph_nodes(page) == demo_store.counts["main_nodes"] == 2
    assert page.locator("table.events tbody tr").count() > 0


def test_event_log_kind_filter(page: Any, demo_store: DemoStore) -> None:
    page.goto(f"/memory/{demo_store.profile_id}/events")
    everything = page.locator("table.events tbody tr").count()
    page.check("input[name=kind][value='node.put']")
    page.click("form.filters button")
    page.wait_for_url(re.compile(r"kind=node\.put"))
    kinds = page.locator("table.events tbody tr td:nth-child(2)").all_inner_texts()
    assert kinds == ["node.put"] * 3 and everything > 3


def test_audit_filters_verify_and_doctor(page: Any, demo_store: DemoStore) -> None:
    page.goto("/audit?action=run.create")
    actions = page.locator("table.audit tbody tr td:nth-child(4)").all_inner_texts()
    assert actions == ["run.create"] * 3
    page.goto(f"/audit?actor={HOSTILE_ACTOR}")
    assert page.locator("table.audit tbody tr").count() > 5
    assert page.locator("table.audit tbody tr td:nth-child(3)").first.inner_text() == HOSTILE_ACTOR
    no_injected_markup(page)
    page.goto("/audit/verify")
    page.click("#verify")
    page.wait_for_selector("#verdict")
    assert page.get_attribute("#verdict", "data-ok") == "yes"
    assert "records checked" in page.locator("#verdict").inner_text()
    page.goto("/audit/doctor")
    page.click("#diagnose")
    page.wait_for_selector("#doctor-verdict")
    assert page.get_attribute("#doctor-verdict", "data-ok") == "yes"


def test_hostile_content_is_text_and_runs_no_script(page: Any, demo_store: DemoStore) -> None:
    page.goto(f"/runs/{demo_store.hostile_run_id}")
    assert page.locator("h1 .name").inner_text() == HOSTILE_RUN
    assert "<script>alert(10)</script>" in page.locator("table.steps").inner_text()
    assert "<script>alert(12)</script>" in page.locator(".loglines").inner_text()
    no_injected_markup(page)
    page.goto(f"/artifacts/{demo_store.hostile_artifact_id}")
    assert page.locator("#content").inner_text() == HOSTILE_HTML.replace("owned", "owned again")
    no_injected_markup(page)
    page.goto(f"/artifacts/{demo_store.hostile_artifact_id}/diff")
    assert page.locator("tr.d-add").count() == 1
    no_injected_markup(page)
    page.goto("/artifacts?q=owned")
    assert page.locator(".snippet mark").count() >= 1
    no_injected_markup(page)
    page.goto(f"/artifacts/{demo_store.hostile_artifact_id}/lineage")
    assert graph_nodes(page) == 2
    no_injected_markup(page)
    page.goto(f"/memory/{demo_store.hostile_profile_id}")
    assert graph_nodes(page) == 2
    labels = page.locator("#graph-list a").all_inner_texts()
    assert HOSTILE_NODE in labels
    assert any(label.startswith(HOSTILE_LINK_NODE[:40]) for label in labels)  # cut at 48
    hrefs = page.eval_on_selector_all("#graph-list a", "as => as.map(a => a.getAttribute('href'))")
    assert all(h.startswith("/memory/") for h in hrefs)
    click_graph_node(page, f"n:{demo_store.hostile_node_ids[0]}")  # javascript: content
    page.wait_for_url(f"**/nodes/{demo_store.hostile_node_ids[0]}")
    assert page.locator("#node-content").inner_text() == HOSTILE_NODE
    no_injected_markup(page)
    page.goto(f"/memory/{demo_store.hostile_profile_id}/nodes/{demo_store.hostile_node_ids[1]}")
    assert page.locator("#node-content").inner_text() == HOSTILE_LINK_NODE
    no_injected_markup(page)


def test_screenshots_of_the_main_pages(page: Any, demo_store: DemoStore, tmp_path: Path) -> None:
    """Screenshots for docs/ui.md: written there with
    KEEPSTONE_UI_SCREENSHOTS=1, to a temporary directory otherwise."""
    target = ROOT / "docs" / "ui" if os.environ.get("KEEPSTONE_UI_SCREENSHOTS") else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    shots = {
        "runs": "/runs",
        "run": f"/runs/{demo_store.run_id}",
        "artifact": f"/artifacts/{demo_store.glossary_id}",
        "lineage": f"/artifacts/{demo_store.glossary_id}/lineage",
        "memory": f"/memory/{demo_store.profile_id}",
        "paths": f"/memory/{demo_store.profile_id}/paths",
        "audit": "/audit",
    }
    for name, path in shots.items():
        page.goto(path)
        if page.locator(".graph").count():
            page.wait_for_selector(".graph[data-ready=yes]")
        page.screenshot(path=str(target / f"{name}.png"), full_page=name not in ("run", "audit"))
        assert (target / f"{name}.png").stat().st_size > 10_000
    page.goto("/audit/verify")
    page.click("#verify")
    page.wait_for_selector("#verdict")
    page.screenshot(path=str(target / "verify.png"))


def test_runs_list_updates_live(page: Any, demo_store: DemoStore) -> None:
    """Last in this file: it adds a run to the shared store."""
    page.goto("/runs")
    page.wait_for_timeout(800)  # a few refreshes of the table (every 0.3 s in these tests)

    async def start_one() -> str:
        async with keepstone.open(demo_store.url) as store:
            run = await store.runs.create("arrived-later")
            await store.runs.transition(run.id, "running")
            return run.id

    run_id = run_in_thread(start_one)
    page.wait_for_selector(f"tr[data-run='{run_id}']", timeout=5000)
    assert page.locator("tr[data-run]").first.get_attribute("data-run") == run_id
    assert "running" in page.locator(f"tr[data-run='{run_id}']").inner_text()
