"""``keepstone audit``: list the audit chain, verify it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from keepstone.cli.app import run_with_store
from keepstone.cli.options import CursorOption, JsonOption, LimitOption
from keepstone.cli.output import (
    console,
    json_text,
    more,
    page_json,
    print_json,
    status_text,
    table,
    when,
)
from keepstone.errors import StorageError
from keepstone.schemas import AuditQuery
from keepstone.schemas.audit import AuditOutcome
from keepstone.store import Store

app = typer.Typer(help="The audit chain: every durable change, hash-chained.")


@app.command("list")
def list_audit(
    ctx: typer.Context,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action, e.g. artifact.update.")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Only this target id.")] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only changes by this actor.")
    ] = None,
    outcome: Annotated[
        AuditOutcome | None, typer.Option("--outcome", help="Only this outcome.")
    ] = None,
    after: Annotated[
        int | None, typer.Option("--after", metavar="SEQ", min=0, help="Only records after SEQ.")
    ] = None,
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List audit records in commit order."""
    query = AuditQuery(action=action, target=target, actor=actor, outcome=outcome, after_seq=after)

    async def body(store: Store) -> None:
        page = await store.audit.list(query, cursor=cursor, limit=limit)
        if json:
            print_json(page_json(page))
            return
        rows = [
            (
                r.seq,
                when(r.at),
                r.actor,
                r.action,
                r.target,
                status_text(r.outcome),
                None if r.approval is None else f"{r.approval.approved_by}: {r.approval.reason}",
                json_text(r.details),
            )
            for r in page.items
        ]
        columns = ["seq", "at", "actor", "action", "target", "outcome", "approval", "details"]
        console().print(table(None, columns, rows))
        more(page)

    run_with_store(ctx, body)


@app.command("verify")
def verify(ctx: typer.Context, json: JsonOption = False) -> None:
    """Walk the whole audit chain; exit with status 1 if any link is broken."""

    async def body(store: Store) -> None:
        verdict = await store.audit.verify()
        if json:
            print_json(verdict)
        elif verdict.ok:
            console().print(Text(f"audit chain verified: {verdict.checked} records", style="green"))
        if not verdict.ok:
            raise StorageError(
                "corrupt",
                f"the audit chain is broken at seq {verdict.first_broken_seq}: {verdict.problem}",
                verdict.model_dump(mode="json"),
            )

    run_with_store(ctx, body)
