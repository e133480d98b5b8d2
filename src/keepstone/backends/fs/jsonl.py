"""JSONL files: scanning with damage detection, and checked reads of lines.

A line is committed when its ``\\n`` is written. Scanning a file yields each
complete line that parses as a row of its table; a complete line that does
not is *malformed* (reported with its line number, skipped, the lines around
it still read); trailing bytes without ``\\n`` are a *torn tail* (reported,
never returned as a record).

Reads go by offset (the index says where each line is), a run of adjacent
lines with one ``pread``, and check what they got: the byte before the run
and the last byte of every line are ``\\n``, and the run's first and last
lines hold their ``seq``. A file edited behind keepstone's back (a line made
longer or shorter shifts everything after it) fails that check and is
re-scanned instead of being misread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from keepstone.engine.spi import Table

CHUNK = 4 << 20


@dataclass(slots=True)
class Damage:
    """A malformed line or a torn tail found while scanning."""

    kind: str
    """``malformed_line`` or ``torn_tail``."""
    line: int
    offset: int
    message: str


@dataclass(slots=True)
class Scan:
    """What a scan of one JSONL file found."""

    size: int = 0
    ends_with_newline: bool = True
    damage: list[Damage] = field(default_factory=list)


def row_problem(table: Table, row: Any) -> str | None:
    """Why ``row`` is not a row of ``table`` (``None`` when it is)."""
    if not isinstance(row, dict):
        return f"a line of {table.name} must be a JSON object"
    seq = row.get("seq")
    if table.seq and (not isinstance(seq, int) or isinstance(seq, bool)):
        return f"a line of {table.name} must have an integer seq"
    missing = [k for k in table.key if k not in row]
    if missing:
        return f"a line of {table.name} lacks its key field(s) {', '.join(missing)}"
    return None


def scan_lines(
    fd: int, table: Table, result: Scan, limit: int | None = None
) -> Iterator[tuple[int, int, int, dict[str, Any]]]:
    """Yield ``(line number, offset, length with newline, row)`` of every valid line.

    ``result`` collects the size, damage and whether the file ends with a
    newline. ``limit`` reads only that many bytes (what the index knows of).
    """
    end = os.fstat(fd).st_size if limit is None else limit
    result.size = end
    offset = 0
    number = 0
    carry = b""
    carry_at = 0
    while offset < end:
        chunk = os.pread(fd, min(CHUNK, end - offset), offset)
        if not chunk:
            result.size = offset
            break
        data = carry + chunk if carry else chunk
        base = carry_at if carry else offset
        offset += len(chunk)
        start = 0
        while True:
            stop = data.find(b"\n", start)
            if stop < 0:
                break
            number += 1
            text = data[start:stop]
            try:
                row = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                result.damage.append(
                    Damage("malformed_line", number, base + start, f"not JSON ({exc})")
                )
            else:
                problem = row_problem(table, row)
                if problem is None:
                    yield number, base + start, stop + 1 - start, row
                else:
                    result.damage.append(Damage("malformed_line", number, base + start, problem))
            start = stop + 1
        carry = data[start:]
        carry_at = base + start
    if carry:
        result.ends_with_newline = False
        result.damage.append(
            Damage(
                "torn_tail",
                number + 1,
                carry_at,
                f"{len(carry)} bytes after the last newline (a write cut short)",
            )
        )


def line_ok(data: bytes, start: int, stop: int, seq: int | None) -> bool:
    """Whether ``data[start:stop]`` is a whole line holding ``seq``."""
    if stop <= start or data[stop - 1] != 0x0A:
        return False
    if seq is None:
        return True
    marker = b'"seq":%d' % seq
    at = data.find(marker, start, stop)
    while at >= 0:
        after = data[at + len(marker) : at + len(marker) + 1]
        if after in (b",", b"}"):
            return True
        at = data.find(marker, at + 1, stop)
    return False
