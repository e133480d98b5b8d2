"""Each command on a real SQLite store: its success path, its main failure,
and a --json document that parses with the expected keys."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import APPROVE, Filled, invoke, sqlite_url


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return str(result.stdout)


def as_json(result: Any) -> Any:
    return json.loads(ok(result))


def failed(result: Any, code: str) -> str:
    """The failure's message; under --json the failure is a JSON object."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    if result.stderr.startswith("{"):
        error = json.loads(result.stderr)
        assert set(error) == {"code", "message", "details"}, error
        assert error["code"] == code, error
        return str(error["message"])
    assert result.stderr.startswith(f"error [{code}]: "), result.stderr
    return str(result.stderr)


# --------------------------------------------------------------------------- store


def test_init_creates_a_store_and_refuses_to_clobber_one(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "nested" / "dir")
    data = as_json(invoke(url, "init", "--json"))
    assert data == {"store": url, "backend": "sqlite", "capabilities": data["capabilities"]}
    assert "durable" in data["capabilities"]
    assert as_json(invoke(url, "runs", "list", "--json")) == []
    failed(invoke(url, "init"), "conflict")


def test_a_missing_store_is_not_created_by_reading_it(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "nowhere")
    err = failed(invoke(url, "runs", "list"), "not_found")
    assert "init" in err
    assert not (tmp_path / "nowhere").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = invoke(sqlite_url(tmp_path), "--debug", "runs", "list")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "error [not_found]" in result.stderr


def test_secrets_in_the_store_url_never_reach_output() -> None:
    for url in (
        "postgresql://user:hunter2@127.0.0.1:1/db",
        "memory://?token=hunter2",
    ):
        for debug in ([], ["--debug"]):
            result = invoke(url, *debug, "runs", "list")
            assert result.exit_code == 1
            assert "hunter2" not in result.output, result.output


def test_backends_lists_the_schemes() -> None:
    data = as_json(invoke("memory://", "backends", "--json"))
    assert {"memory", "sqlite"} <= {b["scheme"] for b in data}


# --------------------------------------------------------------------------- runs


def test_runs_list_filters_and_pages(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "runs", "list", "--json"))
    assert [r["id"] for r in data] == [filled.crashed, filled.run]  # newest first
    oldest = as_json(invoke(filled.url, "runs", "list", "--oldest-first", "--json"))
    assert [r["id"] for r in oldest] == [filled.run, filled.crashed]
    running = as_json(invoke(filled.url, "runs", "list", "--status", "running", "--json"))
    assert [r["id"] for r in running] == [filled.crashed]
    labelled = as_json(invoke(filled.url, "runs", "list", "--label", "env=test", "--json"))
    assert [r["id"] for r in labelled] == [filled.run]
    newest = invoke(filled.url, "runs", "list", "--limit", "1", "--json")
    assert [r["id"] for r in as_json(newest)] == [filled.crashed]
    assert "raise --limit" in newest.stderr
    first = invoke(filled.url, "runs", "list", "--limit", "1", "--oldest-first", "--json")
    assert [r["id"] for r in as_json(first)] == [filled.run]
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    rest = as_json(invoke(filled.url, "runs", "list", "--cursor", cursor, "--json"))
    assert [r["id"] for r in rest] == [filled.crashed]
    table = ok(invoke(filled.url, "runs", "list"))
    assert filled.run in table and "succeeded" in table and "duration" in table
    assert invoke(filled.url, "runs", "list", "--label", "oops").exit_code == 2


def test_runs_show(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "runs", "show", filled.run, "--json"))
    assert set(data) == {"run", "manifest", "snapshots", "log_reference", "resume_point"}
    assert data["run"]["status"] == "succeeded"
    assert [s["name"] for s in data["run"]["steps"]] == ["load", "publish"]
    assert data["manifest"]["outputs"][0]["artifact_id"] == filled.output
    assert data["log_reference"]["lines"] == 3
    text = ok(invoke(filled.url, "runs", "show", filled.run))
    assert "publish" in text and "log sealed" in text and "duration" in text
    failed(invoke(filled.url, "runs", "show", "run_missing"), "not_found")


