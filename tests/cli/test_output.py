"""Output people can use: what lists show and in which order, one JSON
document for scripts and JSON failures, search snippets, reproducible
exports, progress, the doctor's words, and a terminal that stored strings
cannot drive."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import keepstone
from keepstone.cli import app
from keepstone.cli.artifacts import _find
from keepstone.cli.doctor import checked_words, where_words
from keepstone.cli.listing import read_by_seq
from keepstone.cli.output import inert
from keepstone.schemas import Page
from tests.cli.conftest import Filled, invoke, sqlite_url
from tests.cli.conftest import fill as fill_store
from tests.cli.test_commands import as_json, failed, ok

ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------- the terminal is not an input

HOSTILE = ["\x1b[2J", "[bold]x[/bold]", "a\rb\x07c\x9b31m\u202eevil"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store whose runs, logs, artifacts and memory hold hostile strings."""
    url = sqlite_url(tmp_path_factory.mktemp("hostile"))

    async def fill() -> None:
        async with keepstone.open(url) as store:
            for name in HOSTILE:
                run = await store.runs.create(name, labels={"k": name})
                await store.logs.write(run.id, name, message=name, data={"v": name})
            coll = await store.artifacts.create_collection(HOSTILE[1])
            await store.artifacts.create(coll.id, HOSTILE[0], f"text {HOSTILE[0]} here")
            profile = await store.memory.create_profile(HOSTILE[1])
            await store.memory.put_node(profile.id, "fact", content=HOSTILE[0])

    asyncio.run(fill())
    return url


def assert_inert(text: str) -> None:
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "\x9b" not in text and "\u202e" not in text


def test_stored_strings_are_shown_inert(hostile: str) -> None:
    for args in (
        ["runs", "list"],
        ["artifacts", "list"],
        ["artifacts", "collections"],
        ["artifacts", "search", "text"],
        ["memory", "profiles"],
        ["memory", "nodes", HOSTILE[1]],
        ["audit", "list"],
    ):
        out = ok(invoke(hostile, *args))
        assert_inert(out)
        shown = "[bold]x[/bold]" if args[1] in ("collections", "profiles") else "\\x1b[2J"
        assert shown in out or args[0] == "audit", args  # shown as stored, escaped
    listed = ok(invoke(hostile, "runs", "list"))
    assert "[bold]x[/bold]" in listed  # markup is shown as typed, not applied
    assert "a\\rb\\x07c\\x9b31m\\u202eevil" in listed
    runs = as_json(invoke(hostile, "runs", "list", "--json"))
    for run in runs:
        shown = ok(invoke(hostile, "runs", "show", run["id"]))
        logs = ok(invoke(hostile, "runs", "logs", run["id"]))
        assert_inert(shown + logs)
        assert "[bold]" not in shown or "[bold]x[/bold]" in shown


def test_json_keeps_stored_strings_exact(hostile: str) -> None:
    runs = as_json(invoke(hostile, "runs", "list", "--oldest-first", "--json"))
    assert [r["name"] for r in runs] == HOSTILE
    assert [r["labels"]["k"] for r in runs] == HOSTILE
    raw = invoke(hostile, "runs", "list", "--json").stdout
    assert "\x1b" not in raw and "\x9b" not in raw and "\u202e" not in raw  # escaped as \\u....
    lines = as_json(invoke(hostile, "runs", "logs", runs[2]["id"], "--json"))
    assert [(ln["event"], ln["message"], ln["data"]) for ln in lines] == [
        (HOSTILE[2], HOSTILE[2], {"v": HOSTILE[2]})
    ]


def test_failure_messages_are_inert_too(hostile: str) -> None:
    result = invoke(hostile, "artifacts", "show", f"{HOSTILE[1]}/\x1b]0;owned\x07")
    failed(result, "not_found")
    assert_inert(result.stderr)


def test_a_real_terminal_gets_styles_but_no_stored_escapes(hostile: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "keepstone.cli", "--store", hostile, "runs", "list"],
        capture_output=True,
        env={"TTY_COMPATIBLE": "1", "FORCE_COLOR": "1", "COLUMNS": "200", "PATH": ""},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert "\x1b[" in text  # rich styles the table on a terminal
    assert "\x1b[2J" not in text and "\x9b" not in text and "\u202e" not in text
    assert "\\x1b[2J" in text


