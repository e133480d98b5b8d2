"""The ``keepstone`` command line: a thin shell over the public API.

The root app and its shared helpers live in :mod:`keepstone.cli.app`; each
area has its module (``runs``, ``artifacts``, ``memory``, ``audit``,
``snapshots``, ``doctor``, ``retention``, ``gc``, ``store_cmds``), assembled
here. ``docs/cli.md`` is generated from this tree by ``scripts/gen_cli_docs.py``.
"""

from __future__ import annotations

from keepstone.cli import (
    artifacts,
    audit,
    doctor,
    gc,
    memory,
    retention,
    runs,
    snapshots,
    store_cmds,
    threads,
    ui,
)
from keepstone.cli.app import app

app.command("init")(store_cmds.init)
app.add_typer(runs.app, name="runs")
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(memory.app, name="memory")
app.add_typer(audit.app, name="audit")
app.command("export")(snapshots.export)
app.command("import")(snapshots.import_)
app.command("doctor")(doctor.doctor)
app.add_typer(retention.app, name="retention")
app.command("gc")(gc.gc)
app.command("backends")(store_cmds.backends)
app.add_typer(threads.app, name="threads")
app.command("ui")(ui.ui)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
