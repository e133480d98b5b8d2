"""A full scan of a workspace's files for damage (what ``FsEngine.diagnose`` reports).

Each finding is a dict: ``code`` (one of the doctor's codes), ``severity``,
``file`` (relative to the workspace), ``line`` (1-based, or ``None``) and
``message``. The scan reads every record and JSONL file; it runs under the
workspace lock so that a commit in progress is not mistaken for damage.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import orjson

from keepstone.backends.fs import layout
from keepstone.backends.fs.jsonl import Scan, scan_lines
from keepstone.backends.fs.state import record_files, stream_files
from keepstone.backends.fs.tree import Tree
from keepstone.errors import StorageError
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
    tree = ws.tree
    found: list[Finding] = [
        finding("storage_integrity", layout.JOURNAL, d.line, f"journal line {d.message}")
        for d in ws.journal.damage
    ]
    links = dict(tree.links())
    found += [
        finding(
            "storage_integrity",
            rel,
            None,
            f"{what}: keepstone never follows links or opens special files in a "
            "workspace, so reads and writes of it are refused; replace it with the "
            "file or directory it should be, or remove it",
        )
        for rel, what in sorted(links.items())
    ]
    known_dirs = {layout.BLOBS, layout.TMP}
    for table in layout.TABLES.values():
        known_dirs.add(table.name)
        if table.seq:
            for rel in stream_files(tree, table):
                if rel not in links:
                    found += _scan_stream(tree, rel, table)
        else:
            for rel in record_files(tree, table):
                if rel not in links:
                    found += _check_record(tree, rel, table)
    found += _missing_files(ws, links)
    found += _check_blobs(tree)
    for item in tree.entries(""):
        name = item.name
        if name in layout.CONTROL_FILES or name in known_dirs or name in links:
            continue
        if name.endswith(".jsonl") and name.removesuffix(".jsonl") in layout.TABLES:
            continue
        found.append(
            finding("storage_integrity", name, None, "not part of the workspace layout", "warning")
        )
    return found


def _scan_stream(tree: Tree, rel: str, table: Any) -> list[Finding]:
    out: list[Finding] = []
    result = Scan()
    try:
        fd = tree.open(rel, os.O_RDONLY)
    except (OSError, StorageError) as exc:
        return [finding("storage_integrity", rel, None, f"unreadable ({exc})")]
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


def _check_record(tree: Tree, rel: str, table: Any) -> list[Finding]:
    try:
        row = orjson.loads(tree.read(rel))
    except orjson.JSONDecodeError as exc:
        return [finding("malformed_record", rel, 1, f"not JSON ({exc})")]
    except (OSError, StorageError) as exc:
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


def _exists(tree: Tree, rel: str) -> bool:
    try:
        return tree.size(rel) is not None
    except StorageError:
        return True  # there, but a link or special file: reported as such


def _missing_files(ws: Workspace, links: dict[str, str]) -> list[Finding]:
    out: list[Finding] = []
    for name, index in sorted(ws.state.tables.items()):
        if index.stream:
            continue
        for key, entry in index.rows.items():
            if entry.file not in links and not _exists(ws.tree, entry.file):
                out.append(
                    finding(
                        "storage_integrity",
                        entry.file,
                        None,
                        f"{name} {key!r} is indexed but its file is missing",
                    )
                )
    for rel in sorted(ws.state.files):
        if rel not in links and not _exists(ws.tree, rel):
            out.append(finding("storage_integrity", rel, None, "a JSONL file is missing"))
    return out


def _check_blobs(tree: Tree) -> list[Finding]:
    """Files under ``blobs/`` that are not named like a blob. (Whether a blob's
    bytes match its digest is the doctor's check: it knows which blobs are
    referenced and proposes the repair; links are reported on their own.)"""
    out: list[Finding] = []
    try:
        files = list(tree.files(layout.BLOB_ROOT))
    except StorageError:
        return out  # a link on the way: reported with the links
    for rel in files:
        name = rel.rpartition("/")[2]
        if layout.blob_path("sha256:" + name) != rel:
            out.append(finding("storage_integrity", rel, None, "not a blob file", "warning"))
    return out
