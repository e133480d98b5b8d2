"""``keepstone ui``: a local, read-only web inspector over the public API.

Install with the ``ui`` extra (``pip install 'keepstone[ui]'``) and run
``keepstone ui``. :func:`create_app` builds the ASGI app for an open store
or a store URL; everything it shows comes from ``keepstone.open(...)``'s
public ports and services.
"""

from __future__ import annotations

from keepstone.ui.app import create_app

__all__ = ["create_app"]
