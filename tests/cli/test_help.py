"""Every command and option has help text; --version; the console script."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

import keepstone
from keepstone.cli import app


def walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += walk(sub, [*path, name])
    return found


TREE = walk(typer.main.get_command(app), [])


def test_the_tree_has_every_command_of_the_brief() -> None:
    names = {" ".join(path) for path, _ in TREE}
    expected = {
        "init",
        "runs list",
        "runs show",
        "runs logs",
        "artifacts list",
        "artifacts show",
        "artifacts get",
        "artifacts put",
        "artifacts history",
        "artifacts search",
        "artifacts related",
        "memory profiles",
        "memory nodes",
        "memory edges",
        "memory paths",
        "memory events",
        "memory replay",
        "audit list",
        "audit verify",
        "export",
        "import",
        "doctor",
        "retention plan",
        "retention apply",
        "gc",
    }
    assert expected <= names


@pytest.mark.parametrize(
    "path", [p for p, _ in TREE], ids=[" ".join(p) or "keepstone" for p, _ in TREE]
)
def test_every_command_and_option_has_help(path: list[str]) -> None:
    command = dict((tuple(p), c) for p, c in TREE)[tuple(path)]
    assert (command.help or "").strip(), f"command {path} has no help text"
    for param in command.params:
        if param.name == "help":
            continue
        assert (getattr(param, "help", None) or "").strip(), f"{path}: {param.name} has no help"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"keepstone {keepstone.__version__}"


def test_no_arguments_shows_help() -> None:
    result = CliRunner().invoke(app, [])
    assert "Usage:" in result.output and "runs" in result.output


def test_real_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "keepstone.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"keepstone {keepstone.__version__}"
