"""Store URLs as pages may show them: no password, no secret query value.

The rule is :mod:`keepstone.urls`' (the CLI's too); :func:`scrub` applies it
to any text a page is about to show.
"""

from __future__ import annotations

from keepstone.urls import redact as redact_url
from keepstone.urls import secrets_of

__all__ = ["redact_url", "scrub", "secrets_of"]


def scrub(text: str, url: str) -> str:
    """``text`` with the store URL's secrets replaced by ``***``."""
    if url and url in text:
        text = text.replace(url, redact_url(url))
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text
