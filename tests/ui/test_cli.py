"""``keepstone ui``: starts fast, prints its address, serves; beyond
loopback it prints a token and refuses requests without it."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from typer.testing import CliRunner

from keepstone.cli import app
from tests.ui.conftest import DemoStore

START_BUDGET_S = 5.0
"""Generous for a loaded CI machine; it takes about half a second here."""


@contextmanager
def serving(*args: str) -> Iterator[tuple[str, float]]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "keepstone.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        took = time.monotonic() - started
        assert line.startswith("keepstone ui: http://"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        yield line.split(": ", 1)[1].strip(), took
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fetch(url: str) -> tuple[int, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_starts_fast_prints_its_address_and_serves(demo_store: DemoStore) -> None:
    with serving("--store", demo_store.url, "ui", "--port", "0") as (address, took):
        assert took < START_BUDGET_S
        assert address.startswith("http://127.0.0.1:") and "token" not in address
        status, html = fetch(address + "runs")
        assert status == 200 and "nightly-digest" in html


def test_the_ui_store_option_and_a_token_beyond_loopback(demo_store: DemoStore) -> None:
    with serving("ui", "--store", demo_store.url, "--host", "0.0.0.0", "--port", "0") as (
        address,
        _,
    ):
        base, _, token = address.partition("/?token=")
        assert len(token) >= 24
        local = base.replace("0.0.0.0", "127.0.0.1")
        assert fetch(local + "/runs")[0] == 401
        assert fetch(f"{local}/runs?token={token}")[0] == 303
        assert fetch(f"{local}/runs?token=not-{token}")[0] == 401


def test_refuses_a_missing_store_and_explains_a_missing_extra(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = CliRunner().invoke(app, ["ui", "--store", "sqlite:///no/such/store.db"])
    assert missing.exit_code == 1
    assert "no keepstone store" in missing.output
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    no_extra = CliRunner().invoke(app, ["ui", "--store", "memory://"])
    assert no_extra.exit_code == 1
    assert "pip install 'keepstone[ui]'" in no_extra.output


def test_help_says_what_it_does() -> None:
    result = CliRunner().invoke(app, ["ui", "--help"])
    assert result.exit_code == 0
    for words in ("read-only", "--host", "--port", "--open", "token"):
        assert words in result.output