def test_snippets_are_found_whatever_the_case_and_accents() -> None:
    assert _find("x Café y", ["cafe"]) == (2, 6)
    assert _find("x CAFE\u0301 y", ["café"]) == (2, 7)  # decomposed accent
    assert _find("nothing here", ["zebra"]) is None


def test_inert_escapes_what_a_terminal_acts_on() -> None:
    assert inert("ok plain text, accents é, emoji 🎉") == "ok plain text, accents é, emoji 🎉"
    assert inert("\x1b[2J\r\n\t\x00\x7f\x85\u2028\u202e") == (
        "\\x1b[2J\\r\\n\\t\\x00\\x7f\\x85\\u2028\\u202e"
    )
    assert inert("one\ntwo\x1b", newlines=True) == "one\ntwo\\x1b"


# --------------------------------------------------------------------------- JSON and failures


def test_failures_under_json_are_a_json_object_on_stderr(filled: Filled) -> None:
    missing = invoke(filled.url, "runs", "show", "run_missing", "--json")
    assert missing.exit_code == 1 and missing.stdout == ""
    error = json.loads(missing.stderr)
    assert error["code"] == "not_found" and "run_missing" in error["message"]
    assert isinstance(error["details"], dict)
    usage = invoke(filled.url, "runs", "list", "--limit", "0", "--json")
    assert usage.exit_code == 2
    assert json.loads(usage.stderr)["code"] == "usage"
    bad = invoke(filled.url, "runs", "list", "--bogus", "--json")
    assert bad.exit_code == 2 and json.loads(bad.stderr)["code"] == "usage"
    plain = invoke(filled.url, "runs", "show", "run_missing")
    assert plain.stderr.startswith("error [not_found]: ")
    secret = invoke("postgresql://u:hunter2@127.0.0.1:1/db", "runs", "list", "--json")
    assert secret.exit_code == 1 and "hunter2" not in secret.stderr
    assert json.loads(secret.stderr)["code"] == "unavailable"


def test_every_listing_is_a_json_array(filled: Filled) -> None:
    for args in (
        ["runs", "list"],
        ["artifacts", "list"],
        ["artifacts", "collections"],
        ["artifacts", "search", "cats"],
        ["artifacts", "related", "docs/spec"],
        ["memory", "profiles"],
        ["memory", "nodes", "assistant"],
        ["memory", "edges", "assistant"],
        ["memory", "events", "assistant"],
        ["memory", "paths", "assistant"],
        ["audit", "list"],
        ["runs", "logs", filled.run],
        ["backends"],
    ):
        data = as_json(invoke(filled.url, *args, "--json"))
        assert isinstance(data, list) and data, args


# --------------------------------------------------------------------------- lists


def test_newest_first_reads_seq_windows_backwards() -> None:
    records = [{"seq": n} for n in range(1, 3001)]
    calls: list[int] = []

    async def fetch(after: int, cursor: str | None, limit: int) -> Page[dict[str, int]]:
        calls.append(after)
        start = after if cursor is None else int(cursor)
        items = [r for r in records if r["seq"] > start][:limit]
        more = len(items) == limit and items[-1]["seq"] < 3000
        return Page(items=items, next_cursor=str(items[-1]["seq"]) if more else None)

    async def newest(limit: int, floor: int) -> tuple[list[int], bool]:
        found = await read_by_seq(
            fetch,  # type: ignore[arg-type]
            last_seq=3000,
            floor=floor,
            limit=limit,
        )
        return [r["seq"] for r in found.items], found.older

    assert asyncio.run(newest(3, 0)) == ([3000, 2999, 2998], True)
    assert calls[0] == 2000  # the first window only, not the whole history
    assert asyncio.run(newest(5, 2997)) == ([3000, 2999, 2998], False)
    assert asyncio.run(newest(3000, 0))[0] == list(range(3000, 0, -1))
    # exactly `limit` items in the window and nothing older
    records[:] = records[-1000:]
    assert asyncio.run(newest(1000, 0)) == (list(range(3000, 2000, -1)), False)


