"""The whole flow, as a person or a script would run it: the real command in a
subprocess (``python -m keepstone.cli``), on SQLite files on disk."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli.conftest import fill, sqlite_url


def keepstone(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "keepstone.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def run_json(*args: str, cwd: Path) -> Any:
    out = keepstone(*args, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_init_list_show_search_history_export_import_doctor_verify(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "first")
    created = keepstone("--store", url, "init", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert url in created.stdout

    filled = asyncio.run(fill(url))  # the data comes from the Python API

    runs = run_json("--store", url, "runs", "list", cwd=tmp_path)
    assert {r["id"] for r in runs} == {filled.run, filled.crashed}
    shown = run_json("--store", url, "runs", "show", filled.run, cwd=tmp_path)
    assert shown["run"]["status"] == "succeeded"
    hits = run_json("--store", url, "artifacts", "search", "cats", cwd=tmp_path)
    assert [h["artifact"]["id"] for h in hits] == [filled.spec]
    history = run_json("--store", url, "artifacts", "history", "docs/spec", cwd=tmp_path)
    assert len(history["revisions"]) == 2

    snapshot = tmp_path / "backup.tar"
    exported = keepstone("--store", url, "export", str(snapshot), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert snapshot.is_file()

    twin = sqlite_url(tmp_path / "second")
    imported = keepstone("--store", twin, "import", str(snapshot), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    for args in (["runs", "list"], ["artifacts", "list"], ["memory", "paths", "assistant"]):
        assert run_json("--store", twin, *args, cwd=tmp_path) == run_json(
            "--store", url, *args, cwd=tmp_path
        )

    doctor = keepstone("--store", twin, "doctor", cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "healthy" in doctor.stdout
    verify = keepstone("--store", twin, "audit", "verify", cwd=tmp_path)
    assert verify.returncode == 0 and "verified" in verify.stdout


def test_the_default_store_is_sqlite_in_dot_keepstone(tmp_path: Path) -> None:
    created = keepstone("init", cwd=tmp_path, env={"KEEPSTONE_STORE": ""})
    assert created.returncode == 0, created.stderr
    assert "sqlite:///.keepstone/store.db" in created.stdout
    assert (tmp_path / ".keepstone" / "store.db").is_file()
    listed = keepstone("runs", "list", "--json", cwd=tmp_path, env={"KEEPSTONE_STORE": ""})
    assert json.loads(listed.stdout) == []


def test_keepstone_store_variable_chooses_the_store(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "elsewhere")
    env = {"KEEPSTONE_STORE": url}
    assert keepstone("init", cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "elsewhere" / "store.db").is_file()
    missing = keepstone(
        "--store", sqlite_url(tmp_path / "nope"), "runs", "list", cwd=tmp_path, env=env
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("error [not_found]: no keepstone store at")
    assert "Traceback" not in missing.stderr


def test_a_usage_error_exits_2(tmp_path: Path) -> None:
    out = keepstone("runs", "list", "--limit", "0", cwd=tmp_path)
    assert out.returncode == 2


def test_logs_follow_prints_lines_as_they_come_and_ends_at_the_seal(tmp_path: Path) -> None:
    import select

    import keepstone

    url = sqlite_url(tmp_path)

    async def start() -> str:
        async with keepstone.open(url) as store:
            run = await store.runs.create("live")
            await store.runs.transition(run.id, "running")
            await store.logs.write(run.id, "first")
            return run.id

    async def finish(run_id: str) -> None:
        async with keepstone.open(url) as store:
            await store.logs.write(run_id, "second")
            await store.logs.seal(run_id)

    run_id = asyncio.run(start())
    command = ["--store", url, "runs", "logs", run_id, "--follow", "--jsonl"]
    follower = subprocess.Popen(
        [sys.executable, "-m", "keepstone.cli", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert follower.stdout is not None
        ready, _, _ = select.select([follower.stdout], [], [], 60)
        assert ready, "no line within 60s"
        assert json.loads(follower.stdout.readline())["event"] == "first"
        asyncio.run(finish(run_id))
        rest, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert [json.loads(line)["event"] for line in rest.splitlines()] == ["second"]
