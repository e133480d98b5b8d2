"""Addressing: what a bare path opens, ambiguous paths, unknown schemes,
names wherever ids are accepted, and global options anywhere on the line."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import keepstone
from keepstone.cli import app
from keepstone.cli.app import hoist_global_options
from keepstone.cli.audit import ACTION_ALIASES
from keepstone.errors import StorageError
from tests.cli.conftest import Filled, invoke
from tests.cli.test_commands import as_json, failed, ok


async def _open_fails(url: str) -> StorageError:
    with pytest.raises(StorageError) as caught:
        async with keepstone.open(url):
            pass
    return caught.value


@pytest.mark.parametrize("name", ["my.db", "store.sqlite", "nested/x.SQLITE3"])
def test_a_bare_path_with_a_sqlite_suffix_opens_sqlite(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nested").mkdir()

    async def main() -> str:
        async with keepstone.open(name) as store:
            await store.runs.create("etl")
            return store.backend.name

    assert asyncio.run(main()) == "sqlite"
    assert (tmp_path / name).is_file()
    assert (tmp_path / name).read_bytes()[:16] == b"SQLite format 3\x00"


def test_a_bare_path_without_a_suffix_is_still_a_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def main() -> str:
        async with keepstone.open("ws") as store:
            return store.backend.name

    assert asyncio.run(main()) == "file"
    assert (tmp_path / "ws" / "keepstone.json").is_file()


def test_ambiguous_paths_name_the_url_to_write(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    err = asyncio.run(_open_fails(str(plain)))
    assert err.code == "config" and f"sqlite:///{plain}" in err.message
    folder = tmp_path / "old.db"
    folder.mkdir()
    err = asyncio.run(_open_fails(str(folder)))
    assert err.code == "config" and f"file://{folder}" in err.message
    assert os.listdir(folder) == []  # nothing was created in it
    err = asyncio.run(_open_fails("sqlite:/x.db"))
    assert err.code == "config" and "://" in err.message


@pytest.mark.parametrize(
    ("url", "suggested"),
    [("sqlit:///x.db", "sqlite"), ("postgressql://h/db", "postgresql"), ("mem://", "memory")],
)
def test_an_unknown_scheme_suggests_the_closest(url: str, suggested: str) -> None:
    err = asyncio.run(_open_fails(url))
    assert err.code == "config"
    assert f"did you mean {suggested}://?" in err.message
    assert err.details["suggestion"] == suggested
    assert json.dumps(err.details)  # details stay JSON


# --------------------------------------------------------------------------- on the command line


def test_init_with_a_db_path_makes_a_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    created = CliRunner().invoke(app, ["--store", "my.db", "init"])
    assert created.exit_code == 0, created.output
    assert created.stdout.strip() == "created my.db (sqlite)"
    assert (tmp_path / "my.db").is_file()
    assert as_json(invoke("my.db", "runs", "list", "--json")) == []


def test_ambiguous_paths_and_unknown_schemes_on_the_command_line(tmp_path: Path) -> None:
    plain = tmp_path / "notes"
    plain.write_text("mine")
    err = failed(invoke(str(plain), "runs", "list"), "config")
    assert f"sqlite:///{plain}" in err
    assert plain.read_text() == "mine"
    err = failed(invoke("sqlit:///x.db", "runs", "list"), "config")
    assert "did you mean sqlite://?" in err


def test_global_options_work_after_the_command(filled: Filled) -> None:
    runner = CliRunner()
    after = runner.invoke(app, ["runs", "list", "--json", "--store", filled.url])
    assert after.exit_code == 0, after.output
    assert {r["id"] for r in json.loads(after.stdout)} == {filled.run, filled.crashed}
    equals = runner.invoke(app, ["runs", "show", filled.run, f"--store={filled.url}", "--json"])
    assert json.loads(equals.stdout)["run"]["id"] == filled.run
    debug = runner.invoke(app, ["runs", "show", "run_missing", "--store", filled.url, "--debug"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr
    # the last --store wins, as for any option given twice
    twice = runner.invoke(
        app, ["--store", "sqlite:///nowhere.db", "runs", "list", "--store", filled.url]
    )
    assert twice.exit_code == 0, twice.output


def test_hoisting_moves_only_the_global_options() -> None:
    assert hoist_global_options(["runs", "list", "--store", "a.db", "--json"]) == [
        "--store",
        "a.db",
        "runs",
        "list",
        "--json",
    ]
    assert hoist_global_options(["gc", "--debug", "--store=x.db"]) == [
        "--debug",
        "--store=x.db",
        "gc",
    ]
    # after --, everything is an argument
    assert hoist_global_options(["artifacts", "search", "--", "--store"]) == [
        "artifacts",
        "search",
        "--",
        "--store",
    ]


def test_artifacts_are_found_by_the_name_artifacts_list_prints(
    fresh: Filled, tmp_path: Path
) -> None:
    [row] = as_json(invoke(fresh.url, "artifacts", "list", "--run", fresh.run, "--json"))
    name = row["name"]
    assert name.startswith("etl/") and "/" in name.removeprefix("etl/")
    got = invoke(fresh.url, "artifacts", "get", name)
    assert got.exit_code == 0, got.stderr
    assert got.stdout_bytes == invoke(fresh.url, "artifacts", "get", f"outputs/{name}").stdout_bytes
    assert (
        as_json(invoke(fresh.url, "artifacts", "show", "spec", "--json"))["artifact"]["id"]
        == fresh.spec
    )
    # a name alone in two collections is ambiguous: say which COLLECTION/NAME to write
    src = tmp_path / "x.txt"
    src.write_text("x")
    ok(invoke(fresh.url, "artifacts", "put", "kb", "spec", str(src)))
    err = failed(invoke(fresh.url, "artifacts", "get", "spec"), "conflict")
    assert "docs/spec" in err and "kb/spec" in err
    err = failed(invoke(fresh.url, "artifacts", "get", "etl/nothing/here"), "not_found")
    assert "etl/nothing/here" in err


def test_paths_are_found_by_name(filled: Filled) -> None:
    by_name = as_json(
        invoke(filled.url, "memory", "nodes", "assistant", "--path", "main", "--json")
    )
    by_id = as_json(
        invoke(filled.url, "memory", "nodes", "assistant", "--path", filled.main_path, "--json")
    )
    assert by_name == by_id and len(by_name) == 2
    events = as_json(
        invoke(filled.url, "memory", "events", "assistant", "--path", "what-if", "--json")
    )
    assert {e["payload"]["kind"] for e in events} >= {"node.put", "edge.put"}
    err = failed(invoke(filled.url, "memory", "nodes", "assistant", "--path", "nope"), "not_found")
    assert "'nope'" in err and "assistant" in err


def test_audit_actions_accept_the_event_kinds(filled: Filled) -> None:
    own = as_json(
        invoke(filled.url, "audit", "list", "--action", "lifecycle.abandon_path", "--json")
    )
    assert [r["approval"]["approved_by"] for r in own] == ["alice"]
    for alias in ("path.abandoned", "abandon_path"):
        result = invoke(filled.url, "audit", "list", "--action", alias)
        assert result.exit_code == 0, result.output
        assert "lifecycle.abandon_path" in result.stderr  # says what it searched for
        assert as_json(invoke(filled.url, "audit", "list", "--action", alias, "--json")) == own
    puts = as_json(invoke(filled.url, "audit", "list", "--action", "node.put", "--json"))
    assert len(puts) == 2 and {r["action"] for r in puts} == {"memory.put_node"}


def test_every_action_alias_is_in_the_help() -> None:
    help_text = CliRunner().invoke(app, ["audit", "list", "--help"], env={"COLUMNS": "300"}).output
    flat = " ".join(help_text.split())
    for alias, action in ACTION_ALIASES.items():
        if "." in alias:
            assert f"{alias} = {action}" in flat, alias
