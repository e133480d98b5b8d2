"""The ``keepstone`` command line: a thin shell over the public API."""

from __future__ import annotations

import typer

import keepstone

app = typer.Typer(
    name="keepstone",
    help="keepstone: a durable, local-first, auditable store for AI pipelines and agents.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"keepstone {keepstone.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print keepstone's version and exit.",
    ),
) -> None:
    """keepstone keeps runs, artifacts, logs, memory and an audit chain."""


@app.command()
def backends() -> None:
    """List the store URL schemes this installation knows."""
    from keepstone.store import _known_backends

    for scheme, target in sorted(_known_backends().items()):
        typer.echo(f"{scheme:12} {target}")


def main() -> None:
    """Console-script entry point."""
    app()
