"""``make run``'s demo runs to completion and verifies its audit chain."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs(tmp_path: Path) -> None:
    env = dict(os.environ, KEEPSTONE_DEMO_STORE="memory://")
    out = subprocess.run(
        [sys.executable, "-m", "keepstone.demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "graph == replay: True" in out.stdout
    assert "audit chain: verified" in out.stdout
