"""``keepstone ui``: serve the read-only web inspector (the ``ui`` extra)."""

from __future__ import annotations

import secrets
import socket
import sys
import webbrowser
from typing import Annotated, Any

import typer

import keepstone
from keepstone.cli.app import CliState, require_store, run_async, state
from keepstone.errors import StorageError

DEFAULT_PORT = 8765


def _missing_extra() -> str | None:
    for module in ("starlette", "jinja2", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            return module
    return None


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StorageError(
            "unavailable",
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "choose another --port (--port 0 picks a free one)",
            {"host": host, "port": port},
        ) from exc
    sock.set_inheritable(True)
    return sock


def ui(
    ctx: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            metavar="URL",
            help="The store to show (default: the root --store, $KEEPSTONE_STORE, or the "
            "default store).",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on. Loopback by default; any other address also requires "
            "the random token printed at start on every request.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    ] = DEFAULT_PORT,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the inspector in the default web browser.")
    ] = False,
) -> None:
    """Serve a read-only web inspector of the store: runs, artifacts and their
    lineage, memory graphs and paths, the audit chain. Stop it with Ctrl-C."""
    root: CliState = state(ctx)
    url = store or root.store_url
    missing = _missing_extra()
    if missing is not None:
        typer.echo(
            f"error [config]: keepstone ui needs the 'ui' extra ({missing} is not installed): "
            "pip install 'keepstone[ui]'",
            err=True,
        )
        raise typer.Exit(1)

    from keepstone.ui.redact import redact_url
    from keepstone.ui.security import is_loopback

    loopback = is_loopback(host.strip("[]")) or host == "localhost"
    token = None if loopback else secrets.token_urlsafe(24)

    async def main() -> None:
        import uvicorn

        from keepstone.ui import create_app

        require_store(url)
        sock = _listen(host, port)
        async with keepstone.open(url) as opened:
            app = create_app(store=opened, token=token, loopback_only=loopback)
            bound = sock.getsockname()[1]
            shown_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
            address = f"http://{shown_host}:{bound}/" + (f"?token={token}" if token else "")

            class Server(uvicorn.Server):
                async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                    await super().startup(sockets)
                    if self.started:
                        _announce(address, redact_url(url), loopback)
                        if open_browser:
                            webbrowser.open(address)

            config: Any = uvicorn.Config(
                app, log_level="warning", lifespan="off", access_log=False, server_header=False
            )
            await Server(config).serve(sockets=[sock])

    run_async(ctx, main)


def _announce(address: str, shown_url: str, loopback: bool) -> None:
    print(f"keepstone ui: {address}", flush=True)
    print(f"  store {shown_url} (read-only); Ctrl-C to stop", flush=True)
    if not loopback:
        print(
            "  listening beyond this machine: every request needs the token above; "
            "the connection is plain HTTP (not encrypted)",
            flush=True,
        )
    sys.stdout.flush()
