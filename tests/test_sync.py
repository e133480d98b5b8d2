"""The sync API: ``keepstone.connect`` over every port, from threads, inside a
running loop, with pipelines, logs, Ctrl-C, and its generated types."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import keepstone
from keepstone import RetryPolicy
from keepstone.schemas import ArtifactQuery, LogQuery
from keepstone.sync import SyncProxy, protocols
from tests.conftest import store_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(str(request.param), tmp_path)


def test_a_pipeline_with_steps_outputs_logs_and_retries(url: str) -> None:
    logger = logging.getLogger("keepstone.test.sync")
    logger.setLevel(logging.INFO)
    tries = 0
    with keepstone.connect(url) as store:
        with store.runs.start("etl", params={"n": 2}) as run:
            handler = run.logging_handler()
            logger.addHandler(handler)
            try:
                with run.step("extract"):
                    logger.info("extracting")
                    run.save_output("rows", records=({"i": i} for i in range(2)))
                    run.checkpoint({"done": ["extract"]})
                for attempt in run.retrying("load", RetryPolicy(attempts=3, backoff=0.0)):
                    with attempt:
                        tries += 1
                        if tries == 1:
                            raise ConnectionError("reset")
                        logger.error("loaded, after a retry")
                        # durable before logger.error returned: another connection sees it
                        with keepstone.connect(url) as other:
                            seen = other.logs.read(run.id, LogQuery(min_level="error")).items
                        assert [ln.message for ln in seen] == ["loaded, after a retry"]
            finally:
                logger.removeHandler(handler)
        final = store.runs.get(run.id)
        assert final.status == "succeeded"
        load = final.step("load")
        assert load is not None and [a.outcome for a in load.history] == ["failed", "succeeded"]
        lines = store.logs.read(run.id).items
        assert [ln.event for ln in lines] == [
            "log.keepstone.test.sync",
            "artifact.persisted",
            "step.retry",
            "log.keepstone.test.sync",
        ]
        assert [ln.line for ln in lines] == [1, 2, 3, 4]
        rows = list(store.artifacts.read_jsonl(run.outputs["rows"].id))
        assert rows == [{"i": 0}, {"i": 1}]
        assert list(store.logs.follow(run.id)) == lines  # sealed: follow ends


def test_streams_in_and_out(tmp_path: Path) -> None:
    with keepstone.connect(store_url("sqlite", tmp_path)) as store:
        docs = store.artifacts.create_collection("docs")
        chunks = (bytes([65 + i]) * 1000 for i in range(5))  # a generator: read in a thread
        art = store.artifacts.create(docs.id, "big", chunks)
        assert art.size == 5000
        streamed = list(store.artifacts.read_stream(art.id))
        assert b"".join(streamed) == store.artifacts.read(art.id)
        blob = store.blobs.put_stream([b"a", b"b"])  # a list where a stream is wanted
        assert store.blobs.get(blob.digest) == b"ab"
        stream = store.blobs.stream(art.digest, chunk_size=1000)
        assert next(stream) == b"A" * 1000
        stream.close()  # stopping early is fine
        assert store.diagnose().ok and "durable" in store.capabilities


def test_many_threads_share_one_store(tmp_path: Path) -> None:
    with keepstone.connect(store_url("sqlite", tmp_path)) as store:
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(5):
                    run = store.runs.create(f"job-{n}", id=f"run_{n}_{i}")
                    store.runs.transition(run.id, "running")
                    store.logs.write(run.id, "tick", data={"n": n})
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(store.runs.list(limit=100).items) == 40
        assert store.audit.verify().ok


def test_works_inside_a_running_event_loop_and_refuses_reentry(tmp_path: Path) -> None:
    with keepstone.connect(store_url("sqlite", tmp_path)) as store:

        async def notebook_cell() -> str:
            return store.runs.create("from-a-notebook").name  # blocking call, loop running

        assert asyncio.run(notebook_cell()) == "from-a-notebook"
        calls: list[str] = []

        def progress(stage: str, done: int) -> None:  # runs on keepstone's loop thread
            try:
                store.runs.list()
            except keepstone.StorageError as exc:
                calls.append(exc.code)

        store.snapshots.export_to(tmp_path / "out.tar", progress=progress)
        assert calls and set(calls) == {"invalid"}


def test_ctrl_c_in_a_step_cancels_the_run_and_it_resumes(tmp_path: Path) -> None:
    with keepstone.connect(store_url("sqlite", tmp_path)) as store:

        def interrupted() -> None:
            with store.runs.start("etl", id="run_sync") as run, run.step("extract"):
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            interrupted()
        cancelled = store.runs.get("run_sync")
        assert cancelled.status == "cancelled" and cancelled.error is not None
        assert cancelled.error.type == "KeyboardInterrupt" and cancelled.error.step == "extract"
        with store.runs.resume("run_sync") as again:
            assert again.should_run("extract")
            with again.step("extract"):
                again.save_output("out", "done")
        assert store.runs.get("run_sync").status == "succeeded"
        assert store.artifacts.query(ArtifactQuery(run_id="run_sync")).items


def test_ctrl_c_while_a_call_waits_cancels_it_and_the_run(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "sync_child.py"), url, "run_wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "WAITING"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGINT, err
    assert "KeyboardInterrupt" in err
    with keepstone.connect(url) as store:
        run = store.runs.get("run_wait")
        assert run.status == "cancelled" and run.error is not None
        assert (run.error.type, run.error.step) == ("KeyboardInterrupt", "wait")
        with store.runs.resume("run_wait") as again, again.step("wait"):
            pass
        assert [a.outcome for a in store.runs.get("run_wait").history] == [
            "cancelled",
            "succeeded",
        ]


def test_acting_as_names_the_actor(tmp_path: Path) -> None:
    with keepstone.connect(store_url("sqlite", tmp_path), actor="script") as store:
        store.runs.create("a")
        with keepstone.acting_as("alice"):
            store.runs.create("b")
        assert [r.actor for r in store.audit.list().items] == ["script", "alice"]


def test_the_protocols_describe_what_the_proxies_have() -> None:
    with keepstone.connect("memory://") as store, store.runs.start("etl") as run:
        described: list[tuple[object, type]] = [
            (run, protocols.SyncPipelineRun),
            (store.runs, protocols.SyncRunService),
            (store.runs.ports, protocols.SyncRunStore),
            (store.artifacts, protocols.SyncArtifactStore),
            (store.blobs, protocols.SyncBlobStore),
            (store.logs, protocols.SyncLogStore),
            (store.memory, protocols.SyncMemoryStore),
            (store.events, protocols.SyncEventLog),
            (store.audit, protocols.SyncAuditLog),
            (store.context, protocols.SyncContextStore),
            (store.snapshots, protocols.SyncSnapshotStore),
            (store.doctor, protocols.SyncDoctor),
            (store.paths, protocols.SyncPathService),
            (store.review, protocols.SyncReviewGate),
            (store.retention, protocols.SyncRetentionService),
            (store.gc, protocols.SyncBlobCollector),
        ]
        every = {p for p in vars(protocols).values() if inspect.isclass(p)}
        assert {p for _, p in described} == {p for p in every if p.__name__.startswith("Sync")}
        for proxy, protocol in described:
            assert isinstance(proxy, SyncProxy)
            for member in vars(protocol):
                if not member.startswith("_"):
                    assert hasattr(proxy, member), f"{protocol.__name__}.{member}"


def test_the_generated_protocols_are_current() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_sync_types
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert gen_sync_types.generate() == gen_sync_types.TARGET.read_text(), (
        "src/keepstone/sync/protocols.py is stale: run .venv/bin/python scripts/gen_sync_types.py"
    )
