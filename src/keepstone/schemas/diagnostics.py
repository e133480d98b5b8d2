"""What the doctor reports: one finding per problem, with a proposed repair."""

from __future__ import annotations

from typing import Literal

from keepstone.schemas._base import Model
from keepstone.schemas.audit import LifecycleAction

Severity = Literal["error", "warning", "info"]

DIAGNOSTIC_CODES: dict[str, str] = {
    "missing_edge_endpoint": "an edge refers to a node that does not exist",
    "orphaned_event": "an event belongs to a profile that does not exist",
    "unknown_schema_version": "a record was written by a newer keepstone",
    "malformed_record": "a stored record does not parse or does not match its schema",
    "malformed_line": "a JSONL line in the middle of a file is not a record",
    "torn_tail": "the last line of a JSONL file was cut short by a crash",
    "missing_blob": "a revision, snapshot or log reference points at bytes that are gone",
    "corrupt_blob": "stored bytes no longer match their digest",
    "dangling_reference": "a relationship, manifest or artifact names something that is gone",
    "broken_audit_chain": "an audit record was edited, removed or reordered",
    "tampered_record": "a stored record is not what the audit chain recorded "
    "(edited, added or removed behind keepstone's back)",
    "graph_differs_from_replay": "a profile's stored graph is not the replay of its events",
    "stale_run": "a run is still 'running' but shows no sign of life",
    "storage_integrity": "the storage engine's own integrity check failed",
}
"""Every code the doctor can report, with what it means."""


class Diagnostic(Model):
    """One finding.

    ``location`` says where (``table:key`` for records, ``file:line`` for
    files). ``repair`` is the lifecycle action that would fix it (applied
    through the review gate), or ``None`` when only a person can.
    """

    code: str
    severity: Severity
    location: str
    message: str
    repair: LifecycleAction | None = None


class DiagnosisReport(Model):
    """Everything the doctor found, in a stable order."""

    ok: bool
    checked: dict[str, int]
    diagnostics: list[Diagnostic]
