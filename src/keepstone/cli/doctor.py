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


def _repair_text(diagnostic: Diagnostic) -> str | None:
    if diagnostic.repair is None:
        return None
    op = (diagnostic.repair.params or {}).get("op")
    return f"{op} {diagnostic.repair.target}" if op else diagnostic.repair.target


def _print_report(report: DiagnosisReport, title: str) -> None:
    out = console()
    if report.diagnostics:
        rows = [
            (d.code, status_text(d.severity), d.location, d.message, _repair_text(d))
            for d in report.diagnostics
        ]
        out.print(table(title, ["code", "severity", "location", "message", "repair"], rows))
    checked = ", ".join(f"{n} {what}" for what, n in sorted(report.checked.items()))
    verdict = Text("healthy", style="green") if report.ok else Text("DAMAGED", style="bold red")
    out.print(Text("store ").append_text(verdict).append(f" (checked {checked})"))


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

    Shows each finding's code, severity, location, message and proposed repair.
    With --repair the repairs are applied (a 'repair' lifecycle action, so
    --approve 'who: why' is required), then the store is checked again.
    """
    marker = approval(approve)
    stale = parse_duration(stale_after)

    async def body(store: Store) -> None:
        with progress_bar("diagnose") as progress:
            report = await store.doctor.diagnose(
                stale_after=stale, verify_blobs=not quick, progress=progress
            )
        repairs: list[dict[str, Any]] = []
        if repair and any(d.repair is not None for d in report.diagnostics):
            if not json:
                _print_report(report, "found")
            repairs = await store.doctor.repair(report.diagnostics, approval=marker)
            with progress_bar("re-check") as progress:
                report = await store.doctor.diagnose(
                    stale_after=stale, verify_blobs=not quick, progress=progress
                )
            if not json:
                console().print(Text(f"applied {len(repairs)} repairs", style="green"))
        if json:
            print_json({**report.model_dump(mode="json"), "repairs": repairs})
        else:
            _print_report(report, "diagnostics" if not repairs else "after repair")
        errors = [d for d in report.diagnostics if d.severity == "error"]
        if errors:
            fixable = not repair and any(d.repair is not None for d in errors)
            hint = (
                "; apply the proposed repairs with --repair --approve 'who: why'" if fixable else ""
            )
            raise StorageError(
                "corrupt",
                f"{len(errors)} error(s) remain{hint}",
                {"errors": [d.code for d in errors]},
            )

    run_with_store(ctx, body)
