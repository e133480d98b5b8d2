"""Smoke tests of the benchmark harness (``python -m bench``).

They run the quick profile against whichever keepstone backend is available
(sqlite when it imports, else memory) and check that it exits cleanly and
prints every row of the goals table. They assert nothing about timings.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_ROWS = [  # the rows of issue #3's goals; later scenarios may add more
    *("1a", "1b", "1c"),
    *("2a", "2b"),
    *("3a", "3b"),
    *("4a", "4b", "4c"),
    *("5a", "5b", "5c", "5d", "5e", "5f"),
    "6a",
    *("7a", "7b", "7c", "7d", "7e"),
    *("8a", "8b", "8c", "8d", "8e", "8f", "8g"),
]
RESULTS = {"PASS", "MISS", "SKIP", "info"}
ROW_LINE = re.compile(r"^(\d{1,2}[a-z])\s{2}")


def run_bench(
    tmp_path: Path, *args: str, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = ["--quick", "--quiet", "--store-dir", str(tmp_path), *args]
    if code is None:
        command = [sys.executable, "-m", "bench", *argv]
    else:
        command = [sys.executable, "-c", code, *argv]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def declared_rows() -> list[str]:
    """Every row id the scenarios declare, in run order."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    scenarios = importlib.import_module("bench.__main__").SCENARIOS
    return [row_id for module in scenarios for row_id in module.ROWS]


def table_rows(stdout: str) -> dict[str, str]:
    return {m.group(1): line for line in stdout.splitlines() if (m := ROW_LINE.match(line))}


def test_quick_run_exits_zero_and_prints_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = run_bench(tmp_path, "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    declared = declared_rows()
    assert set(EXPECTED_ROWS) <= set(declared)
    rows = table_rows(proc.stdout)
    assert sorted(rows) == sorted(declared), proc.stdout
    for row_id, line in rows.items():
        assert set(line.split()) & RESULTS, f"row {row_id} has no result: {line}"

    result = json.loads(out.read_text())
    assert [r["id"] for r in result["rows"]] == declared
    assert result["backend"] in ("sqlite", "memory")
    assert result["measurements"]
    # the temporary stores are cleaned up
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]


BLOCK_PEERS = (
    "import sys, runpy\n"
    "for name in ('eventsourcing', 'langgraph'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv[0] = 'bench'\n"
    "runpy.run_module('bench', run_name='__main__')\n"
)


def test_missing_peers_print_peer_not_installed(tmp_path: Path) -> None:
    proc = run_bench(tmp_path, "--only", "1,5,6", code=BLOCK_PEERS)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    rows = table_rows(proc.stdout)
    assert sorted(rows) == ["1a", "1b", "1c", "5a", "5b", "5c", "5d", "5e", "5f", "6a"]
    for row_id in ("1b", "5a", "5b", "5c", "5d", "5e", "5f"):
        assert "SKIP" in rows[row_id] and "peer not installed" in rows[row_id], rows[row_id]
    assert "peer not installed" in rows["6a"]
    assert "SKIP" not in rows["1a"]
