"""Fixtures for the inspector's tests: a store built by the demo plus
hostile content, the inspector served on a free port, and Chromium.

The browser is the system Chromium (``apt-get install chromium``) driven by
Playwright's Python package. Without it the browser tests skip, unless
``KEEPSTONE_REQUIRE_BROWSER=1`` (CI), where they fail and say how to
install it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import pytest

import keepstone
from keepstone.schemas import ArtifactQuery, ErrorInfo, EventQuery, LogLine, Provenance

T = TypeVar("T")

HOSTILE_RUN = "<script>alert(1)</script>"
HOSTILE_HTML = (
    "<html><body><h1 id='injected'>owned</h1><script>alert(4)</script>"
    "<img src=x onerror=alert(5)></body></html>\n"
)
HOSTILE_NODE = "javascript:alert(6)"
HOSTILE_LINK_NODE = '<a href="javascript:alert(7)" id="injected-link">click me</a>'
HOSTILE_ACTOR = "<img src=x onerror=alert(8)>"


@dataclass
class DemoStore:
    """The demo's store, with what the tests look for."""

    url: str
    run_id: str
    profile_id: str
    glossary_id: str = ""
    main_path_id: str = ""
    hostile_run_id: str = ""
    hostile_artifact_id: str = ""
    hostile_profile_id: str = ""
    hostile_node_ids: list[str] = field(default_factory=list)
    live_run_id: str = ""
    counts: dict[str, Any] = field(default_factory=dict)


