"""``keepstone doctor``: diagnose a store, repair it under review."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from keepstone.cli.app import run_with_store
from keepstone.cli.options import (
    ApproveOption,
    JsonOption,
    approval,
    duration_option,
    parse_duration,
)
from keepstone.cli.output import console, print_json, progress_bar, status_text, table
from keepstone.errors import StorageError
from keepstone.schemas.diagnostics import DiagnosisReport, Diagnostic
from keepstone.store import Store

_AREAS: list[tuple[str, str, list[tuple[str, str]]]] = [
    # (area, head table, [(table, what one row is), ...]) in the order people read them
    (
        "runs",
        "runs",
        [
            ("runs", "run"),
            ("snapshots", "snapshot"),
            ("manifests", "manifest"),
            ("log_lines", "log line"),
            ("log_refs", "sealed log"),
        ],
    ),
    (
        "artifacts",
        "artifacts",
        [
            ("artifacts", "artifact"),
            ("collections", "collection"),
            ("revisions", "revision"),
            ("relationships", "relationship"),
            ("changes", "change record"),
            ("artifact_text", "search text"),
        ],
    ),
    (
        "memory",
        "profiles",
        [
            ("profiles", "profile"),
            ("nodes", "node"),
            ("edges", "edge"),
            ("paths", "path"),
            ("events", "event"),
            ("activations", "activation record"),
            ("memory_heads", "graph head"),
        ],
    ),
    (
        "context",
        "packages",
        [("packages", "context package"), ("externals", "external reference")],
    ),
    ("audit", "audit", [("audit", "audit record")]),
    ("blobs", "blobs", [("blobs", "blob")]),
]
"""How the doctor's tables read in people's words: runs, artifacts, memory."""

WORDS: dict[str, str] = {
    "runs": "run",
    "snapshots": "run snapshot",
    "manifests": "run manifest",
    "log_lines": "log line",
    "log_refs": "sealed log",
    "artifacts": "artifact",
    "collections": "collection",
    "revisions": "artifact revision",
    "relationships": "artifact relationship",
    "changes": "artifact change record",
    "artifact_text": "artifact search text",
    "profiles": "memory profile",
    "nodes": "memory node",
    "edges": "memory edge",
    "paths": "conversation path",
    "events": "memory event",
    "activations": "memory activation record",
    "memory_heads": "memory graph head",
    "packages": "context package",
    "externals": "external reference",
    "audit": "audit record",
    "blobs": "blob",
}
"""What one stored row of each table is, in people's words."""


def _count(n: int, thing: str) -> str:
    plural = thing if n == 1 else (thing[:-1] + "ies" if thing.endswith("y") else thing + "s")
    return f"{n:,} {plural}"


def checked_words(checked: dict[str, int]) -> str:
    """The doctor's ``checked`` counts in people's words: ``2 runs (3
    snapshots, 12 log lines), 3 artifacts (4 revisions), memory: 1 profile
    (2 nodes, 9 events), 40 audit records, 5 blobs``."""
    out: list[str] = []
    known: set[str] = set()
    for area, head, things in _AREAS:
        known.update(t for t, _ in things)
        parts = [_count(checked[t], w) for t, w in things if t != head and checked.get(t)]
        head_text = _count(checked.get(head, 0), dict(things)[head])
        if not checked.get(head) and not parts and area not in ("runs", "artifacts", "memory"):
            continue  # nothing of it in this store
        if area == "memory":
            head_text = f"memory of {head_text}"
        out.append(head_text + (f" ({', '.join(parts)})" if parts else ""))
    out += [_count(n, t) for t, n in sorted(checked.items()) if t not in known]
    return ", ".join(out)


