"""Store URLs as pages may show them: no password, no secret query value.

The same contract as the CLI's: ``postgresql://alice:pw@db/x`` shows as
``postgresql://alice:***@db/x``; a query value whose key names a secret,
password, key or token shows as ``***``; anything else, including local
paths, is kept as written. Kept here (not imported from the store module)
so the UI depends only on the public API.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

_SECRET_KEYS = ("secret", "password", "passwd", "key", "token", "credential")


def redact_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***``."""
    if "://" not in url:
        return url  # a bare path holds no credentials
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable store URL)"
    netloc = parts.netloc
    if "@" in netloc:
        creds, _, host = netloc.rpartition("@")
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    hide = [any(s in k.lower() for s in _SECRET_KEYS) for k, _ in pairs]
    query = parts.query
    if any(hide):
        query = urlencode(
            [(k, "***" if h else v) for (k, v), h in zip(pairs, hide, strict=True)],
            safe="*:/@",
        )
    if netloc == parts.netloc and query == parts.query:
        return url
    head = url.partition("://")[0]
    return (
        f"{head}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def secrets_of(url: str) -> list[str]:
    """The secret substrings of ``url`` (password, secret query values), so
    that a page can be checked, or scrubbed, for them."""
    if "://" not in url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password or ""]
    found += [
        v
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if any(s in k.lower() for s in _SECRET_KEYS)
    ]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with the store URL's secrets replaced by ``***``."""
    if url and url in text:
        text = text.replace(url, redact_url(url))
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text
