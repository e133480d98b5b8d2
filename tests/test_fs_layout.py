"""The workspace layout: documented, deterministic, and what the code writes.

``docs/storage-layout.md`` lists every file pattern and shows the example
workspace of ``tests/fixtures/fs-workspace/``; these tests keep the three in
step: the patterns and the example's files match both ways, the document's
tree and sample files are the example's, and the example is exactly what
``tests/fs_example.py`` writes today (so the same calls, clock and ids give a
byte-identical workspace).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from keepstone.engine.tables import ALL_TABLES
from tests.fs_example import FIXTURE, build

DOC = Path(__file__).resolve().parent.parent / "docs" / "storage-layout.md"
REGENERATE = "regenerate it with: .venv/bin/python -m tests.fs_example"


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (temp files aside) and its bytes; the words
    rule ``index.json`` names is left out (it names the Unicode version of
    the Python that wrote it)."""
    found = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith("tmp/")
    }
    if "index.json" in found:
        found["index.json"] = re.sub(rb'"words":"[^"]*"', b'"words":"-"', found["index.json"])
    return found


def block(marker: str) -> list[str]:
    """The lines of the fenced block after ``<!-- marker -->`` in the document."""
    text = DOC.read_text()
    found = re.search(rf"<!-- {re.escape(marker)} -->\n```[a-z]*\n(.*?)```", text, re.S)
    assert found, f"docs/storage-layout.md has no block marked {marker!r}"
    return [line for line in found.group(1).splitlines() if line.strip()]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(<[^>]+>)", pattern)
    out = []
    for part in parts:
        if part == "<number>":
            out.append(r"\d{8,}")
        elif part == "<hex:2>":
            out.append(r"[0-9a-f]{2}")
        elif part == "<hex>":
            out.append(r"[0-9a-f]{64}")
        elif part.startswith("<"):
            out.append(r"[^/]+")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out) + r"\Z")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layout") / "ws"
    asyncio.run(build(root))
    return root


async def test_the_example_is_what_the_code_writes(fresh: Path) -> None:
    assert FIXTURE.is_dir(), f"no fixture at {FIXTURE}; {REGENERATE}"
    written, kept = files(fresh), files(FIXTURE)
    assert sorted(written) == sorted(kept), REGENERATE
    changed = [name for name in written if written[name] != kept[name]]
    assert changed == [], f"these files differ from the fixture: {changed}; {REGENERATE}"


async def test_same_calls_give_byte_identical_workspaces(fresh: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    await build(again)
    assert files(again) == files(fresh)


def test_every_file_matches_a_documented_pattern_and_back() -> None:
    patterns = {p: pattern_regex(p) for p in block("layout-patterns")}
    names = list(files(FIXTURE))
    unmatched = [n for n in names if not any(rx.match(n) for rx in patterns.values())]
    assert unmatched == [], f"files the document does not describe: {unmatched}"
    ambiguous = [n for n in names if sum(bool(rx.match(n)) for rx in patterns.values()) > 1]
    assert ambiguous == [], f"files that match several patterns: {ambiguous}"
    unused = [p for p, rx in patterns.items() if not any(rx.match(n) for n in names)]
    assert unused == [], f"documented patterns the example does not show: {unused}"


def test_every_table_has_a_documented_place() -> None:
    tops = {re.split(r"[/.]", p)[0] for p in block("layout-patterns")}
    assert {t.name for t in ALL_TABLES} <= tops


def test_the_document_shows_the_example() -> None:
    assert block("example-tree") == list(files(FIXTURE))
    text = DOC.read_text()
    shown = re.findall(r"<!-- example: (\S+) -->\n```[a-z]*\n(.*?)```", text, re.S)
    assert len(shown) >= 4
    for name, content in shown:
        lines = (FIXTURE / name).read_text().splitlines()
        sample = content.splitlines()
        assert sample == lines[: len(sample)], f"the document's {name} is not the example's"
