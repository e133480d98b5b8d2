"""``keepstone audit``: list the audit chain, verify it.

Actions have one spelling in the audit chain, ``<area>.<verb>`` as the store
writes them (``artifact.update``, ``memory.put_node``,
``lifecycle.abandon_path``). ``--action`` also accepts the words people meet
elsewhere, mapped by :data:`ACTION_ALIASES`: the memory event kinds
(``path.abandoned`` is recorded as ``lifecycle.abandon_path``) and the bare
lifecycle kinds of ``--approve`` and the review gate (``abandon_path``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from keepstone.cli.app import run_with_store
from keepstone.cli.listing import Listing, read, read_by_seq, show_more
from keepstone.cli.options import CursorOption, JsonOption, LimitOption, OldestFirstOption
from keepstone.cli.output import (
    console,
    hint,
    pairs_text,
    print_json,
    print_lines,
    status_text,
    when,
)
from keepstone.errors import StorageError
from keepstone.schemas import AuditQuery, AuditRecord
from keepstone.schemas.audit import AuditOutcome
from keepstone.store import Store

app = typer.Typer(help="The audit chain: every durable change, hash-chained.")

ACTION_ALIASES: dict[str, str] = {
    # memory event kinds -> the audit action that records them
    "profile.created": "memory.create_profile",
    "profile.updated": "memory.update_profile",
    "node.put": "memory.put_node",
    "node.forgotten": "lifecycle.forget_node",
    "edge.put": "memory.put_edge",
    "edge.removed": "memory.remove_edge",
    "path.created": "memory.create_path",
    "path.merged": "memory.merge_path",
    "path.abandoned": "lifecycle.abandon_path",
    "path.compacted": "lifecycle.compact_path",
    # lifecycle kinds (what --approve approves) -> their audit action
    "compact_path": "lifecycle.compact_path",
    "abandon_path": "lifecycle.abandon_path",
    "forget_node": "lifecycle.forget_node",
    "purge_artifact": "lifecycle.purge_artifact",
    "apply_retention": "lifecycle.apply_retention",
    "repair": "lifecycle.repair",
    "gc_blobs": "lifecycle.gc_blobs",
}
"""Other spellings ``audit list --action`` accepts, and the audit action each
stands for."""


def audit_action(name: str) -> str:
    """The audit action ``name`` stands for (itself unless an alias)."""
    return ACTION_ALIASES.get(name, name)


@app.command("list")
def list_audit(
    ctx: typer.Context,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            help="Only this action, e.g. artifact.update or lifecycle.abandon_path; a memory "
            "event kind (path.abandoned) or a lifecycle kind (abandon_path) is read as the "
            "action that records it.",
        ),
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
    oldest_first: OldestFirstOption = False,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List audit records, newest first (--oldest-first: in commit order).

    Each record is one line: seq, time, actor, action, target, outcome, the
    approval if any, and its details as key=value pairs (on a terminal a line
    is cut at the screen's edge; --json shows every record whole).

    --action takes the audit's own spelling, or a memory event kind read as
    the action that records it: profile.created = memory.create_profile,
    profile.updated = memory.update_profile, node.put = memory.put_node,
    node.forgotten = lifecycle.forget_node, edge.put = memory.put_edge,
    edge.removed = memory.remove_edge, path.created = memory.create_path,
    path.merged = memory.merge_path, path.abandoned = lifecycle.abandon_path,
    path.compacted = lifecycle.compact_path; or a lifecycle kind such as
    abandon_path = lifecycle.abandon_path.
    """
    wanted = None if action is None else audit_action(action)
    query = AuditQuery(action=wanted, target=target, actor=actor, outcome=outcome, after_seq=after)

    async def body(store: Store) -> None:
        found: Listing[AuditRecord]
        if oldest_first or cursor is not None:
            found = await read(
                lambda c, n: store.audit.list(query, cursor=c, limit=n),
                limit=limit,
                cursor=cursor,
                oldest_first=True,
            )
        else:
            head = await store.audit.head()
            found = await read_by_seq(
                lambda seq, c, n: store.audit.list(
                    query.model_copy(update={"after_seq": seq}), cursor=c, limit=n
                ),
                last_seq=0 if head is None else head.seq,
                floor=after or 0,
                limit=limit,
            )
        if json:
            print_json(found.items)
        else:
            rows = [
                (
                    r.seq,
                    when(r.at),
                    r.actor,
                    r.action,
                    r.target,
                    status_text(r.outcome),
                    None
                    if r.approval is None
                    else f"{r.approval.approved_by}: {r.approval.reason}",
                    pairs_text(r.details),
                )
                for r in found.items
            ]
            columns = ["seq", "at", "actor", "action", "target", "outcome", "approval", "details"]
            print_lines(columns, rows)
            if wanted != action:
                hint(f"{action} is recorded as the audit action {wanted}")
        show_more(found)

    run_with_store(ctx, body)


@app.command("verify")
def verify(
    ctx: typer.Context,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            metavar="ANCHOR",
            help="An anchor kept elsewhere (what 'keepstone audit head' printed then): the "
            "chain must still hold that record unchanged.",
        ),
    ] = None,
    chain_only: Annotated[
        bool,
        typer.Option(
            "--chain-only",
            help="Check the hash chain alone, not every stored record against it (faster).",
        ),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Check the audit chain, then every stored record against it; exit 1 on a problem.

    Every audit record commits to the digest of each record its change wrote,
    so an edit, addition or removal of a record behind keepstone's back (a
    hand-edited file, an SQL UPDATE) is named with its table and key. Reads
    every record of the store unless --chain-only.
    """

    async def body(store: Store) -> None:
        verdict = await store.audit.verify(rows=not chain_only, against=against)
        if json:
            print_json(verdict)
        elif verdict.ok:
            what = "" if chain_only else f" and {verdict.rows_checked} stored records"
            console().print(Text(f"verified: {verdict.checked} audit records{what}", style="green"))
            if verdict.anchor:
                console().print(Text(f"anchor: {verdict.anchor}"))
        if not verdict.ok:
            where = (
                f"record {verdict.table} {verdict.key}"
                if verdict.table is not None
                else f"the audit chain at seq {verdict.first_broken_seq}"
            )
            raise StorageError(
                "corrupt",
                f"verification failed at {where}: {verdict.problem}",
                verdict.model_dump(mode="json"),
            )

    run_with_store(ctx, body)


@app.command("head")
def head(ctx: typer.Context, json: JsonOption = False) -> None:
    """Print the newest audit record's anchor (<seq>:<hash>).

    Write it down or publish it: 'keepstone audit verify --against ANCHOR'
    later proves the history up to it unchanged, even if the whole chain
    after it were rewritten consistently.
    """

    async def body(store: Store) -> None:
        record = await store.audit.head()
        if json:
            print_json(
                None
                if record is None
                else {"seq": record.seq, "hash": record.hash, "anchor": record.anchor}
            )
        elif record is None:
            console().print(Text("the audit chain is empty"))
        else:
            console().print(Text(record.anchor))

    run_with_store(ctx, body)
