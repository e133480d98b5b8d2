"""The keepstone command: help text on every command, --version."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

import keepstone
from keepstone.cli import app


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"keepstone {keepstone.__version__}"


def test_every_command_has_help_text() -> None:
    import typer.main

    group = typer.main.get_command(app)
    assert group.help
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"command {name} has no help text"
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0, name


def test_real_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "keepstone.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"keepstone {keepstone.__version__}"
