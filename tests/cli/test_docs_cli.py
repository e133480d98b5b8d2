"""docs/cli.md is exactly what scripts/gen_cli_docs.py renders from --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keepstone.cli.docs import commands, render_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_docs_cli_md_is_the_generated_help() -> None:
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render_markdown(), (
        "docs/cli.md is stale: run python scripts/gen_cli_docs.py"
    )
    rendered = render_markdown()
    for path, _ in commands():
        assert f"## {' '.join(path)}\n" in rendered


def test_docs_do_not_depend_on_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = render_markdown()
    monkeypatch.setenv("KEEPSTONE_STORE", "postgresql://u:secret@h/db")
    monkeypatch.setenv("COLUMNS", "40")
    assert render_markdown() == before


def test_the_generator_script_checks_staleness() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr


def test_readme_links_the_cli_reference_and_getting_started() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in ("docs/cli.md", "docs/getting-started.md"):
        assert f"]({doc})" in readme
        assert (ROOT / doc).is_file()
    started = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert "make run" in started and "](cli.md)" in started
