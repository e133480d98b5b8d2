"""``keepstone retention``: plan and apply retention of logs and snapshots."""

from __future__ import annotations

from typing import Annotated, Literal

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
from keepstone.cli.output import console, print_json, spinner, table
from keepstone.schemas import RetentionPolicy
from keepstone.services.retention import RetentionPlan
from keepstone.store import Store

app = typer.Typer(
    help="Retention: remove old log streams and run snapshots, planned first, under review."
)

LogsOption = Annotated[
    bool, typer.Option("--logs", help="Apply to the log streams of finished runs.")
]
SnapshotsOption = Annotated[
    bool, typer.Option("--snapshots", help="Apply to run snapshots (resume points stay).")
]
MaxAgeOption = Annotated[
    str | None, duration_option("--max-age", "Remove what is older than this, e.g. 7d.")
]
KeepLastOption = Annotated[
    int | None,
    typer.Option(
        "--keep-last", metavar="N", min=0, help="Keep the N most recent (runs or snapshots)."
    ),
]


def _policy(
    logs: bool, snapshots: bool, max_age: str | None, keep_last: int | None
) -> RetentionPolicy:
    if logs == snapshots:
        raise typer.BadParameter("give exactly one of --logs or --snapshots")
    if max_age is None and keep_last is None:
        raise typer.BadParameter("give --max-age, --keep-last or both")
    applies_to: Literal["logs", "snapshots"] = "logs" if logs else "snapshots"
    return RetentionPolicy(
        applies_to=applies_to,
        max_age=None if max_age is None else parse_duration(max_age),
        keep_last=keep_last,
    )


def _print_plan(plan: RetentionPlan) -> None:
    rows = [
        (
            item.kind,
            item.run_id,
            None if item.snapshot_numbers is None else ", ".join(map(str, item.snapshot_numbers)),
            item.reason,
        )
        for item in plan.items
    ]
    out = console()
    out.print(table("retention plan", ["kind", "run", "snapshots", "reason"], rows))
    out.print(Text(f"{len(plan.items)} item(s) would be removed"))


@app.command("plan")
def plan(
    ctx: typer.Context,
    logs: LogsOption = False,
    snapshots: SnapshotsOption = False,
    max_age: MaxAgeOption = None,
    keep_last: KeepLastOption = None,
    json: JsonOption = False,
) -> None:
    """Show what a retention policy would remove now; changes nothing."""
    policy = _policy(logs, snapshots, max_age, keep_last)

    async def body(store: Store) -> None:
        with spinner("planning retention"):
            planned = await store.retention.plan(policy)
        if json:
            print_json(planned)
        else:
            _print_plan(planned)

    run_with_store(ctx, body)


@app.command("apply")
def apply(
    ctx: typer.Context,
    logs: LogsOption = False,
    snapshots: SnapshotsOption = False,
    max_age: MaxAgeOption = None,
    keep_last: KeepLastOption = None,
    approve: ApproveOption = None,
    json: JsonOption = False,
) -> None:
    """Remove what a retention policy plans, through the review gate (--approve)."""
    policy = _policy(logs, snapshots, max_age, keep_last)
    marker = approval(approve)

    async def body(store: Store) -> None:
        with spinner("planning retention"):
            planned = await store.retention.plan(policy)
        if not json:
            _print_plan(planned)
        with spinner(f"removing {len(planned.items)} item(s)"):
            report = await store.retention.apply(planned, approval=marker)
        if json:
            print_json({"plan": planned, "report": report})
            return
        console().print(
            Text(
                f"removed {report.log_streams} log stream(s) ({report.log_lines} lines) "
                f"and {report.snapshots} snapshot(s)",
                style="green",
            )
        )

    run_with_store(ctx, body)
