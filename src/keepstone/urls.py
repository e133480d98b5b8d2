"""Store URLs: hiding their secrets (a pure helper every layer may import).

``postgresql://alice:pw@db/x`` shows as ``postgresql://alice:***@db/x``; a
query value whose key names a secret, password, key, token or credential
shows as ``***``; anything else, local paths included, is kept as written.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

SECRET_KEYS = ("secret", "password", "passwd", "key", "token", "credential")
"""Query keys whose values are secrets (matched as parts of the key, any case)."""


def redact(url: str) -> str:
    """``url`` with any password or secret query values replaced by ``***``;
    everything else is kept as written (``sqlite:///x.db`` stays as it is)."""
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
    secret = [_is_secret(k) for k, _ in pairs]
    query = parts.query
    if any(secret):
        query = urlencode(
            [(k, "***" if hide else v) for (k, v), hide in zip(pairs, secret, strict=True)],
            safe="*:/@",
        )
    if netloc == parts.netloc and query == parts.query:
        return url
    head, _, _ = url.partition("://")
    return (
        f"{head}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def secrets_of(url: str) -> list[str]:
    """The secret substrings of ``url`` (its password, secret query values),
    longest first, so that any text can be checked, or scrubbed, for them."""
    if "://" not in url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password or ""]
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if _is_secret(k)]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def _is_secret(key: str) -> bool:
    return any(s in key.lower() for s in SECRET_KEYS)
