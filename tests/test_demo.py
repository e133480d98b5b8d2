"""``make run``'s demo: it crashes and resumes a pipeline, verifies its audit
chain, and every command it prints afterwards works."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keepstone.cli import app


def run_demo(cwd: Path, store: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("KEEPSTONE_DEMO_STORE", None)
    if store is not None:
        env["KEEPSTONE_DEMO_STORE"] = store
    return subprocess.run(
        [sys.executable, "-m", "keepstone.demo"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_demo_runs_on_memory(tmp_path: Path) -> None:
    out = run_demo(tmp_path, "memory://")
    assert out.returncode == 0, out.stderr
    assert "graph == replay: True" in out.stdout
    assert "audit chain: verified" in out.stdout
    assert "doctor: healthy" in out.stdout


def printed_commands(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if " --store " in line]


def check_ui_command(command: str, cwd: Path) -> None:
    proc = subprocess.Popen(
        [*shlex.split(command), "--port", "0"], cwd=cwd, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("keepstone ui: http://127.0.0.1:"), line
        with urllib.request.urlopen(line.split(": ", 1)[1].strip() + "runs", timeout=10) as page:
            assert page.status == 200 and "nightly-digest" in page.read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_demo_on_sqlite_crashes_resumes_and_its_commands_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run_demo(tmp_path, None)
    assert out.returncode == 0, out.stderr
    assert "sqlite:///.keepstone/demo.db" in out.stdout
    assert "killed the pipeline (SIGKILL) mid-summarize: run running" in out.stdout
    assert "ran summarize, publish; status succeeded" in out.stdout
    assert "graph == replay: True" in out.stdout
    assert "audit chain: verified" in out.stdout
    assert "doctor: healthy" in out.stdout
    assert (tmp_path / ".keepstone" / "demo-snapshot.tar").is_file()

    commands = printed_commands(out.stdout)
    joined = "\n".join(commands)
    for wanted in ("runs list", "runs show", "runs logs", "artifacts", "memory paths", "doctor"):
        assert f" {wanted}" in joined
    assert any(c.endswith(" audit verify") for c in commands)

    # The first printed line exactly as a person would paste it...
    first = subprocess.run(shlex.split(commands[0]), cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    # The web inspector serves until stopped: start it as printed (on a free
    # port), load a page, stop it.
    assert commands[-1].endswith(" ui")
    check_ui_command(commands[-1], tmp_path)
    # ...and every other one through the same app, in-process (much faster).
    monkeypatch.chdir(tmp_path)
    for command in commands[:-1]:
        args = shlex.split(command)
        args = args[args.index("--store") :]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (command, result.output)


def test_demo_replaces_a_previous_demo_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_demo(tmp_path, None).returncode == 0
    again = run_demo(tmp_path, None)
    assert again.returncode == 0, again.stderr
    monkeypatch.chdir(tmp_path)
    runs = CliRunner().invoke(app, ["--store", "sqlite:///.keepstone/demo.db", "runs", "list"])
    assert runs.exit_code == 0 and runs.stdout.count("nightly-digest") == 1
