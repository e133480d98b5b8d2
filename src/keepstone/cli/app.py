"""The root ``keepstone`` app: global options, opening the store, failures.

Every command is a thin shell over the public API: it parses its options,
calls :func:`run_with_store` with an ``async`` body that uses
``keepstone.open(...)``'s :class:`~keepstone.Store`, and prints the result
with :mod:`keepstone.cli.output`.

Failures: a :class:`~keepstone.StorageError` becomes ``error [code]: message``
on stderr and exit status 1 (usage errors exit 2, Ctrl-C 130); ``--debug``
adds the traceback. Under ``--json`` (or ``--jsonl``) the failure is one JSON
object on stderr instead, ``{"code": ..., "message": ..., "details": ...}``,
with the same exit status (usage errors have the code ``usage``). The store
URL's secrets never reach output.

The global options ``--store`` and ``--debug`` may come before the command
or anywhere after it (``keepstone runs list --store my.db``):
:class:`KeepstoneGroup` moves them to the front before parsing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import typer
from typer.core import TyperGroup

import keepstone
from keepstone.cli.output import inert, json_text_of
from keepstone.errors import StorageError
from keepstone.store import Store
from keepstone.urls import redact

T = TypeVar("T")

DEFAULT_STORE = "sqlite:///.keepstone/store.db"
"""The store used when neither ``--store`` nor ``$KEEPSTONE_STORE`` is given."""

STORE_HELP = (
    "The store URL: sqlite:///path/store.db, memory://, postgresql://..., file:///dir, "
    "or a bare path: ending in .db, .sqlite or .sqlite3 it is a SQLite file, else a "
    "directory (the JSON/JSONL workspace backend). May also come after the command. "
    f"Default: $KEEPSTONE_STORE, else {DEFAULT_STORE} (the embedded SQLite store in "
    "./.keepstone/)."
)

UsageError: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
"""Click's usage error (typer's own copy of click, or click itself in older typers)."""

JSON_ERRORS = "keepstone.json_errors"
"""``ctx.meta`` key: the command line asked for JSON, so failures are JSON too."""

GLOBAL_FLAGS = ("--debug",)
GLOBAL_VALUED = ("--store",)


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with ``--store URL``, ``--store=URL`` and ``--debug`` moved
    to the front, wherever they were (up to a ``--``), so that they work
    after the command too. Their order among themselves is kept (the last
    ``--store`` wins)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in GLOBAL_FLAGS or any(arg.startswith(f"{o}=") for o in GLOBAL_VALUED):
            front.append(arg)
        elif arg in GLOBAL_VALUED and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _wants_json(args: list[str]) -> bool:
    head = args[: args.index("--")] if "--" in args else args
    return "--json" in head or "--jsonl" in head


def _plain_flags(command: Any) -> None:
    """Show flags without a ``<bool>`` value in the help (they take none:
    ``--debug``, not ``--debug=true``), in ``command`` and below it."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    original = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub)


class KeepstoneGroup(TyperGroup):
    """The root command: global options anywhere, JSON failures under ``--json``."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _plain_flags(self)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_global_options(list(args))
            ctx.meta[JSON_ERRORS] = _wants_json(args)
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            _usage_failure(ctx, exc)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            _usage_failure(ctx, exc)


def _usage_failure(ctx: Any, exc: Any) -> NoReturn:
    """Under ``--json``, a usage error as a JSON object on stderr (exit 2);
    otherwise click's usual message."""
    if not ctx.meta.get(JSON_ERRORS):
        raise exc
    where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
    write_error("usage", exc.format_message(), {"command": where})
    raise typer.Exit(2)


def write_error(code: str, message: str, details: dict[str, Any]) -> None:
    """A failure as one JSON object on stderr."""
    sys.stderr.write(
        json_text_of({"code": code, "message": message, "details": details}, indent=False) + "\n"
    )


app = typer.Typer(
    cls=KeepstoneGroup,
    name="keepstone",
    help=(
        "keepstone: a durable, local-first, auditable store for AI pipelines and agents. "
        "Look at runs, artifacts, logs, memory and the audit chain; export, import, "
        "diagnose and clean up a store."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass(frozen=True)
class CliState:
    """What the root options decided, shared with every command."""

    store_url: str
    debug: bool
    json_errors: bool = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"keepstone {keepstone.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    store: str = typer.Option(
        DEFAULT_STORE,
        "--store",
        envvar="KEEPSTONE_STORE",
        metavar="URL",
        help=STORE_HELP,
        show_envvar=True,
    ),
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show the Python traceback when a command fails (a flag: it takes no value).",
    ),
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print keepstone's version and exit.",
    ),
) -> None:
    """keepstone keeps runs, artifacts, logs, memory and an audit chain."""
    ctx.obj = CliState(store_url=store, debug=debug, json_errors=bool(ctx.meta.get(JSON_ERRORS)))