def test_runs_logs_text_json_and_filters(filled: Filled) -> None:
    text = ok(invoke(filled.url, "runs", "logs", filled.run))
    assert "[bold]3 rows[/]" in text  # user text is printed, never read as markup
    lines = as_json(invoke(filled.url, "runs", "logs", filled.run, "--json"))
    assert [ln["event"] for ln in lines] == ["artifact.persisted", "loaded", "published"]
    assert {"seq", "at", "level", "event", "step", "message", "data", "run_id"} <= set(lines[0])
    streamed = ok(invoke(filled.url, "runs", "logs", filled.run, "--jsonl"))
    assert [json.loads(ln) for ln in streamed.splitlines()] == lines
    warn = as_json(invoke(filled.url, "runs", "logs", filled.run, "--level", "warning", "--json"))
    assert [ln["event"] for ln in warn] == ["published"]
    both = invoke(filled.url, "runs", "logs", filled.run, "--follow", "--json")
    assert both.exit_code == 2 and "--jsonl" in both.stderr
    failed(invoke(filled.url, "runs", "logs", "run_missing"), "not_found")


def test_runs_logs_follow_ends_when_the_stream_is_sealed(filled: Filled) -> None:
    out = ok(invoke(filled.url, "runs", "logs", filled.run, "--follow", "--step", "load"))
    assert "loaded" in out and "published" not in out


def test_runs_show_shows_the_resume_point(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "runs", "show", filled.crashed, "--json"))["resume_point"]
    assert set(data) == {"resumable", "completed_steps", "remaining_steps", "snapshot", "state"}
    assert data["resumable"] is True
    assert data["completed_steps"] == ["extract"]
    assert data["remaining_steps"] == ["translate"]
    assert data["snapshot"]["number"] == 1 and data["state"] == {"rows": 120}
    text = ok(invoke(filled.url, "runs", "show", filled.crashed))
    assert "remaining" in text and "translate" in text and "store.runs.resume" in text
    done = as_json(invoke(filled.url, "runs", "show", filled.run, "--json"))["resume_point"]
    assert done["resumable"] is False
    assert invoke(filled.url, "runs", "resume", filled.crashed).exit_code == 2  # no such command


# --------------------------------------------------------------------------- artifacts


def test_artifacts_list_and_collections(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "artifacts", "list", "--collection", "docs", "--json"))
    assert [a["name"] for a in data] == ["notes", "spec"]
    oldest = as_json(
        invoke(filled.url, "artifacts", "list", "--collection", "docs", "--oldest-first", "--json")
    )
    assert [a["name"] for a in oldest] == ["spec", "notes"]
    outputs = as_json(invoke(filled.url, "artifacts", "list", "--run", filled.run, "--json"))
    assert [a["id"] for a in outputs] == [filled.output]
    kinds = as_json(invoke(filled.url, "artifacts", "list", "--type", "knowledge", "--json"))
    assert [a["id"] for a in kinds] == [filled.spec]
    colls = as_json(invoke(filled.url, "artifacts", "collections", "--json"))
    assert sorted(c["name"] for c in colls) == ["docs", "outputs"]
    assert "spec" in ok(invoke(filled.url, "artifacts", "list"))
    failed(invoke(filled.url, "artifacts", "list", "--collection", "nope"), "not_found")


def test_artifacts_show_by_id_or_collection_and_name(filled: Filled) -> None:
    by_name = as_json(invoke(filled.url, "artifacts", "show", "docs/spec", "--json"))
    assert set(by_name) == {"artifact", "collection", "head", "relationships"}
    by_id = as_json(invoke(filled.url, "artifacts", "show", filled.spec, "--json"))
    assert by_name == by_id
    assert by_id["head"]["number"] == 2 and by_id["collection"]["name"] == "docs"
    assert [r["kind"] for r in by_id["relationships"]] == ["describes"]
    assert "knowledge" in ok(invoke(filled.url, "artifacts", "show", "docs/spec"))
    failed(invoke(filled.url, "artifacts", "show", "docs/missing"), "not_found")
    failed(invoke(filled.url, "artifacts", "show", "art_missing"), "not_found")


