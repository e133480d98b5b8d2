"""``python -m bench``: run the scenarios, print the figures and the goals table.

Exit status: 0 when every scenario ran (whatever it measured: a missed goal
is a MISS in the table, not a failure), 1 when a scenario raised, 2 for a
usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import (
    environment,
    s1_append,
    s2_concurrent,
    s3_batch,
    s4_replay,
    s5_snapshots,
    s6_storage,
    s7_artifacts,
    s8_queries,
    s9_postgres,
    s10_fs,
    s11_langgraph,
    s12_ui,
)
from bench.context import DEFAULT, LARGE, MEMORY_QUERY_TIERS, QUICK, Context, Sizes
from bench.keepstone_side import BACKENDS, choose_backend, sqlite_available
from bench.report import (
    ERROR,
    Row,
    fmt_cpu,
    render_markdown,
    render_table,
    rows_as_dicts,
    summary,
)

SCENARIOS: list[ModuleType] = [
    s1_append,
    s2_concurrent,
    s3_batch,
    s4_replay,
    s5_snapshots,
    s6_storage,
    s7_artifacts,
    s8_queries,
    s9_postgres,
    s10_fs,
    s11_langgraph,
    s12_ui,
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = ", ".join(f"{n} ({m.NAME})" for n, m in enumerate(SCENARIOS, 1))
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="keepstone beside its peers: figures, ratios and PASS/MISS per goal.",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke run with tiny counts (< 60 s)")
    size.add_argument("--large", action="store_true", help="add the 1M-artifact query tier")
    p.add_argument(
        "--only",
        action="append",
        metavar="SCENARIO",
        help=f"run only this scenario, by number or name (repeatable): {names}",
    )
    p.add_argument(
        "--store-dir",
        type=Path,
        default=None,
        help="directory to create the temporary stores in (default: the system temp dir)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="keepstone backend: auto = sqlite when it imports, else memory",
    )
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    return p.parse_args(argv)


def select(only: list[str] | None) -> list[ModuleType]:
    if not only:
        return SCENARIOS
    wanted = {w.strip().lower() for item in only for w in item.split(",") if w.strip()}
    chosen = [m for n, m in enumerate(SCENARIOS, 1) if str(n) in wanted or m.NAME.lower() in wanted]
    known = {str(n) for n in range(1, len(SCENARIOS) + 1)} | {m.NAME for m in SCENARIOS}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"python -m bench: unknown scenario(s) {sorted(unknown)}; known: {known}")
    return chosen


def error_rows(module: ModuleType, exc: BaseException) -> list[Row]:
    note = f"error: {type(exc).__name__}: {exc}".replace("\n", " ")[:160]
    return [Row(i, desc, "—", "—", "—", "n/a", ERROR, note) for i, desc in module.ROWS.items()]


async def run_all(ctx: Context, modules: list[ModuleType]) -> tuple[list[Row], int]:
    rows: list[Row] = []
    errors = 0
    for module in modules:
        ctx.say(f"\n== {module.TITLE}")
        started = time.perf_counter()
        try:
            produced = await module.run(ctx)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            produced = error_rows(module, exc)
            errors += 1
        missing = set(module.ROWS) - {r.id for r in produced}
        if missing:
            raise AssertionError(f"{module.NAME} did not produce rows {sorted(missing)}")
        ctx.say(f"   ({time.perf_counter() - started:.1f} s)")
        rows.extend(produced)
    return rows, errors


def print_header(ctx: Context, env: dict[str, Any], mode: str) -> None:
    print(f"keepstone bench — {mode} run, {datetime.now(UTC):%Y-%m-%d %H:%M UTC}")
    backend = ctx.backend
    if backend == "memory":
        ok, why = sqlite_available()
        backend += " (in-memory reference backend; SQLite backend not importable"
        backend += f": {why})" if not ok else ")"
    print(f"keepstone backend: {backend}")
    print(
        f"machine: {env['cpus']} CPUs, {env['cpu_model']}; load average {env['load_average']}; "
        f"python {env['python']}, sqlite {env['sqlite']}"
    )
    print(f"stores in: {env['store_dir']} on {env['filesystem']}")
    if "tmpfs" in env["filesystem"]:
        print("WARNING: the store directory is on tmpfs: fsync costs nothing there")
    print("peers: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()))
    print("counts: " + ", ".join(f"{k}={v}" for k, v in ctx.sizes.as_dict().items()))


def print_results(ctx: Context, rows: list[Row], markdown: bool) -> None:
    print(
        "\nFigures (every timed loop; rates are per item, p50 per call, CPU per item:"
        " time.process_time of the whole process over the loop):"
    )
    for m in ctx.measurements:
        rate = f"{m.items_per_s:>12,.0f} items/s"
        if m.bytes_per_op:
            rate += f" {m.mb_per_s:>8,.1f} MB/s"
        cpu = f"  CPU {fmt_cpu(m.cpu_us_per_item):>7} µs" if m.cpu_seconds is not None else ""
        print(f"  {m.label:<52} {m.ops:>8,} calls {rate}  p50 {m.p50 * 1e6:>10,.1f} µs{cpu}")
    if ctx.settings:
        print("\nDurability settings seen on the peers' connections:")
        for name, setting in ctx.settings.items():
            print(f"  {name}: {setting}")
    print("\nGoals:")
    if ctx.backend == "memory":
        print(
            "(keepstone ran on the in-memory reference backend: it writes nothing to disk,\n"
            " so its ratios against the durable peers do not test the durable goals)"
        )
    print(render_table(rows))
    counts = summary(rows)
    print("\n" + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    if markdown:
        print("\n" + render_markdown(rows))


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup of the stores


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modules = select(args.only)
    sizes: Sizes = QUICK if args.quick else LARGE if args.large else DEFAULT
    mode = "quick" if args.quick else "large" if args.large else "default"
    backend = choose_backend(args.backend)
    if backend == "sqlite" and not sqlite_available()[0]:
        print(f"the sqlite backend does not import: {sqlite_available()[1]}", file=sys.stderr)
        return 2
    notes = []
    if backend == "memory" and max(sizes.query_tiers) > max(MEMORY_QUERY_TIERS):
        sizes = replace(sizes, query_tiers=MEMORY_QUERY_TIERS)
        notes.append(
            "memory backend: query tiers capped at "
            f"{max(MEMORY_QUERY_TIERS):,} artifacts (its finds are full scans)"
        )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parent = args.store_dir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="keepstone-bench-", dir=parent))
    started = time.perf_counter()
    try:
        ctx = Context(backend, sizes, root, large=args.large, verbose=not args.quiet)
        env = environment.describe(root)
        print_header(ctx, env, mode)
        for note in notes:
            print(f"NOTE: {note}")
        sys.stdout.flush()
        rows, errors = asyncio.run(run_all(ctx, modules))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print_results(ctx, rows, args.markdown)
    print(f"\ntotal time {elapsed:.0f} s")
    if args.json:
        result = {
            "mode": mode,
            "backend": backend,
            "date": datetime.now(UTC).isoformat(),
            "seconds": round(elapsed, 1),
            "environment": env,
            "counts": sizes.as_dict(),
            "notes": notes,
            "measurements": [m.as_dict() for m in ctx.measurements],
            "rows": rows_as_dicts(rows),
            "extra": ctx.extra,
            "peer_settings": ctx.settings,
            "summary": summary(rows),
        }
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
