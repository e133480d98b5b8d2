"""``keepstone gc``: delete blobs nothing refers to, under review."""

from __future__ import annotations

import typer
from rich.text import Text

from keepstone.cli.app import run_with_store
from keepstone.cli.options import ApproveOption, JsonOption, approval
from keepstone.cli.output import console, print_json, short, size, table
from keepstone.services.gc import GcPlan
from keepstone.store import Store


def _print_plan(plan: GcPlan) -> None:
    out = console()
    if plan.unreferenced:
        rows = [(b.digest, size(b.size)) for b in plan.unreferenced]
        out.print(table("unreferenced blobs", ["digest", "size"], rows))
    out.print(
        Text(
            f"{len(plan.unreferenced)} unreferenced blob(s), {size(plan.bytes)}; "
            f"{plan.referenced} referenced blob(s) stay"
        )
    )


def gc(ctx: typer.Context, approve: ApproveOption = None, json: JsonOption = False) -> None:
    """Find blobs no revision, snapshot part or sealed log refers to; delete them with --approve.

    Without --approve this only shows the plan. With it, the blobs are deleted
    through the review gate (a 'gc_blobs' lifecycle action, audited); each is
    re-checked first, so bytes that gained a reference are kept. Run it while
    no pipeline is writing to the store.
    """
    marker = approval(approve)

    async def body(store: Store) -> None:
        plan = await store.gc.plan()
        if marker is None:
            if json:
                print_json({"plan": plan, "bytes": plan.bytes, "report": None})
            else:
                _print_plan(plan)
                if plan.unreferenced:
                    console().print(
                        Text("nothing deleted: repeat with --approve 'who: why'", style="dim")
                    )
            return
        report = await store.gc.apply(plan, approval=marker)
        if json:
            print_json({"plan": plan, "bytes": plan.bytes, "report": report})
            return
        _print_plan(plan)
        freed = sum(b.size for b in report.deleted)
        console().print(
            Text(f"deleted {len(report.deleted)} blob(s), freed {size(freed)}", style="green")
        )
        for digest in report.skipped:
            console().print(Text(f"kept {short(digest)}: referenced again or gone", style="dim"))

    run_with_store(ctx, body)