def test_artifacts_get_to_stdout_and_to_a_file(filled: Filled, tmp_path: Path) -> None:
    result = invoke(filled.url, "artifacts", "get", "docs/spec")
    assert result.exit_code == 0 and result.stdout_bytes == b"v2: cats and chiens"
    target = tmp_path / "spec-v1.txt"
    ok(invoke(filled.url, "artifacts", "get", filled.spec, "-r", "1", "-o", str(target)))
    assert target.read_bytes() == b"v1: cats only"
    failed(invoke(filled.url, "artifacts", "get", "docs/spec", "-r", "9"), "not_found")


def test_artifacts_put_creates_revises_and_skips_unchanged(fresh: Filled, tmp_path: Path) -> None:
    src = tmp_path / "glossary.txt"
    src.write_text("cat: chat\n")
    created = as_json(invoke(fresh.url, "artifacts", "put", "kb", "glossary", str(src), "--json"))
    assert set(created) == {"action", "artifact"}
    assert created["action"] == "created"
    assert created["artifact"]["media_type"].startswith("text/plain")
    same = as_json(invoke(fresh.url, "artifacts", "put", "kb", "glossary", str(src), "--json"))
    assert same["action"] == "unchanged" and same["artifact"]["revision"] == 1
    revised = as_json(
        invoke(
            fresh.url,
            "artifacts",
            "put",
            "kb",
            "glossary",
            "-",
            "--metadata",
            '{"lang": "fr"}',
            "--json",
            input="cat: chat\ndog: chien\n",
        )
    )
    assert revised["action"] == "revised" and revised["artifact"]["revision"] == 2
    assert revised["artifact"]["metadata"] == {"lang": "fr"}
    hits = as_json(
        invoke(fresh.url, "artifacts", "search", "chien", "--collection", "kb", "--json")
    )
    assert [h["artifact"]["name"] for h in hits] == ["glossary"]
    failed(invoke(fresh.url, "artifacts", "put", "kb", "x", str(tmp_path / "absent")), "invalid")
    bad = invoke(fresh.url, "artifacts", "put", "kb", "x", str(src), "--metadata", "[1]")
    assert bad.exit_code == 2


def test_artifacts_history_has_revisions_and_changes(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "artifacts", "history", "docs/spec", "--json"))
    assert set(data) == {"artifact", "revisions", "changes"}
    assert [r["number"] for r in data["revisions"]] == [1, 2]
    assert data["revisions"][1]["previous_digest"] == data["revisions"][0]["digest"]
    assert [c["action"] for c in data["changes"]] == ["create", "update"]
    notes = as_json(invoke(filled.url, "artifacts", "history", "docs/notes", "--json"))
    assert [c["action"] for c in notes["changes"]] == ["create", "relate"]
    text = ok(invoke(filled.url, "artifacts", "history", "docs/spec"))
    assert "revisions of spec" in text and "update" in text
    failed(invoke(filled.url, "artifacts", "history", "docs/missing"), "not_found")


def test_artifacts_search_is_full_text(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "artifacts", "search", "chiens", "--json"))
    assert [h["artifact"]["id"] for h in data] == [filled.spec]
    assert as_json(invoke(filled.url, "artifacts", "search", "zebra", "--json")) == []
    assert "spec" in ok(invoke(filled.url, "artifacts", "search", "cats"))


def test_artifacts_related(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "artifacts", "related", "docs/spec", "--json"))
    [item] = data
    assert item["direction"] == "in" and item["other"]["id"] == filled.notes
    assert item["relationship"]["kind"] == "describes"
    out = as_json(
        invoke(filled.url, "artifacts", "related", "docs/spec", "--direction", "out", "--json")
    )
    assert out == []
    assert "describes" in ok(invoke(filled.url, "artifacts", "related", filled.notes))
    failed(invoke(filled.url, "artifacts", "related", "docs/missing"), "not_found")


# --------------------------------------------------------------------------- memory


