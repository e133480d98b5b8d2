"""A run's log: durable ERROR lines, order, per-run line numbers, flushes."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import keepstone
from keepstone.schemas import LogLine
from tests.conftest import DURABLE_BACKENDS, store_url

CHILD = Path(__file__).with_name("log_child.py")

# Each kind of writer: through the caller's loop (memory), a second connection
# (sqlite, postgres); the file workspace's is covered by the crash test.
writer_kinds = pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres"], indirect=True)
some_backends = pytest.mark.parametrize("backend", ["memory", "sqlite"], indirect=True)


def run_child(url: str, run_id: str, mode: str) -> int:
    proc = subprocess.run(
        [sys.executable, str(CHILD), url, run_id, mode], capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode


async def lines_of(url: str, run_id: str) -> list[LogLine]:
    async with keepstone.open(url) as store:
        return list((await store.logs.read(run_id)).items)


@pytest.mark.parametrize("backend", DURABLE_BACKENDS)
async def test_an_error_line_is_stored_before_the_logging_call_returns(
    backend: str, tmp_path: Path
) -> None:
    url = store_url(backend, tmp_path)
    assert run_child(url, "run_err", "error") == -signal.SIGKILL
    got = [(ln.level, ln.message, ln.step, ln.line) for ln in await lines_of(url, "run_err")]
    assert got == [
        ("info", "first", "work", 1),
        ("info", "second", "work", 2),
        ("error", "the last words", "work", 3),
    ]


async def test_lines_below_error_are_written_within_the_flush_interval(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    assert run_child(url, "run_int", "interval") == -signal.SIGKILL
    assert [ln.message for ln in await lines_of(url, "run_int")] == ["only line"]


async def test_queued_lines_are_written_when_the_interpreter_exits(tmp_path: Path) -> None:
    url = store_url("file", tmp_path)
    assert run_child(url, "run_exit", "exit") == 0
    assert [ln.message for ln in await lines_of(url, "run_exit")] == ["only line"]


@writer_kinds
async def test_lines_come_back_in_the_order_they_were_logged(store: keepstone.Store) -> None:
    logger = logging.getLogger("keepstone.test.order")
    logger.setLevel(logging.INFO)
    async with store.runs.start("ordered") as run:
        handler = run.logging_handler()
        logger.addHandler(handler)
        try:
            for step in ("fetch", "summarize"):
                async with run.step(step):
                    logger.info("%s started", step)
                    await run.save_output(step, f"output of {step}")
                    logger.info("%s saved", step)
                    await run.log("custom", f"{step} logged directly")
                    logger.warning("%s done", step)
        finally:
            logger.removeHandler(handler)
    lines = (await store.logs.read(run.id)).items
    assert [(ln.step, ln.event, ln.message) for ln in lines] == [
        (step, event, message)
        for step in ("fetch", "summarize")
        for event, message in (
            ("log.keepstone.test.order", f"{step} started"),
            ("artifact.persisted", f"output {step!r} stored"),
            ("log.keepstone.test.order", f"{step} saved"),
            ("custom", f"{step} logged directly"),
            ("log.keepstone.test.order", f"{step} done"),
        )
    ]
    assert [ln.line for ln in lines] == list(range(1, len(lines) + 1))
    assert handler.errors == [] and handler.dropped == 0
    logger.addHandler(handler)
    try:
        logger.info("after the run ended")  # cannot be stored: counted, not raised
    finally:
        logger.removeHandler(handler)
    assert handler.dropped == 1


@some_backends
async def test_line_numbers_continue_across_a_resume(store: keepstone.Store) -> None:
    logger = logging.getLogger("keepstone.test.resume")
    logger.setLevel(logging.INFO)

    async def attempt(fail: bool) -> None:
        async with store.runs.start("again", id="run_again") as run:
            handler = run.logging_handler()
            logger.addHandler(handler)
            try:
                async with run.step("only"):
                    logger.info("working")
                    if fail:
                        raise RuntimeError("flaky")
            finally:
                logger.removeHandler(handler)

    with pytest.raises(RuntimeError, match="flaky"):
        await attempt(fail=True)
    await attempt(fail=False)
    lines = (await store.logs.read("run_again")).items
    assert [(ln.line, ln.event) for ln in lines] == [
        (1, "log.keepstone.test.resume"),
        (2, "run.resumed"),
        (3, "log.keepstone.test.resume"),
    ]
    ref = await store.logs.reference("run_again")
    assert ref is not None and ref.lines == 3


@writer_kinds
async def test_logging_from_other_threads_keeps_every_line(store: keepstone.Store) -> None:
    logger = logging.getLogger("keepstone.test.threads")
    logger.setLevel(logging.INFO)
    async with store.runs.start("threaded") as run:
        handler = run.logging_handler(flush_interval=0.01)
        logger.addHandler(handler)
        try:

            def work(n: int) -> None:
                for i in range(20):
                    logger.info("thread %d line %d", n, i)
                logger.error("thread %d done", n)

            await asyncio.gather(*(asyncio.to_thread(work, n) for n in range(4)))
        finally:
            logger.removeHandler(handler)
    lines = (await store.logs.read(run.id, limit=1000)).items
    assert len(lines) == 4 * 21
    for n in range(4):
        mine = [ln.message for ln in lines if ln.message and ln.message.startswith(f"thread {n} ")]
        assert mine == [f"thread {n} line {i}" for i in range(20)] + [f"thread {n} done"]
    assert [ln.line for ln in lines] == list(range(1, len(lines) + 1))
