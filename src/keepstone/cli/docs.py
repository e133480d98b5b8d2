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

- **Which store.** `--store URL` (before or after the command) or
  `$KEEPSTONE_STORE`; by default `sqlite:///.keepstone/store.db`, the embedded
  SQLite store in `./.keepstone/`. A bare path ending in `.db`, `.sqlite` or
  `.sqlite3` is a SQLite file; any other bare path is a JSON/JSONL workspace
  directory; a path that is not what its name says (an existing plain file
  without one of those suffixes, a directory named `*.db`) is refused with a
  `config` error naming the URL to write. `keepstone init` creates a store;
  the other commands refuse a local store that does not exist (rather than
  silently creating an empty one), except `import`, which creates its target.
- **Lists.** Listings show the newest `--limit` items (100 by default), newest
  first. `--oldest-first` lists in the API's order (creation or sequence
  order), a page at a time; `--cursor` continues it from the hint printed on
  stderr. Newest first reads the matching listing to its end (the audit
  chain and memory events only read back as far as they show); on a very
  large store `--oldest-first` pages without doing so. Runs show how long
  they took.
- **For scripts.** With `--json` every command prints exactly one JSON document
  on stdout, with sorted keys and records in the same shape as the Python
  API's `model_dump(mode="json")`; a listing is a JSON array. `runs logs
  --json` is an array too; `runs logs --jsonl` prints JSON Lines, one log line
  object per line, and is the form to use with `--follow`. Hints, progress
  bars and spinners go to stderr (bars and spinners only when it is a
  terminal).
- **Failures and exit status.** `0`: success. `1`: a failure, printed as
  `error [code]: message` on stderr, with `keepstone.StorageError`'s codes
  (`not_found`, `conflict`, `invalid`, `integrity`, `corrupt`,
  `review_required`, `config`, ...), or a check that found a problem
  (`audit verify`, `doctor`, `memory replay` print their findings, then fail
  with `corrupt`). `2`: a usage error (an unknown option, a bad value).
  `130`: interrupted (Ctrl-C). Under `--json` (or `--jsonl`) a failure is one
  JSON object on stderr instead, `{"code": ..., "message": ..., "details":
  {...}}`, with the same exit status; usage errors have the code `usage`.
  `--debug` adds the Python traceback. Passwords and secret query values of
  the store URL never appear in output.
- **What is shown is inert.** Stored strings (run names, log lines, metadata)
  are printed with their control characters escaped (`\\x1b`, `\\n`,
  `\\u202e`) and are never read as markup, so a stored value cannot clear
  the screen or restyle the output; `--json` keeps every value exact.
- **Review.** Destructive actions (`doctor --repair`, `retention apply`, `gc`)
  need `--approve 'who: why'`; without it they are refused with
  `review_required`, and the refusal is itself audited.
- **Naming things.** An ARTIFACT is an id, `COLLECTION/NAME`, or a name as
  `artifacts list` shows it (when one collection has it); a PROFILE is an id
  or a profile's unique name; a `--path` is a path id or its name in the
  profile. `audit list --action` takes the audit's actions
  (`lifecycle.abandon_path`) or the memory event kinds they record
  (`path.abandoned`).
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