def test_memory_profiles_nodes_edges(filled: Filled) -> None:
    profiles = as_json(invoke(filled.url, "memory", "profiles", "--json"))
    assert [p["name"] for p in profiles] == ["assistant"]
    nodes = as_json(invoke(filled.url, "memory", "nodes", "assistant", "--json"))
    assert [n["kind"] for n in nodes] == ["idea", "fact"]  # newest first
    found = as_json(
        invoke(filled.url, "memory", "nodes", filled.profile, "--search", "French", "--json")
    )
    assert [n["content"] for n in found] == ["prefers French"]
    at_main = as_json(
        invoke(filled.url, "memory", "nodes", "assistant", "--path", filled.main_path, "--json")
    )
    assert len(at_main) == 2  # the branch was merged in
    edges = as_json(invoke(filled.url, "memory", "edges", "assistant", "--json"))
    assert [e["kind"] for e in edges] == ["refines"]
    assert "prefers French" in ok(invoke(filled.url, "memory", "nodes", "assistant"))
    failed(invoke(filled.url, "memory", "nodes", "nobody"), "not_found")


def test_memory_paths_is_a_tree_of_branches_merges_and_abandons(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "memory", "paths", "assistant", "--json"))
    [root] = data
    assert root["name"] == "main"
    children = {c["name"]: c for c in root["children"]}
    assert children["what-if"]["status"] == "merged"
    assert children["what-if"]["merged_into"] == filled.main_path
    assert children["dead-end"]["abandoned_reason"] == "went nowhere"
    text = ok(invoke(filled.url, "memory", "paths", "assistant"))
    assert "merged into main" in text and "abandoned: went nowhere" in text
    assert "├──" in text or "└──" in text
    failed(invoke(filled.url, "memory", "paths", "nobody"), "not_found")


def test_memory_events(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "memory", "events", "assistant", "--oldest-first", "--json"))
    kinds = [e["payload"]["kind"] for e in data]
    assert kinds[0] == "profile.created" and "path.merged" in kinds
    seqs = [e["seq"] for e in data]
    assert seqs == sorted(seqs)
    newest = as_json(invoke(filled.url, "memory", "events", "assistant", "--json"))
    assert newest == data[::-1]
    puts = as_json(
        invoke(filled.url, "memory", "events", "assistant", "--kind", "node.put", "--json")
    )
    assert len(puts) == 2
    branch = as_json(
        invoke(filled.url, "memory", "events", "assistant", "--path", filled.branch, "--json")
    )
    assert {e["payload"]["kind"] for e in branch} >= {"node.put", "edge.put"}
    assert "path.abandoned" in ok(invoke(filled.url, "memory", "events", "assistant"))


def test_memory_replay_equals_the_stored_graph(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "memory", "replay", "assistant", "--json"))
    assert set(data) == {"profile_id", "graph", "equals_stored"}
    assert data["equals_stored"] is True
    assert len(data["graph"]["nodes"]) == 2
    partial = as_json(
        invoke(filled.url, "memory", "replay", "assistant", "--through", "1", "--json")
    )
    assert partial["equals_stored"] is None and partial["graph"]["nodes"] == []
    assert "equals the stored graph: yes" in ok(invoke(filled.url, "memory", "replay", "assistant"))


def test_memory_replay_fails_when_the_stored_graph_drifted(fresh: Filled) -> None:
    db = fresh.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        assert conn.execute("DELETE FROM nodes WHERE kind = 'idea'").rowcount == 1
    result = invoke(fresh.url, "memory", "replay", "assistant", "--json")
    failed(result, "corrupt")
    assert json.loads(result.stdout)["equals_stored"] is False


# --------------------------------------------------------------------------- audit