def test_runs_show_their_duration(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    clock = keepstone.FixedClock(step_us=1_500_000)

    async def main() -> None:
        async with keepstone.open(url, clock=clock) as store:
            run = await store.runs.create("timed", id="run_timed")
            await store.runs.transition(run.id, "running")
            await store.runs.transition(run.id, "succeeded")

    asyncio.run(main())
    listed = ok(invoke(url, "runs", "list"))
    assert re.search(r"run_timed .* \d+\.\d\ds", listed), listed
    assert re.search(r"duration\s+\d+\.\d\ds", ok(invoke(url, "runs", "show", "run_timed")))


def test_audit_records_are_one_line_each(filled: Filled) -> None:
    out = ok(invoke(filled.url, "audit", "list", "--limit", "5"))
    lines = out.splitlines()
    assert lines[0].split() == [
        "seq",
        "at",
        "actor",
        "action",
        "target",
        "outcome",
        "approval",
        "details",
    ]
    assert len(lines) == 6 and all(re.match(r"\d+ ", ln) for ln in lines[1:])
    assert "│" not in out  # no table cells to fold JSON into


# --------------------------------------------------------------------------- search


def test_search_matches_names_and_content_with_a_snippet(fresh: Filled, tmp_path: Path) -> None:
    notes = tmp_path / "zebra-notes.txt"
    notes.write_text("stripes only")
    ok(invoke(fresh.url, "artifacts", "put", "kb", "zebra-notes", str(notes)))
    story = tmp_path / "story.txt"
    story.write_text(
        "A long walk through town ended, after many turns and a stop at the Café, "
        "at the zebra crossing near the station, where the story ends, or nearly: "
        "there was still the long way home, through the park and over the bridge."
    )
    ok(invoke(fresh.url, "artifacts", "put", "kb", "story", str(story)))

    hits = as_json(invoke(fresh.url, "artifacts", "search", "zebra", "--json"))
    by_name = {h["artifact"]["name"]: h for h in hits}
    assert set(by_name) == {"zebra-notes", "story"}
    assert by_name["zebra-notes"]["matched"] == ["name"]
    assert by_name["zebra-notes"]["snippet"] is None
    assert by_name["story"]["matched"] == ["content"]
    snippet = by_name["story"]["snippet"]
    assert "zebra crossing" in snippet and snippet.startswith("…") and snippet.endswith("…")
    assert by_name["story"]["collection"] == "kb"
    cafe = as_json(invoke(fresh.url, "artifacts", "search", "CAFÉ", "--json"))
    assert [h["artifact"]["name"] for h in cafe] == ["story"]
    assert "the Café, at" in cafe[0]["snippet"]  # found whatever the case
    table = ok(invoke(fresh.url, "artifacts", "search", "zebra"))
    assert "zebra-notes" in table and "name" in table and "content" in table
    assert "crossing" in table  # the snippet
    assert invoke(fresh.url, "artifacts", "search", " ").exit_code == 2


# --------------------------------------------------------------------------- export


def test_export_is_reproducible_and_replaces_only_with_force(
    filled: Filled, tmp_path: Path
) -> None:
    first, second = tmp_path / "one.tar", tmp_path / "two.tar"
    pinned = ["--created-at", "2026-01-01T00:00:00Z"]
    manifest = as_json(invoke(filled.url, "export", str(first), *pinned, "--json"))
    assert manifest["created_at"].startswith("2026-01-01T00:00:00")
    ok(invoke(filled.url, "export", str(second), *pinned))
    assert first.read_bytes() == second.read_bytes()

    err = failed(invoke(filled.url, "export", str(first)), "conflict")
    assert "--force" in err
    first.write_bytes(b"an older archive")
    ok(invoke(filled.url, "export", str(first), *pinned, "--force"))
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.tar", "two.tar"]

    snapdir = tmp_path / "snapdir"
    ok(invoke(filled.url, "export", str(snapdir)))
    ok(invoke(filled.url, "export", str(snapdir), "--force", *pinned))
    assert json.loads((snapdir / "manifest.json").read_text())["created_at"].startswith(
        "2026-01-01"
    )
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    err = failed(invoke(filled.url, "export", str(mine), "--force"), "conflict")
    assert "does not hold a keepstone snapshot" in err
    assert (mine / "thesis.txt").read_text() == "precious"
    assert (
        invoke(filled.url, "export", str(tmp_path / "x.tar"), "--created-at", "soon").exit_code == 2
    )


def test_long_operations_show_totals_on_a_terminal(
    filled: Filled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich treats stderr as a terminal
    archive = tmp_path / "s.tar"
    exported = invoke(filled.url, "export", str(archive))
    assert exported.exit_code == 0, exported.stderr
    manifest = as_json(invoke(filled.url, "export", str(tmp_path / "again.tar"), "--json"))
    blobs = manifest["blobs"]
    assert re.search(rf"{blobs}/{blobs} blobs · \d+ B", exported.stderr), exported.stderr
    assert "left" in exported.stderr  # the time left column
    imported = invoke(sqlite_url(tmp_path / "copy"), "import", str(archive))
    assert imported.exit_code == 0, imported.stderr
    records = sum(manifest["counts"].values())
    assert f"{records}/{records} records" in imported.stderr  # verify: N/N from the manifest
    assert re.search(rf"{blobs}/{blobs} blobs · \d+ B", imported.stderr)


# --------------------------------------------------------------------------- doctor


def test_the_doctor_speaks_of_runs_artifacts_and_memory(filled: Filled) -> None:
    text = ok(invoke(filled.url, "doctor"))
    assert "2 runs (" in text and "memory of 1 profile (" in text and "audit records" in text
    for table_name in ("memory_heads", "activations", "packages", "log_refs", "artifact_text"):
        assert table_name not in text.replace("context packages", "")
    raw = as_json(invoke(filled.url, "doctor", "--json"))
    assert "memory_heads" in raw["checked"]  # --json keeps the raw names


def test_the_doctor_names_workspace_files_in_words(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"  # a bare path without a .db suffix: a workspace
    assert ok(invoke(str(workspace), "init")).strip() == f"created {workspace} (file)"
    asyncio.run(fill_store(str(workspace)))
    with (workspace / "audit.jsonl").open("ab") as log:
        log.write(b'{"torn\n{"x": 1}\n')
    result = invoke(str(workspace), "doctor")
    failed(result, "corrupt")
    assert "audit record file audit.jsonl, line" in result.stdout
    assert "memory of 1 profile" in result.stdout


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("revisions:art_1:2", "artifact art_1, revision 2"),
        ("snapshots:run_1:3", "run run_1, snapshot 3"),
        ("log_refs:run_1", "the sealed log of run run_1"),
        ("manifests:run_1", "the manifest of run run_1"),
        ("edges:prf_1:edg_1", "memory edge edg_1 of profile prf_1"),
        ("events:profile=prf_1", "the memory events of profile prf_1"),
        ("memory_heads:prf_1", "the memory graph head of profile prf_1"),
        ("packages:ctx_1", "context package ctx_1"),
        ("activations:act_1", "memory activation record act_1"),
        ("audit:7", "audit record 7"),
        ("nodes:?", "a memory node"),
        ("runs/run_1.json:3", "run file runs/run_1.json, line 3"),
        ("events.jsonl:12", "memory event file events.jsonl, line 12"),
        ("keepstone://logs/run_1", "the log of run run_1"),
        ("store", "the store"),
    ],
)
def test_where_words(location: str, words: str) -> None:
    assert where_words(location) == words


def test_checked_words() -> None:
    assert checked_words(
        {"runs": 2, "log_lines": 12, "artifacts": 1, "profiles": 1, "memory_heads": 1, "blobs": 3}
    ) == ("2 runs (12 log lines), 1 artifact, memory of 1 profile (1 graph head), 3 blobs")


# --------------------------------------------------------------------------- help and docs


def test_flags_take_no_value_and_the_help_says_so() -> None:
    runner = CliRunner()
    for args in (["--help"], ["runs", "logs", "--help"], ["export", "--help"]):
        assert "<bool>" not in runner.invoke(app, args).output
    refused = runner.invoke(app, ["--debug=true", "backends"])
    assert refused.exit_code == 2


def _shell_block(doc: str, after: str) -> list[list[str]]:
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    block = text.split(after, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_getting_started_shell_examples_run_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def made_by_the_python_example() -> None:
        async with keepstone.open("sqlite:///a.db") as store:
            await store.runs.create("translate")

    asyncio.run(made_by_the_python_example())
    commands = _shell_block("getting-started.md", "The same store from the shell")
    assert len(commands) >= 4
    for _ in range(2):
        for words in commands:
            for command in _split_and(words):
                if command[0] == "rm":
                    for name in command[1:]:
                        if not name.startswith("-"):
                            Path(name).unlink(missing_ok=True)
                    continue
                assert command[0] == "keepstone", command
                result = CliRunner().invoke(app, command[1:])
                assert result.exit_code == 0, (command, result.output)


def _split_and(words: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            out.append([])
        else:
            out[-1].append(word)
    return out
