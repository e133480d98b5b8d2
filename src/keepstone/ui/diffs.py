"""Line diffs of text, for artifact revisions and run snapshots.

The result is a list of lines tagged ``same``/``add``/``del``/``gap``: the
template shows each as text in a row with a class, so content never
becomes markup. Large inputs are refused with a reason instead of making a
page slow.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

MAX_DIFF_CHARS = 400_000
MAX_DIFF_LINES = 8_000


@dataclass(frozen=True)
class DiffLine:
    kind: str
    old: int | None
    new: int | None
    text: str


@dataclass(frozen=True)
class Diff:
    lines: list[DiffLine]
    added: int
    removed: int
    too_large: str | None = None


def as_text(data: bytes) -> str | None:
    """``data`` as UTF-8 text, or ``None`` for binary content."""
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def text_diff(old: str, new: str, context: int = 3) -> Diff:
    if len(old) + len(new) > MAX_DIFF_CHARS:
        return Diff([], 0, 0, f"too large to diff here ({len(old) + len(new):,} characters)")
    a, b = old.splitlines(), new.splitlines()
    if len(a) + len(b) > MAX_DIFF_LINES:
        return Diff([], 0, 0, f"too large to diff here ({len(a) + len(b):,} lines)")
    out: list[DiffLine] = []
    added = removed = 0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        if out:
            out.append(DiffLine("gap", None, None, "…"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [DiffLine("same", i1 + k + 1, j1 + k + 1, a[i1 + k]) for k in range(i2 - i1)]
                continue
            if tag in ("replace", "delete"):
                out += [DiffLine("del", i1 + k + 1, None, a[i1 + k]) for k in range(i2 - i1)]
                removed += i2 - i1
            if tag in ("replace", "insert"):
                out += [DiffLine("add", None, j1 + k + 1, b[j1 + k]) for k in range(j2 - j1)]
                added += j2 - j1
    return Diff(out, added, removed)


def json_diff(old: Any, new: Any) -> Diff:
    """A line diff of two JSON values, pretty-printed with sorted keys."""

    def text(value: Any) -> str:
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)

    return text_diff(text(old), text(new))
