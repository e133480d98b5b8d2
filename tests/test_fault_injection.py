"""Fault injection: a full disk and I/O errors during writes.

Faults are real, at the OS boundary: a size-limited tmpfs gives ENOSPC, and an
LD_PRELOAD shim (``faults/failio.c``) makes write/fsync fail with EIO while a
trigger file exists. keepstone itself is not patched. Each fault must give a
clean StorageError, never a raw exception; no acknowledged write may be lost;
the store must pass the doctor; and writes must succeed again once the fault
is gone.

Mounting needs root (as on CI): elsewhere these tests skip with the reason,
unless ``KEEPSTONE_REQUIRE_FAULTS=1``, which CI sets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import keepstone
from keepstone.schemas import EventQuery
from tests.conftest import DURABLE_BACKENDS, store_url

HERE = Path(__file__).parent / "faults"
LOCAL_BACKENDS = [b for b in DURABLE_BACKENDS if b in ("sqlite", "file")]


def require(reason: str) -> None:
    if os.environ.get("KEEPSTONE_REQUIRE_FAULTS") == "1":
        pytest.fail(f"fault injection is required here but unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def failio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        require("no C compiler to build the LD_PRELOAD fault shim")
    out = tmp_path_factory.mktemp("failio") / "failio.so"
    subprocess.run(
        [str(cc), "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "failio.c"), "-ldl"],
        check=True,
    )
    return out


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        require("mounting a size-limited tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        require(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk is full."""
    with contextlib.suppress(OSError), open(path, "wb") as out:
        while True:
            out.write(b"\0" * 65536)
            out.flush()


class Writer:
    """Drives tests/faults/writer.py over stdin/stdout."""

    def __init__(self, url: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "writer.py"), url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=Path(__file__).parent.parent,
        )
        self.acked: list[str] = []

    def write(self, count: int, tag: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"write {count} {tag}\n")
        self.proc.stdin.flush()
        results = []
        while True:
            line = self.proc.stdout.readline().strip()
            assert line, f"writer died: {self.proc.stderr.read() if self.proc.stderr else ''}"
            if line == "done":
                return results
            assert not line.startswith("crash"), line
            results.append(line)
            if line.startswith("ack "):
                self.acked.append(line[4:])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        out, err = self.proc.communicate(timeout=60)
        assert "crash" not in out, out + err
        assert self.proc.returncode == 0, err


async def check_store(url: str, acked: list[str]) -> None:
    async with keepstone.open(url) as store:
        ids = [e.id async for e in store.events.iterate(EventQuery(profile_id="prf_faults"))]
        assert set(acked) <= set(ids), sorted(set(acked) - set(ids))[:5]
        assert len(ids) == len(set(ids))
        report = await store.diagnose()
        assert report.ok, report.diagnostics
        assert (await store.audit.verify()).ok


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
async def test_full_disk_gives_a_clean_error_and_recovers(backend: str, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "16m") as disk:
        url = store_url(backend, disk)
        writer = Writer(url)
        assert all(r.startswith("ack") for r in writer.write(20, "before"))
        filler = disk / "filler"
        fill(filler)
        results = writer.write(30, "full")
        assert any(r.startswith("err ") for r in results), results
        assert all(r in ("err unavailable", "err invalid") or r.startswith("ack") for r in results)
        filler.unlink()
        after = writer.write(20, "after")
        assert all(r.startswith("ack") for r in after), (
            f"no recovery: {[r for r in after if not r.startswith('ack')][:3]} of {len(after)}"
        )
        writer.close()
        await check_store(url, writer.acked)


@pytest.mark.parametrize("backend", LOCAL_BACKENDS)
async def test_io_errors_give_a_clean_error_and_recover(
    backend: str, tmp_path: Path, failio: Path
) -> None:
    url = store_url(backend, tmp_path)
    trigger = tmp_path / "fail-now"
    env = {
        "LD_PRELOAD": str(failio),
        "KS_FAIL_TRIGGER": str(trigger),
        "KS_FAIL_PREFIX": str(tmp_path),
        "KS_FAIL_ERRNO": "5",
    }
    writer = Writer(url, env)
    assert all(r.startswith("ack") for r in writer.write(10, "before"))
    trigger.write_text("on")
    results = writer.write(10, "eio")
    assert results and all(r == "err unavailable" for r in results), results
    trigger.unlink()
    after = writer.write(10, "after")
    assert all(r.startswith("ack") for r in after), (
        f"no recovery: {[r for r in after if not r.startswith('ack')][:3]} of {len(after)}"
    )
    writer.close()
    await check_store(url, writer.acked)
