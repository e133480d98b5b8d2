"""The filesystem backend: an inspectable JSON/JSONL workspace directory.

URLs:

* ``file:///absolute/path/to/workspace`` (RFC 8089: three slashes, absolute);
  ``file://localhost/absolute/path`` means the same;
* a bare path, absolute or relative (``./ws``, ``/data/ws``), given to
  :func:`keepstone.open` without any ``scheme://``.

``file://relative/path`` is refused (the part after ``//`` is a host name in a
``file`` URL): write a relative workspace as a bare path. The directory is
created if its parent exists.

Options (URL query string or keyword arguments of :func:`keepstone.open`):
``checkpoint_bytes`` — journal size that triggers a checkpoint (default 16 MiB).

The layout is versioned and documented in ``docs/storage-layout.md``; the
engine is :class:`~keepstone.backends.fs.engine.FsEngine`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from keepstone.engine.spi import RecordEngine
from keepstone.errors import StorageError
from keepstone.version import __version__

OPTIONS = ("checkpoint_bytes",)


def parse_url(url: str, options: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The workspace directory and the options of a ``file://`` URL or bare path.

    Raises:
        StorageError: ``config`` for a URL with a host, without a path, or with
            an unknown or malformed option.
    """
    merged: dict[str, Any] = {}
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme.lower() != "file":
            raise StorageError("config", f"not a file:// URL: {url!r}", {"url": url})
        if parts.netloc not in ("", "localhost"):
            raise StorageError(
                "config",
                f"a file URL names an absolute path: file:///abs/path (got {url!r}); "
                "for a relative workspace pass a bare path such as './workspace'",
                {"url": url},
            )
        raw = unquote(parts.path)
        merged.update(parse_qsl(parts.query, keep_blank_values=True))
    else:
        raw = url
    if not raw or raw.strip() == "":
        raise StorageError("config", f"a workspace URL needs a path (got {url!r})", {"url": url})
    merged.update(options)
    unknown = sorted(set(merged) - set(OPTIONS))
    if unknown:
        raise StorageError(
            "config",
            f"unknown file option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}",
            {"unknown": unknown, "known": list(OPTIONS)},
        )
    opts: dict[str, Any] = {}
    if "checkpoint_bytes" in merged:
        value = merged["checkpoint_bytes"]
        try:
            if isinstance(value, bool):
                raise ValueError(value)
            opts["checkpoint_bytes"] = int(value)
            if opts["checkpoint_bytes"] < 0:
                raise ValueError(value)
        except (TypeError, ValueError) as exc:
            raise StorageError(
                "config",
                f"checkpoint_bytes is a number of bytes >= 0 (got {value!r})",
                {"checkpoint_bytes": str(value)},
            ) from exc
    return Path(raw), opts


async def open_engine(url: str, *, options: dict[str, Any]) -> RecordEngine:
    """Open (creating if needed) the workspace at ``url``."""
    from keepstone.backends.fs.engine import FsEngine

    path, opts = parse_url(url, options)
    return await FsEngine.open(path, version=__version__, **opts)


__all__ = ["open_engine", "parse_url"]
