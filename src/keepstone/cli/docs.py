"""Render ``docs/cli.md`` from the command tree: every command's real ``--help``.

The help is rendered in plain text (the same text ``--help`` shows, without
rich's boxes and colours) at a fixed width, so the page is the same on every
machine. ``scripts/gen_cli_docs.py`` writes it; a test fails when it is stale.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer
import typer.main

from keepstone.cli import app

WIDTH = 88

INTRO = """\
# The keepstone command line

<!-- Generated from `keepstone --help` by scripts/gen_cli_docs.py: do not edit by hand.
     Run `python scripts/gen_cli_docs.py` after changing a command. -->

`keepstone` is a thin shell over the Python API: every command opens the store,
calls the API and prints the result.

- **Which store.** `--store URL` (before the command) or `$KEEPSTONE_STORE`; by
  default `sqlite:///.keepstone/store.db`, the embedded SQLite store in
  `./.keepstone/`. A bare directory path means the JSON/JSONL workspace backend.
  `keepstone init` creates a store; the other commands refuse a local store that
  does not exist (rather than silently creating an empty one), except `import`,
  which creates its target.
- **For scripts.** Every command that lists or shows something takes `--json` and
  then prints exactly one JSON document on stdout, with sorted keys, records in
  the same shape as the Python API's `model_dump(mode="json")`, and lists as
  `{"items": [...], "next_cursor": ...}` (pass `--cursor` back for the next page).
  `runs logs --json` prints JSON Lines, one log line per line. Progress bars
  and spinners go to stderr, and only when it is a terminal.
- **Failures.** A failure prints `error [code]: message` on stderr and exits with
  status 1; the codes are `keepstone.StorageError`'s (`not_found`, `conflict`,
  `invalid`, `integrity`, `corrupt`, `review_required`, ...). Checks that find
  a problem (`audit verify`, `doctor`, `memory replay`) print their findings and
  exit 1 with `error [corrupt]`. Usage errors exit 2. `--debug` adds the Python
  traceback. Passwords and secret query values of the store URL never appear
  in output.
- **Review.** Destructive actions (`doctor --repair`, `retention apply`, `gc`)
  need `--approve 'who: why'`; without it they are refused with
  `review_required`, and the refusal is itself audited.
- **Naming things.** An ARTIFACT is an id or `COLLECTION/NAME`; a PROFILE is an
  id or a profile's unique name.
"""


def _walk(
    command: Any,  # a TyperCommand or TyperGroup (typer's vendored click types)
    path: list[str],
    parent: typer.Context | None,
) -> Iterator[tuple[list[str], str]]:
    command.rich_markup_mode = None  # plain --help text: no boxes, no colours
    ctx = typer.Context(
        command,
        info_name=path[-1],
        parent=parent,
        terminal_width=WIDTH,
        max_content_width=WIDTH,
    )
    yield path, str(command.get_help(ctx))
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, [*path, name], ctx)


def commands() -> Iterator[tuple[list[str], str]]:
    """Every command (groups included) as ``(["keepstone", "runs", "list"], help)``."""
    yield from _walk(typer.main.get_command(app), ["keepstone"], None)


def _anchor(path: list[str]) -> str:
    return "-".join(path)


def render_markdown() -> str:
    """The whole of ``docs/cli.md``."""
    found = list(commands())
    out = [INTRO, "## Commands\n"]
    for path, _ in found[1:]:
        indent = "  " * (len(path) - 2)
        out.append(f"{indent}- [`{' '.join(path[1:])}`](#{_anchor(path)})")
    out.append("")
    for path, help_text in found:
        out.append(f"## {' '.join(path)}\n")
        out.append("```text")
        out.append(help_text.rstrip())
        out.append("```\n")
    return "\n".join(out).rstrip() + "\n"
