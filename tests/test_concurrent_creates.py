"""Two processes racing on creates with caller-chosen ids (issue: idempotent
creates under concurrency).

Both processes make the same creates, with the same ids and content, round
after round, every kind at once (:data:`keepstone.testing.creates.KINDS`).
Every create must succeed in both, both must get the same record, and the
store must hold each record once, with one audit record per create.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import keepstone
from keepstone.schemas import AuditQuery
from keepstone.testing.creates import KINDS, setup_all
from tests.conftest import DURABLE_BACKENDS, store_url
from tests.creates_child import CREATES

CHILD = Path(__file__).with_name("creates_child.py")
ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 10


async def _race(url: str) -> list[bytes]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            url,
            str(ROUNDS),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            _, err = await proc.communicate()
            raise AssertionError(f"child did not start: {line!r} {err.decode()[-2000:]}")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    outputs = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert out.strip().endswith(b"done"), out[-2000:]
        outputs.append(out)
    return outputs


@pytest.mark.parametrize("backend", DURABLE_BACKENDS)
async def test_two_processes_racing_identical_creates_make_each_record_once(
    backend: str, tmp_path: Path
) -> None:
    assert sorted(CREATES) == sorted(spec.prefix for spec in KINDS.values())
    url = store_url(backend, tmp_path)
    async with keepstone.open(url) as store:
        await setup_all(store)
        listed = {kind: await spec.listed(store) for kind, spec in KINDS.items()}
        head = await store.audit.head()

    outputs = await _race(url)

    records: list[dict[str, object]] = [{}, {}]
    errors: list[str] = []
    for mine, out in zip(records, outputs, strict=True):
        for line in out.splitlines()[:-1]:
            ident, record, *error = orjson.loads(line)
            if error:
                errors.append(f"{ident}: {error[0]}")
            mine[ident] = record
    assert not errors, f"{len(errors)} of {2 * ROUNDS * len(KINDS)} creates failed: {errors}"
    differ = {i: (r, records[1].get(i)) for i, r in records[0].items() if records[1].get(i) != r}
    assert not differ, f"the two processes got different records: {differ}"
    assert len(records[0]) == ROUNDS * len(KINDS)

    async with keepstone.open(url) as store:
        since = AuditQuery(after_seq=0 if head is None else head.seq)
        audit = (await store.audit.list(since, limit=1000)).items
        for kind, spec in KINDS.items():
            made = [f"{spec.prefix}-r{n}" for n in range(ROUNDS)]
            assert await spec.listed(store) == sorted([*listed[kind], *made]), kind
            creates = [r for r in audit if r.action == spec.action]
            assert len(creates) == ROUNDS, (kind, [r.target for r in creates])
        assert (await store.audit.verify()).ok
