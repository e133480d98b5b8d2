"""The root ``keepstone`` app: global options, opening the store, failures.

Every command is a thin shell over the public API: it parses its options,
calls :func:`run_with_store` with an ``async`` body that uses
``keepstone.open(...)``'s :class:`~keepstone.Store`, and prints the result
with :mod:`keepstone.cli.output`. A :class:`~keepstone.StorageError` becomes
``error [code]: message`` on stderr and exit status 1 (usage errors exit 2);
``--debug`` adds the traceback. The store URL's secrets never reach output.
"""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import typer

import keepstone
from keepstone.errors import StorageError
from keepstone.store import Store
from keepstone.urls import redact

T = TypeVar("T")

DEFAULT_STORE = "sqlite:///.keepstone/store.db"
"""The store used when neither ``--store`` nor ``$KEEPSTONE_STORE`` is given."""

STORE_HELP = (
    "The store URL: sqlite:///path/store.db, memory://, postgresql://..., or a bare "
    "directory path (the JSON/JSONL workspace backend). Default: $KEEPSTONE_STORE, "
    f"else {DEFAULT_STORE} (the embedded SQLite store in ./.keepstone/)."
)

app = typer.Typer(
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
        False, "--debug", help="Show the Python traceback when a command fails."
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
    ctx.obj = CliState(store_url=store, debug=debug)


def state(ctx: typer.Context) -> CliState:
    """The root options of this invocation."""
    found = ctx.find_object(CliState)
    if found is None:  # a command invoked without the root callback (tests)
        return CliState(os.environ.get("KEEPSTONE_STORE") or DEFAULT_STORE, False)
    return found


# --------------------------------------------------------------------------- locations


def local_path(url: str) -> Path | None:
    """Where a store of ``url`` lives on this machine, when it is a local file
    or directory (``sqlite://``, ``file://`` or a bare path), else ``None``."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return Path(url)
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
        fail(st, exc.code, message)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:
        fail(
            st,
            "internal",
            f"{type(exc).__name__}: {exc}" + ("" if st.debug else " (rerun with --debug)"),
        )


def fail(st: CliState, code: str, message: str) -> NoReturn:
    """Print ``error [code]: message`` (and, with ``--debug``, the traceback)
    to stderr and exit with status 1."""
    if st.debug and sys.exc_info()[0] is not None:
        sys.stderr.write(scrub(traceback.format_exc(), st.store_url))
    sys.stderr.write(f"error [{code}]: {scrub(message, st.store_url)}\n")
    raise typer.Exit(1)


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