def test_audit_list_and_verify(filled: Filled) -> None:
    result = invoke(filled.url, "audit", "list", "--limit", "3", "--oldest-first", "--json")
    assert [r["seq"] for r in as_json(result)] == [1, 2, 3]
    assert "--cursor" in result.stderr
    everything = as_json(invoke(filled.url, "audit", "list", "--limit", "1000", "--json"))
    newest = as_json(invoke(filled.url, "audit", "list", "--limit", "3", "--json"))
    assert [r["seq"] for r in newest] == [r["seq"] for r in everything[:3]]
    assert [r["seq"] for r in everything] == list(range(len(everything), 0, -1))
    approved = as_json(
        invoke(
            filled.url,
            "audit",
            "list",
            "--actor",
            "keepstone",
            "--action",
            "lifecycle.abandon_path",
            "--json",
        )
    )
    assert [r["approval"]["approved_by"] for r in approved] == ["alice"]
    verdict = as_json(invoke(filled.url, "audit", "verify", "--json"))
    assert {"ok", "checked", "first_broken_seq", "problem", "table", "key"} <= set(verdict)
    assert verdict["ok"] is True and verdict["rows_checked"] > 0
    assert "verified" in ok(invoke(filled.url, "audit", "verify"))
    anchor = ok(invoke(filled.url, "audit", "head")).strip()
    assert anchor.startswith(f"{verdict['checked']}:sha256:")
    assert "verified" in ok(invoke(filled.url, "audit", "verify", "--against", anchor))


def test_audit_verify_names_a_record_edited_with_sql(fresh: Filled) -> None:
    db = fresh.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        run_id = conn.execute("SELECT id FROM runs LIMIT 1").fetchone()[0]
        conn.execute("UPDATE runs SET body = replace(body, 'etl', 'xyz') WHERE id = ?", (run_id,))
    result = invoke(fresh.url, "audit", "verify")
    assert result.exit_code == 1
    assert f"runs {run_id}" in result.output and "changed after" in result.output
    assert invoke(fresh.url, "audit", "verify", "--chain-only").exit_code == 0


def test_audit_verify_exits_1_on_a_broken_chain(fresh: Filled) -> None:
    db = fresh.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        body = conn.execute("SELECT body FROM audit WHERE seq = 3").fetchone()[0]
        record = json.loads(body)
        record["actor"] = "mallory"
        conn.execute("UPDATE audit SET body = ? WHERE seq = 3", (json.dumps(record).encode(),))
    result = invoke(fresh.url, "audit", "verify", "--json")
    err = failed(result, "corrupt")
    assert "seq 3" in err
    assert json.loads(result.stdout)["first_broken_seq"] == 3


# --------------------------------------------------------------------------- export / import


def test_export_import_round_trip(filled: Filled, tmp_path: Path) -> None:
    manifest = as_json(invoke(filled.url, "export", str(tmp_path / "snap.tar"), "--json"))
    assert {"format", "counts", "parts", "blobs", "created_at", "keepstone_version"} <= set(
        manifest
    )
    assert "exported to" in ok(invoke(filled.url, "export", str(tmp_path / "snapdir")))
    failed(invoke(filled.url, "export", str(tmp_path / "snapdir")), "conflict")

    twin = sqlite_url(tmp_path / "twin")
    imported = as_json(invoke(twin, "import", str(tmp_path / "snap.tar"), "--json"))
    assert imported["counts"] == manifest["counts"]
    assert as_json(invoke(twin, "runs", "list", "--json")) == as_json(
        invoke(filled.url, "runs", "list", "--json")
    )
    assert as_json(invoke(twin, "audit", "verify", "--json"))["ok"] is True
    failed(invoke(twin, "import", str(tmp_path / "snapdir")), "conflict")
    failed(invoke(sqlite_url(tmp_path / "x"), "import", str(tmp_path / "absent")), "not_found")


# --------------------------------------------------------------------------- doctor


def test_doctor_on_a_healthy_store(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "doctor", "--json"))
    assert set(data) == {"ok", "checked", "diagnostics", "repairs"}
    assert data["ok"] is True and data["repairs"] == []
    assert "healthy" in ok(invoke(filled.url, "doctor", "--quick"))


def test_doctor_reports_and_repairs_under_review(fresh: Filled) -> None:
    db = fresh.url.removeprefix("sqlite:///")
    history = as_json(invoke(fresh.url, "artifacts", "history", "docs/spec", "--json"))
    old_digest = history["revisions"][0]["digest"]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE blobs SET data = ? WHERE digest = ?", (b"evil", old_digest))

    result = invoke(fresh.url, "doctor", "--json")
    failed(result, "corrupt")
    [finding] = json.loads(result.stdout)["diagnostics"]
    assert finding["code"] == "corrupt_blob" and finding["severity"] == "error"
    assert {"code", "severity", "location", "message", "repair"} <= set(finding)
    table = invoke(fresh.url, "doctor")
    assert "corrupt_blob" in table.stdout and "mark revision purged" in table.stdout
    assert "revisions:" not in table.stdout, table.stdout
    assert "revision 1" in table.stdout

    failed(invoke(fresh.url, "doctor", "--repair"), "review_required")
    repaired = as_json(invoke(fresh.url, "doctor", "--repair", *APPROVE, "--json"))
    assert repaired["ok"] is True and len(repaired["repairs"]) == 1
    assert as_json(invoke(fresh.url, "doctor", "--json"))["ok"] is True