def where_words(location: str) -> str:
    """A finding's location in people's words: ``revisions:art_1:2`` ->
    ``artifact art_1, revision 2``; a workspace file keeps its path."""
    table, sep, rest = location.partition(":")
    if location.startswith("keepstone://logs/"):
        return f"the log of run {location.removeprefix('keepstone://logs/')}"
    if "/" in table or table.endswith((".json", ".jsonl")):  # a workspace file[:line]
        top = table.split("/", 1)[0].removesuffix(".jsonl").removesuffix(".json")
        what = WORDS.get(top)
        line = f", line {rest}" if sep and rest else ""
        return f"{what} file {table}{line}" if what else f"file {table}{line}"
    if not sep:
        return WORDS.get(table, location) if table != "store" else "the store"
    parts = rest.split(":")
    if rest == "?":
        return f"a {WORDS.get(table, table)}"
    if table == "revisions" and len(parts) == 2:
        return f"artifact {parts[0]}, revision {parts[1]}"
    if table == "snapshots" and len(parts) == 2:
        return f"run {parts[0]}, snapshot {parts[1]}"
    if table == "log_lines":
        if len(parts) == 2:
            return f"run {parts[0]}, log line {parts[1]}"
        return f"the log of run {parts[0]}"
    if table in ("log_refs", "manifests"):
        return f"the {WORDS[table].removeprefix('run ')} of run {parts[0]}"
    if table in ("edges", "nodes", "paths") and len(parts) == 2:
        return f"{WORDS[table]} {parts[1]} of profile {parts[0]}"
    if table == "events" and rest.startswith("profile="):
        return f"the memory events of profile {rest.removeprefix('profile=')}"
    if table == "memory_heads":
        return f"the memory graph head of profile {rest}"
    if table == "audit":
        return f"audit record {rest}"
    if table in WORDS:
        return f"{WORDS[table]} {rest}"
    return location


def _repair_text(diagnostic: Diagnostic) -> str | None:
    if diagnostic.repair is None:
        return None
    op = (diagnostic.repair.params or {}).get("op")
    target = diagnostic.repair.target
    return f"{str(op).replace('_', ' ')} ({target})" if op else target


def _print_report(report: DiagnosisReport, title: str) -> None:
    out = console()
    if report.diagnostics:
        rows = [
            (d.code, status_text(d.severity), where_words(d.location), d.message, _repair_text(d))
            for d in report.diagnostics
        ]
        out.print(table(title, ["finding", "severity", "where", "message", "repair"], rows))
    verdict = Text("healthy", style="green") if report.ok else Text("DAMAGED", style="bold red")
    out.print(
        Text("store ").append_text(verdict).append(f" (checked {checked_words(report.checked)})")
    )


def doctor(
    ctx: typer.Context,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Apply the proposed repairs (through the review gate: needs --approve).",
        ),
    ] = False,
    approve: ApproveOption = None,
    stale_after: Annotated[
        str,
        duration_option(
            "--stale-after",
            "Report a run still 'running' with no change or log line for this long.",
        ),
    ] = "1h",
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Check that blobs exist without re-hashing their bytes."),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Check the store for damage and inconsistencies; exit 1 if any error remains.

    Shows each finding's code, severity, where it is (in the store's words:
    run, artifact revision, memory node of a profile...), message and
    proposed repair; --json gives the raw location (table:key or file:line).
    With --repair the repairs are applied (a 'repair' lifecycle action, so
    --approve 'who: why' is required), then the store is checked again.
    """
    marker = approval(approve)
    stale = parse_duration(stale_after)

    async def diagnose(store: Store, title: str, total: int | None) -> DiagnosisReport:
        totals = {} if total is None else {"records": total}
        with progress_bar(title, totals=totals) as progress:
            done = 0

            def per_table(stage: str, rows: int) -> None:
                nonlocal done  # the doctor reports each table's count as it ends
                done += rows
                progress("records", done)

            return await store.doctor.diagnose(
                stale_after=stale, verify_blobs=not quick, progress=per_table
            )

    async def body(store: Store) -> None:
        report = await diagnose(store, "diagnose", None)
        repairs: list[dict[str, Any]] = []
        if repair and any(d.repair is not None for d in report.diagnostics):
            if not json:
                _print_report(report, "found")
            repairs = await store.doctor.repair(report.diagnostics, approval=marker)
            records = sum(n for table, n in report.checked.items() if table != "blobs")
            report = await diagnose(store, "re-check", records)
            if not json:
                console().print(Text(f"applied {len(repairs)} repairs", style="green"))
        if json:
            print_json({**report.model_dump(mode="json"), "repairs": repairs})
        else:
            _print_report(report, "diagnostics" if not repairs else "after repair")
        errors = [d for d in report.diagnostics if d.severity == "error"]
        if errors:
            fixable = not repair and any(d.repair is not None for d in errors)
            advice = (
                "; apply the proposed repairs with --repair --approve 'who: why'" if fixable else ""
            )
            raise StorageError(
                "corrupt",
                f"{len(errors)} error(s) remain{advice}",
                {"errors": [d.code for d in errors]},
            )

    run_with_store(ctx, body)
