"""What every response carries and every request must pass.

- Only ``GET`` and ``HEAD``: no endpoint can change the store (``405``).
- A strict Content-Security-Policy: scripts and styles only from this
  server's ``/static/`` files, no inline script or style, no eval, no
  framing, no form posts elsewhere, no fetches elsewhere.
- On loopback, the ``Host`` header must name a loopback address, so that a
  web page cannot reach the inspector through DNS rebinding.
- Bound to any other address, every request must carry the token printed at
  start: ``?token=`` once (answered with a cookie and a redirect that drops
  it from the address bar), then the cookie, or ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
COOKIE = "keepstone_ui_token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def _hostname(value: str) -> str:
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware enforcing the rules in the module docstring."""

    def __init__(self, app: ASGIApp, *, token: str | None = None, check_host: bool = False) -> None:
        self.app = app
        self.token = token
        self.check_host = check_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, "read-only: only GET and HEAD", [(b"allow", b"GET, HEAD")])
            return
        if self.check_host and not is_loopback(_hostname(headers.get("host", "")).lower()):
            await _plain(send, 421, "this inspector answers only on a loopback address")
            return
        if self.token is not None:
            given = _query_token(scope)
            if given is not None and hmac.compare_digest(given, self.token):
                await _redirect_with_cookie(send, scope, self.token)
                return
            if not self._authorised(headers):
                await _plain(
                    send,
                    401,
                    "this keepstone ui needs its token: open the address it printed at start",
                )
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _authorised(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), self.token):
            return True
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is no token
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value, self.token)


def _query_token(scope: Scope) -> str | None:
    raw: bytes = scope.get("query_string", b"")
    for key, value in parse_qsl(raw.decode("latin-1")):
        if key == "token":
            return value
    return None


async def _redirect_with_cookie(send: Send, scope: Scope, token: str) -> None:
    pairs = [
        (k, v)
        for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)
        if k != "token"
    ]
    location = scope.get("path", "/") + ("?" + urlencode(pairs) if pairs else "")
    cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode("latin-1")),
                (b"set-cookie", cookie.encode("latin-1")),
                (b"cache-control", b"no-store"),
                *HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _plain(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
                *HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
