"""What the run ran on: printed above the table and written to the JSON."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("keepstone", "eventsourcing", "langgraph-checkpoint-sqlite", "aiosqlite", "pydantic")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def filesystem_of(path: Path) -> str:
    """``device type`` of the mount holding ``path`` (Linux), else ``unknown``."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    target = str(path.resolve())
    best = ("", "unknown", "unknown")
    for fields in mounts:
        device, point, kind = fields[0], fields[1], fields[2]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best[0]):
            best = (point, device, kind)
    return f"{best[1]} ({best[2]}) mounted on {best[0]}"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe(store_root: Path) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_average": [round(x, 2) for x in load],
        "store_dir": str(store_root),
        "filesystem": filesystem_of(store_root),
        "packages": package_versions(),
    }