def test_doctor_reports_stale_runs(filled: Filled) -> None:
    data = as_json(invoke(filled.url, "doctor", "--stale-after", "0s", "--json"))
    assert "stale_run" in {d["code"] for d in data["diagnostics"]}
    assert invoke(filled.url, "doctor", "--stale-after", "soon").exit_code == 2


# --------------------------------------------------------------------------- retention, gc


def test_retention_plan_and_apply_under_review(fresh: Filled) -> None:
    plan = as_json(invoke(fresh.url, "retention", "plan", "--logs", "--keep-last", "0", "--json"))
    assert set(plan) == {"policy", "planned_at", "items"}
    assert [i["run_id"] for i in plan["items"]] == [fresh.run]
    assert "1 item(s)" in ok(invoke(fresh.url, "retention", "plan", "--logs", "--max-age", "0s"))

    failed(invoke(fresh.url, "retention", "apply", "--logs", "--keep-last", "0"), "review_required")
    assert as_json(invoke(fresh.url, "runs", "show", fresh.run, "--json"))["log_reference"]
    applied = as_json(
        invoke(fresh.url, "retention", "apply", "--logs", "--keep-last", "0", *APPROVE, "--json")
    )
    assert applied["report"]["log_streams"] == 1 and applied["report"]["log_lines"] == 3
    assert as_json(invoke(fresh.url, "runs", "show", fresh.run, "--json"))["log_reference"] is None
    snaps = as_json(
        invoke(fresh.url, "retention", "plan", "--snapshots", "--keep-last", "0", "--json")
    )
    assert [i["run_id"] for i in snaps["items"]] == [
        fresh.run
    ]  # the crashed run's resume point stays


def test_retention_needs_exactly_one_kind_and_a_rule(filled: Filled) -> None:
    assert invoke(filled.url, "retention", "plan", "--keep-last", "1").exit_code == 2
    assert (
        invoke(
            filled.url, "retention", "plan", "--logs", "--snapshots", "--keep-last", "1"
        ).exit_code
        == 2
    )
    assert invoke(filled.url, "retention", "plan", "--logs").exit_code == 2
    assert (
        invoke(
            filled.url, "retention", "apply", "--logs", "--keep-last", "1", "--approve", "x"
        ).exit_code
        == 2
    )


def test_gc_plans_then_deletes_under_review(fresh: Filled) -> None:
    plan = as_json(invoke(fresh.url, "gc", "--json"))
    assert set(plan) == {"plan", "bytes", "report"}
    assert [b["digest"] for b in plan["plan"]["unreferenced"]] == [fresh.orphan]
    assert plan["report"] is None
    assert "repeat with --approve" in ok(invoke(fresh.url, "gc"))

    done = as_json(invoke(fresh.url, "gc", *APPROVE, "--json"))
    assert [b["digest"] for b in done["report"]["deleted"]] == [fresh.orphan]
    assert as_json(invoke(fresh.url, "gc", "--json"))["plan"]["unreferenced"] == []
    assert as_json(invoke(fresh.url, "doctor", "--json"))["ok"] is True
    records = as_json(
        invoke(fresh.url, "audit", "list", "--action", "lifecycle.gc_blobs", "--json")
    )
    assert [r["outcome"] for r in records] == ["applied"]


@pytest.mark.parametrize("approve", ["nobody", ": why", "who:"])
def test_a_malformed_approval_is_a_usage_error(filled: Filled, approve: str) -> None:
    result = invoke(filled.url, "gc", "--approve", approve)
    assert result.exit_code == 2
    assert "who: why" in result.output