def state(ctx: typer.Context) -> CliState:
    """The root options of this invocation."""
    found = ctx.find_object(CliState)
    if found is None:  # a command invoked without the root callback (tests)
        return CliState(
            os.environ.get("KEEPSTONE_STORE") or DEFAULT_STORE,
            False,
            bool(ctx.meta.get(JSON_ERRORS)),
        )
    return found


# --------------------------------------------------------------------------- locations


def local_path(url: str) -> Path | None:
    """Where a store of ``url`` lives on this machine, when it is a local file
    or directory (``sqlite://``, ``file://`` or a bare path), else ``None``."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return Path(url)  # a SQLite file or a workspace directory, see keepstone.open
    parts = urlsplit(url)
    path = unquote(parts.path)
    if scheme.lower() == "sqlite":
        path = path[1:] if path.startswith("/") else path
        return Path(path) if path else None
    if scheme.lower() == "file":
        return Path(path) if path else None
    return None


def require_store(url: str) -> None:
    """Refuse to open a local store that does not exist (opening would create
    an empty one and hide a typo).

    Raises:
        StorageError: ``not_found``, saying how to create it.
    """
    path = local_path(url)
    if path is not None and not path.exists():
        shown = redact(url)
        raise StorageError(
            "not_found",
            f"no keepstone store at {shown}; create one with: keepstone --store {shown} init",
            {"store": shown},
        )


def prepare_location(url: str) -> None:
    """Create the parent directory of a local store, so opening can create it."""
    path = local_path(url)
    if path is not None:
        try:
            path.absolute().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                "config", f"cannot create {path.parent}: {exc.strerror or exc}", {}
            ) from exc


# --------------------------------------------------------------------------- running


def run_with_store(
    ctx: typer.Context, body: Callable[[Store], Awaitable[T]], *, create: bool = False
) -> T:
    """Open the ``--store``, run ``body(store)``, close it; report failures.

    Args:
        create: create the store if it does not exist (``init``, ``import``);
            otherwise a missing local store is a ``not_found`` failure.
    """
    st = state(ctx)

    async def main() -> T:
        if create:
            prepare_location(st.store_url)
        else:
            require_store(st.store_url)
        async with keepstone.open(st.store_url) as store:
            return await body(store)

    return run_async(ctx, main)


def run_async(ctx: typer.Context, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` on a fresh event loop, turning exceptions into
    ``error [code]: message`` and exit status 1."""
    st = state(ctx)

    async def wrapped() -> T:
        return await main()

    try:
        return asyncio.run(wrapped())
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except StorageError as exc:
        message = exc.message
        if exc.code == "review_required" and "--approve" not in message:
            message += "; on the command line: --approve 'who: why'"
        fail(st, exc.code, message, exc.details)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:
        fail(
            st,
            "internal",
            f"{type(exc).__name__}: {exc}" + ("" if st.debug else " (rerun with --debug)"),
        )


def fail(st: CliState, code: str, message: str, details: dict[str, Any] | None = None) -> NoReturn:
    """Report a failure on stderr and exit with status 1: ``error [code]:
    message`` (with ``--debug``, the traceback first), or under ``--json``
    one JSON object ``{"code", "message", "details"}``."""
    if st.debug and sys.exc_info()[0] is not None:
        sys.stderr.write(inert(scrub(traceback.format_exc(), st.store_url), newlines=True))
    if st.json_errors:
        write_error(code, scrub(message, st.store_url), _scrub_all(details or {}, st.store_url))
    else:
        sys.stderr.write(f"error [{code}]: {inert(scrub(message, st.store_url))}\n")
    raise typer.Exit(1)


def _scrub_all(value: Any, url: str) -> Any:
    if isinstance(value, str):
        return scrub(value, url)
    if isinstance(value, dict):
        return {k: _scrub_all(v, url) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_all(v, url) for v in value]
    return value


def scrub(text: str, url: str) -> str:
    """``text`` with the store URL and its password replaced by their
    redacted forms."""
    shown = redact(url)
    if not url or url == shown:
        return text
    text = text.replace(url, shown)
    parts = urlsplit(url)
    secrets = [parts.password or ""]
    plain = parse_qsl(parts.query, keep_blank_values=True)
    hidden = parse_qsl(urlsplit(shown).query, keep_blank_values=True)
    secrets += [
        value
        for (_, value), (_, shown_value) in zip(plain, hidden, strict=False)
        if value != shown_value
    ]
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
