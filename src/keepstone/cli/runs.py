"""``keepstone runs``: list, show, logs.

There is no ``runs resume``: resuming runs the pipeline's own code, so it is
done from Python (``store.runs.resume(run_id)``); ``runs show`` shows where a
run would resume (completed and remaining steps, the last snapshot).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.text import Text

from keepstone.cli.app import run_with_store
from keepstone.cli.listing import every, read, show_more
from keepstone.cli.options import (
    CursorOption,
    JsonOption,
    LimitOption,
    OldestFirstOption,
    labels,
)
from keepstone.cli.output import (
    console,
    duration,
    fields,
    inert,
    json_text,
    plain,
    print_json,
    print_json_line,
    short,
    size,
    status_text,
    table,
    when,
)
from keepstone.schemas import ErrorInfo, LogLine, LogQuery, Run, RunQuery, RunStatus
from keepstone.schemas.logs import LogLevel
from keepstone.services.runs import ResumePoint
from keepstone.store import Store

app = typer.Typer(help="Pipeline runs: status, steps, snapshots, manifests and logs.")

RunArg = Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id.")]


def _steps(run: Run) -> str:
    done = sum(1 for s in run.steps if s.status in ("succeeded", "skipped"))
    return f"{done}/{len(run.steps)}"


def _duration(run: Run, now: datetime) -> str:
    """How long the run took, or has been running (``12.3s so far``)."""
    if run.started_at is None:
        return "-"
    if run.ended_at is None:
        return f"{duration(run.started_at, now)} so far" if run.status == "running" else "-"
    return duration(run.started_at, run.ended_at)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    status: Annotated[
        RunStatus | None, typer.Option("--status", help="Only runs with this status.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only runs of this pipeline.")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", metavar="KEY=VALUE", help="Only runs with this label (repeat)."),
    ] = None,
    limit: LimitOption = 100,
    oldest_first: OldestFirstOption = False,
    cursor: CursorOption = None,
    json: JsonOption = False,
) -> None:
    """List runs, newest first, with their status, steps done and duration."""
    query = RunQuery(name=name, status=status, labels=labels(label))

    async def body(store: Store) -> None:
        found = await read(
            lambda c, n: store.runs.list(query, cursor=c, limit=n),
            limit=limit,
            cursor=cursor,
            oldest_first=oldest_first,
        )
        if json:
            print_json(found.items)
        else:
            now = store.clock.now()
            rows = [
                (
                    r.id,
                    r.name,
                    status_text(r.status),
                    _steps(r),
                    when(r.created_at),
                    _duration(r, now),
                )
                for r in found.items
            ]
            columns = ["id", "name", "status", "steps", "created", "duration"]
            console().print(table(None, columns, rows))
        show_more(found)

    run_with_store(ctx, body)


@app.command("show")
def show(ctx: typer.Context, run_id: RunArg, json: JsonOption = False) -> None:
    """Show a run: status, the error and its traceback, attempts, steps,
    snapshots, manifest, sealed log, and where it would resume."""

    async def body(store: Store) -> None:
        point = await store.runs.resume_point(run_id)
        run = point.run
        manifest = await store.runs.get_manifest(run.id)
        snapshots = await store.runs.list_snapshots(run.id, limit=10_000)
        log_ref = await store.logs.reference(run.id)
        resume = _resume_json(point)
        if json:
            print_json(
                {
                    "run": run,
                    "manifest": manifest,
                    "snapshots": snapshots.items,
                    "log_reference": log_ref,
                    "resume_point": resume,
                }
            )
            return
        out = console()
        out.print(
            fields(
                [
                    ("id", run.id),
                    ("name", run.name),
                    ("status", status_text(run.status)),
                    ("params", json_text(run.params)),
                    ("labels", json_text(run.labels)),
                    ("created", when(run.created_at)),
                    ("started", when(run.started_at)),
                    ("ended", when(run.ended_at)),
                    ("duration", _duration(run, store.clock.now())),
                    ("error", _error_text(run.error)),
                    (
                        "re-run of",
                        None
                        if run.rerun_of is None
                        else f"{run.rerun_of} from step {run.rerun_from_step}",
                    ),
                    ("revision", run.revision),
                ]
            )
        )
        if len(run.history) > 1:
            attempts = [
                (
                    a.number,
                    status_text(a.outcome),
                    when(a.started_at),
                    when(a.ended_at),
                    _error_text(a.error),
                )
                for a in run.history
            ]
            out.print(table("attempts", ["#", "outcome", "started", "ended", "error"], attempts))
        steps = [
            (
                s.name,
                status_text(s.status),
                s.attempts,
                when(s.started_at),
                when(s.ended_at),
                _error_text(s.error),
            )
            for s in run.steps
        ]
        out.print(
            table("steps", ["step", "status", "attempts", "started", "ended", "error"], steps)
        )
        snaps = [
            (s.number, s.step, when(s.created_at), size(s.size), ", ".join(sorted(s.parts)))
            for s in snapshots.items
        ]
        out.print(table("snapshots", ["#", "step", "created", "size", "parts"], snaps))
        if manifest is not None:
            outputs = [(o.artifact_id, o.revision, short(o.digest)) for o in manifest.outputs or []]
            out.print(table("outputs", ["artifact", "revision", "digest"], outputs))
        if log_ref is not None:
            out.print(
                Text(
                    f"log sealed {when(log_ref.sealed_at)}: {log_ref.lines} lines, "
                    f"{size(log_ref.bytes)}, {log_ref.digest}"
                )
            )
        if run.status != "succeeded":
            snap = point.snapshot
            out.print(
                fields(
                    [
                        ("resume point", "" if run.status == "pending" else None),
                        ("completed", ", ".join(point.completed_steps) or None),
                        ("remaining", ", ".join(point.remaining_steps) or None),
                        (
                            "snapshot",
                            None
                            if snap is None
                            else f"#{snap.number} at {when(snap.created_at)}"
                            + (f" (step {snap.step})" if snap.step else ""),
                        ),
                        ("state", None if snap is None else json_text(snap.state, clip=400)),
                        ("to resume", f"store.runs.resume({run.id!r}) in Python"),
                    ]
                )
            )
        error = run.error or next((s.error for s in run.steps if s.error), None)
        if error is not None and error.traceback:
            out.print(
                Text("traceback" + (f" (step {error.step})" if error.step else ""), style="bold")
            )
            out.print(Text(error.traceback.rstrip()), soft_wrap=True)

    run_with_store(ctx, body)


def _error_text(error: ErrorInfo | None) -> str | None:
    if error is None:
        return None
    where = f" (step {error.step})" if error.step else ""
    return f"{error.type}: {error.message}{where}"


def _resume_json(point: ResumePoint) -> dict[str, Any]:
    snap = point.snapshot
    return {
        "resumable": point.resumable,
        "completed_steps": point.completed_steps,
        "remaining_steps": point.remaining_steps,
        "snapshot": None
        if snap is None
        else {"number": snap.number, "step": snap.step, "created_at": snap.created_at},
        "state": None if snap is None else snap.state,
    }


def _line(line: LogLine) -> Text:
    text = Text()
    # The run's own line number (from 1); older stores' lines have only a seq.
    number = line.line if line.line is not None else line.seq
    text.append(f"{number or 0:>6} ", style="dim")
    text.append(f"{when(line.at)} ")
    text.append(f"{line.level.upper():<8} ", style=_LEVEL_STYLE.get(line.level, ""))
    if line.step:
        text.append(f"[{inert(line.step)}] ", style="cyan")
    text.append_text(plain(line.event, style="bold"))
    if line.message:
        text.append(f": {inert(line.message)}")
    if line.data:
        text.append(" ")
        text.append_text(json_text(line.data))
    return text


_LEVEL_STYLE = {"debug": "dim", "warning": "yellow", "error": "red", "critical": "bold red"}


@app.command("logs")
def logs(
    ctx: typer.Context,
    run_id: RunArg,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new lines until the run's log is sealed."
        ),
    ] = False,
    level: Annotated[
        LogLevel | None, typer.Option("--level", help="Only lines at this level or above.")
    ] = None,
    step: Annotated[str | None, typer.Option("--step", help="Only lines of this step.")] = None,
    event: Annotated[str | None, typer.Option("--event", help="Only lines of this event.")] = None,
    json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON array of log line objects (not with --follow: use --jsonl).",
        ),
    ] = False,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl",
            help="Print JSON Lines, one log line object per line as it comes (works "
            "with --follow).",
        ),
    ] = False,
) -> None:
    """Print a run's log stream, oldest line first; --follow waits for new lines
    like tail -f.

    For scripts, --json prints the lines as one JSON array (like every other
    --json), and --jsonl prints one JSON object per line, which suits a stream
    that --follow keeps open.
    """
    if json and (follow or jsonl):
        raise typer.BadParameter(
            "--json prints one JSON document, which a stream cannot end; use --jsonl "
            "(one JSON object per line) with --follow",
            param_hint="--json",
        )
    query = LogQuery(min_level=level, step=step, event=event)
    collected: list[LogLine] = []

    def emit(line: LogLine) -> None:
        if json:
            collected.append(line)
        elif jsonl:
            print_json_line(line)
        else:
            console().print(_line(line), soft_wrap=True)

    def wanted(line: LogLine) -> bool:
        return (
            (level is None or _RANK[line.level] >= _RANK[level])
            and (step is None or line.step == step)
            and (event is None or line.event == event)
        )

    async def body(store: Store) -> None:
        last = 0
        async for line in every(lambda c, n: store.logs.read(run_id, query, cursor=c, limit=n)):
            emit(line)
            last = max(last, line.seq or 0)
        if json:
            print_json(collected)
        if follow:  # lines written since the read above, then new ones as they come
            async for line in store.logs.follow(run_id, after_seq=last):
                if wanted(line):
                    emit(line)

    run_with_store(ctx, body)


_RANK: dict[str, int] = {"debug": 0, "info": 1, "warning": 2, "error": 3, "critical": 4}
