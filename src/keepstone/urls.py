"""Store URLs: hiding their secrets (a pure helper every layer may import)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit


def redact(url: str) -> str:
    """``url`` with any password or secret query values replaced by ``***``;
    everything else is kept as written (``sqlite:///x.db`` stays as it is)."""
    if "://" not in url:
        return url  # a bare path holds no credentials
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        creds, _, host = netloc.rpartition("@")
        user = creds.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in creds else f"{user}@{host}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret = [any(s in k.lower() for s in ("secret", "password", "key", "token")) for k, _ in pairs]
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