def run_in_thread(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``coro_fn()`` on a fresh event loop in another thread (Playwright's
    sync API keeps an event loop running in the test's thread)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro_fn()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _demo(directory: Path) -> tuple[str, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KEEPSTONE_DEMO_STORE"}
    out = subprocess.run(
        [sys.executable, "-m", "keepstone.demo"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    run_id = re.search(r" runs show (\S+)", out.stdout)
    profile_id = re.search(r" memory paths (\S+)", out.stdout)
    assert run_id and profile_id, out.stdout
    return out.stdout, run_id.group(1), profile_id.group(1)


async def _add_hostile_content(demo: DemoStore) -> None:
    async with keepstone.open(demo.url) as store:
        knowledge = await store.artifacts.get_collection_by_name("knowledge")
        glossary = await store.artifacts.get_by_name(knowledge.id, "glossary")
        demo.glossary_id = glossary.id
        paths = (await store.memory.list_paths(demo.profile_id)).items
        demo.main_path_id = next(p.id for p in paths if p.name == "main")
        with keepstone.acting_as(HOSTILE_ACTOR):
            run = await store.runs.create(
                HOSTILE_RUN,
                params={"html": "<b>bold</b>", "url": "javascript:alert(9)"},
                labels={"team": "<i>x</i>"},
            )
            await store.runs.transition(run.id, "running")
            await store.runs.set_step(run.id, "<b>step</b>", "running")
            await store.runs.set_step(
                run.id,
                "<b>step</b>",
                "failed",
                error=ErrorInfo(
                    type="ValueError",
                    message="<script>alert(10)</script>",
                    details={"traceback": "Traceback:\n  <img src=x onerror=alert(11)>\n"},
                ),
            )
            await store.logs.write(run.id, "<b>event</b>", message="<script>alert(12)</script>")
            await store.runs.transition(run.id, "failed")
            demo.hostile_run_id = run.id
            col = await store.artifacts.create_collection("<i>hostile</i>")
            art = await store.artifacts.create(
                col.id,
                "<script>alert(3)</script>.html",
                HOSTILE_HTML,
                media_type="text/html",
                provenance=Provenance(run_id=run.id, step="<b>step</b>"),
            )
            art = await store.artifacts.update(art.id, HOSTILE_HTML.replace("owned", "owned again"))
            demo.hostile_artifact_id = art.id
            prof = await store.memory.create_profile("<b>hostile</b>")
            a = await store.memory.put_node(prof.id, "<i>kind</i>", content=HOSTILE_NODE)
            b = await store.memory.put_node(prof.id, "fact", content=HOSTILE_LINK_NODE)
            await store.memory.put_edge(prof.id, a.id, b.id, "<b>rel</b>")
            demo.hostile_profile_id = prof.id
            demo.hostile_node_ids = [a.id, b.id]
        live = await store.runs.create("live-pipeline", labels={"kind": "live"})
        await store.runs.transition(live.id, "running")
        await store.runs.set_step(live.id, "work", "running")
        await store.logs.append(
            live.id,
            [
                LogLine(run_id=live.id, at=store.clock.now(), level="info", event="started"),
                LogLine(
                    run_id=live.id,
                    at=store.clock.now(),
                    level="error",
                    event="oops",
                    message="an error line",
                ),
            ],
        )
        demo.live_run_id = live.id
        graph = await store.memory.graph(demo.profile_id, view="all")
        events = (await store.events.list(EventQuery(profile_id=demo.profile_id))).items
        replays = {}
        for event in events:
            assert event.seq is not None
            replays[event.seq] = len(
                (
                    await store.memory.replay(demo.profile_id, view="all", through_seq=event.seq)
                ).nodes
            )
        on_main = await store.memory.graph(demo.profile_id, path_id=demo.main_path_id)
        demo.counts = {
            "nodes": len(graph.nodes),
            "paths": len(graph.paths),
            "replay_nodes": replays,
            "main_nodes": len(on_main.nodes),
            "run_steps": len((await store.runs.get(demo.run_id)).steps),
            "snapshots": len((await store.runs.list_snapshots(demo.run_id)).items),
            "outputs": len((await store.artifacts.query(ArtifactQuery(run_id=demo.run_id))).items),
        }


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """The store ``make run``'s demo makes, plus hostile content and a run
    that is still running."""
    directory = tmp_path_factory.mktemp("ui-demo")
    _, run_id, profile_id = _demo(directory)
    demo = DemoStore(f"sqlite:///{directory / '.keepstone' / 'demo.db'}", run_id, profile_id)
    run_in_thread(lambda: _add_hostile_content(demo))
    return demo


@pytest.fixture(scope="session")
def thread_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A store where real LangGraph graphs ran, with a fork made by time
    travel (see ``tests/ui/threads_store.py``)."""
    from tests.ui.threads_store import build

    url = f"sqlite:///{tmp_path_factory.mktemp('ui-threads') / 'threads.db'}"
    return run_in_thread(lambda: build(url))


def thread_path(thread_id: str, **query: str) -> str:
    """The address of a thread's page (the id quoted whole, ``/`` too)."""
    path = "/langgraph/threads/" + quote(thread_id, safe="")
    return path + ("?" + urlencode(query) if query else "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServedUi:
    """The inspector served by uvicorn in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedUi:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the inspector did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def served(demo_store: DemoStore) -> Iterator[ServedUi]:
    from keepstone.ui import create_app

    app = create_app(
        demo_store.url,
        loopback_only=True,
        poll_seconds=0.3,
        shown_as="sqlite:///.keepstone/demo.db",  # as the demo prints it (screenshots)
    )
    with ServedUi(app) as ui:
        yield ui


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module (Playwright's sync API keeps an event
    loop running in this thread while it is open: closing it after the
    module leaves the rest of the suite's event loops alone)."""
    executable = chromium_path()
    if executable is None:
        message = (
            "Chromium is not installed: apt-get install -y chromium "
            "(the browser tests drive the system Chromium through Playwright)"
        )
        if os.environ.get("KEEPSTONE_REQUIRE_BROWSER", "") not in ("", "0"):
            pytest.fail(f"KEEPSTONE_REQUIRE_BROWSER is set but {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """What a page said while a test used it."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@contextlib.contextmanager
def watched_page(browser: Any, base_url: str) -> Iterator[Any]:
    """A fresh page on an inspector served at ``base_url``; the test fails if
    the page logged a console error (CSP violations included), threw, or
    opened a dialog (a script injected by stored content would)."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    watched = Watched()
    tab.on(
        "console",
        lambda msg: watched.errors.append(msg.text) if msg.type == "error" else None,
    )
    tab.on("pageerror", lambda exc: watched.errors.append(f"page error: {exc}"))

    def dialog(d: Any) -> None:
        watched.dialogs.append(d.message)
        d.dismiss()

    tab.on("dialog", dialog)
    tab.watched = watched
    tab.set_default_timeout(10_000)
    try:
        yield tab
        assert not watched.dialogs, f"a script ran: {watched.dialogs}"
        assert not watched.errors, f"console errors: {watched.errors}"
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, served: ServedUi) -> Iterator[Any]:
    """A fresh page on the inspector over the demo's store (see :func:`watched_page`)."""
    with watched_page(browser, served.base) as tab:
        yield tab
