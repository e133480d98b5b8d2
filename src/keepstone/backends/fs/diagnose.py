"""A full scan of a workspace's files for damage (what ``FsEngine.diagnose`` reports).

Each finding is a dict: ``code`` (one of the doctor's codes), ``severity``,
``file`` (relative to the workspace), ``line`` (1-based, or ``None``) and
``message``. The scan reads every record and JSONL file; it runs under the
workspace lock so that a commit in progress is not mistaken for damage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from keepstone.backends.fs import layout
from keepstone.backends.fs.jsonl import Scan, scan_lines
from keepstone.backends.fs.state import record_files, stream_files
from keepstone.schemas._base import SCHEMA_VERSION

if TYPE_CHECKING:
    from keepstone.backends.fs.workspace import Workspace

Finding = dict[str, Any]


def finding(
    code: str, file: str, line: int | None, message: str, severity: str = "error"
) -> Finding:
    return {"code": code, "severity": severity, "file": file, "line": line, "message": message}


def _version_problem(row: Any) -> str | None:
    version = row.get("schema_version") if isinstance(row, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return (
            f"written with schema version {version}; this keepstone reads up to "
            f"{SCHEMA_VERSION}: upgrade keepstone"
        )
    return None


def diagnose(ws: Workspace) -> list[Finding]:
    """Everything wrong with the files of ``ws`` (caller holds lock and mutex)."""
    root = ws.root
    found: list[Finding] = [
        finding("storage_integrity", layout.JOURNAL, d.line, f"journal line {d.message}")
        for d in ws.journal.damage
    ]
    known_dirs = {layout.BLOBS, layout.TMP}
    for table in layout.TABLES.values():
        known_dirs.add(table.name)
        if table.seq:
            for rel in stream_files(root, table):
                found += _scan_stream(root, rel, table)
        else:
            for rel in record_files(root, table):
                found += _check_record(root, rel, table)
    found += _missing_files(ws)
    found += _check_blobs(root)
    for name in sorted(os.listdir(root)):
        if name in layout.CONTROL_FILES or name in known_dirs:
            continue
        if name.endswith(".jsonl") and name.removesuffix(".jsonl") in layout.TABLES:
            continue
        found.append(
            finding("storage_integrity", name, None, "not part of the workspace layout", "warning")
        )
    return found


def _scan_stream(root: Path, rel: str, table: Any) -> list[Finding]:
    out: list[Finding] = []
    result = Scan()
    fd = os.open(root / rel, os.O_RDONLY)
    try:
        for number, _, _, row in scan_lines(fd, table, result):
            problem = _version_problem(row)
            if problem is not None:
                out.append(finding("unknown_schema_version", rel, number, problem))
            elif rel != layout.stream_path(table, row):
                out.append(
                    finding("storage_integrity", rel, number, "the line belongs in another file")
                )
    finally:
        os.close(fd)
    for damage in result.damage:
        code = damage.kind
        message = damage.message
        if code == "torn_tail":
            message += "; it is not a record and is never read as one"
        out.append(finding(code, rel, damage.line, message))
    return out


def _check_record(root: Path, rel: str, table: Any) -> list[Finding]:
    try:
        row = orjson.loads((root / rel).read_bytes())
    except orjson.JSONDecodeError as exc:
        return [finding("malformed_record", rel, 1, f"not JSON ({exc})")]
    except OSError as exc:
        return [finding("storage_integrity", rel, None, f"unreadable ({exc})")]
    if not isinstance(row, dict):
        return [finding("malformed_record", rel, 1, "not a JSON object")]
    problem = _version_problem(row)
    if problem is not None:
        return [finding("unknown_schema_version", rel, 1, problem)]
    try:
        expected = layout.record_path(table, row)
    except (KeyError, TypeError):
        expected = None
    if expected != rel:
        return [
            finding(
                "storage_integrity",
                rel,
                None,
                f"the record's key places it at {expected}, not here",
            )
        ]
    return []


def _missing_files(ws: Workspace) -> list[Finding]:
    out: list[Finding] = []
    for name, index in sorted(ws.state.tables.items()):
        if index.stream:
            continue
        for key, entry in index.rows.items():
            if not (ws.root / entry.file).is_file():
                out.append(
                    finding(
                        "storage_integrity",
                        entry.file,
                        None,
                        f"{name} {key!r} is indexed but its file is missing",
                    )
                )
    for rel in sorted(ws.state.files):
        if not (ws.root / rel).is_file():
            out.append(finding("storage_integrity", rel, None, "a JSONL file is missing"))
    return out


def _check_blobs(root: Path) -> list[Finding]:
    """Files under ``blobs/`` that are not named like a blob. (Whether a blob's
    bytes match its digest is the doctor's check: it knows which blobs are
    referenced and proposes the repair.)"""
    out: list[Finding] = []
    base = root / layout.BLOB_ROOT
    if not base.is_dir():
        return out
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(files):
            rel = (Path(folder) / name).relative_to(root).as_posix()
            if layout.blob_path("sha256:" + name) != rel:
                out.append(finding("storage_integrity", rel, None, "not a blob file", "warning"))
    return out
