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
EXPECTED_GOALS = {  # issue #11's goals, as the table prints them
    "1a": "≥ 0.8× sqlite3 1-row tx",
    "1b": "≥ 2× eventsourcing save(1)",
    "2a": "≥ 8× sqlite3 1-row tx",
    "2b": "≥ 10× eventsourcing",
    "3a": "≥ 0.5× sqlite3 executemany",
    "3b": "≥ 4× eventsourcing save(100)",
    "4a": "≥ 0.6× sqlite3+orjson dicts",
    "4b": "≥ 2.5× eventsourcing log+decode",
    "5a": "≥ 1.5× SqliteSaver.put",
    "5b": "≥ 3× AsyncSqliteSaver.aput",
    "5c": "≥ 1.5× SqliteSaver.put",
    "5d": "≥ 3× AsyncSqliteSaver.aput",
    "5e": "≤ 0.25× aget_tuple median",
    "5f": "≤ 0.25× aget_tuple median",
    "5g": "≤ 1× get_tuple median",
    "5h": "≤ 1× get_tuple median",
    "7a": "≥ 0.7× file+fsync",
    "7b": "≥ 0.7× file read+sha256",
    "9a": "≥ 2×",
    "9b": "≥ 5×",
    "9c": "≥ 1×",
    "9e": "≥ 1.5×",
    "10a": "≥ 0.8× JSONL line + fsync",
}
"""Scenario 9's goals name their peer only when PostgreSQL is reachable."""
EXPECTED_ROWS = [  # the goal rows above, and the other rows that are still kept
    *EXPECTED_GOALS,
    *("1c", "6a", "7c", "7d", "7e"),
    *("8a", "8b", "8c", "8d", "8e", "8f", "8g"),
    *("9d", "9f", "9g", "9h", "9i"),
    *("10b", "10c", "10d", "10e"),
]
WRITE_ROWS = [
    *("1a", "1b", "1c", "2a", "2b", "3a", "3b", "5a", "5b", "5c", "5d"),
    *("7a", "7c", "10a", "10b", "10c"),
]
"""Rows whose keepstone side writes: the CPU column shows its CPU per write."""
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
    assert all(m["cpu_seconds"] is not None for m in result["measurements"])

    by_id = {r["id"]: r for r in result["rows"]}
    for row_id, goal in EXPECTED_GOALS.items():
        assert by_id[row_id]["goal"].startswith(goal), by_id[row_id]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("#  "))
    assert "CPU µs/write" in header
    for row_id in WRITE_ROWS:  # a number of microseconds, also in the row's data
        assert re.fullmatch(r"[\d,.]+", by_id[row_id]["cpu"]), by_id[row_id]
        assert by_id[row_id]["data"]["keepstone_cpu_us"] > 0, by_id[row_id]
    for row_id in ("1a", "1c", "2a", "3a", "7a", "7b"):  # the raw limits, always run
        assert by_id[row_id]["data"]["peer_cpu_us"] > 0, by_id[row_id]
    assert by_id["4a"]["cpu"] == "—"  # not a write
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
    expected = ["1a", "1b", "1c", "5a", "5b", "5c", "5d", "5e", "5f", "5g", "5h", "6a"]
    assert sorted(rows) == expected
    for row_id in ("1b", "5a", "5b", "5c", "5d", "5e", "5f", "5g", "5h"):
        assert "SKIP" in rows[row_id] and "peer not installed" in rows[row_id], rows[row_id]
    assert "peer not installed" in rows["6a"]
    assert "SKIP" not in rows["1a"]


def test_postgres_probe_classifies_the_writer_session() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    probe = importlib.import_module("bench.pg_probe")
    assert probe.classify("active", None, None) == probe.RUNNING
    assert probe.classify("active", "IO", "WALSync") == "IO:WALSync"
    assert probe.classify("active", "Client", "ClientRead") == probe.IDLE
    assert probe.classify("idle", "Client", "ClientRead") == probe.IDLE
    assert probe.classify("idle in transaction", "Client", "ClientRead") == probe.IDLE
    seen = probe.Probe()
    seen.states.update({probe.IDLE: 3, "IO:WALSync": 1})
    assert seen.shares() == f"{probe.IDLE} 75%, IO:WALSync 25% of 4 samples"
    # CPU of sessions that appeared during the loop counts from zero; an
    # unreadable process (a remote server) makes the whole figure unknown
    assert probe._cpu_delta({1: 2.0}, {1: 2.5, 2: 0.25}) == 0.75
    assert probe._cpu_delta({1: 2.0}, {1: None}) is None
