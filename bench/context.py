"""What every scenario gets: the counts to use, where to put its files, and
where to record what it measured."""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.keepstone_side import store_url
from bench.timing import Measurement


@dataclass(frozen=True)
class Sizes:
    """The counts a run uses (printed at the top of every run)."""

    append_one: int = 3000
    """Scenario 1: single-event appends per system."""
    concurrent_callers: int = 64
    concurrent_events: int = 32_000
    """Scenario 2: events appended by keepstone's concurrent callers, in all."""
    concurrent_peer_events: int = 3_200
    """Scenario 2: events saved by eventsourcing's concurrent callers, in all."""
    batch_calls: int = 200
    batch_size: int = 100
    """Scenario 3: ``batch_calls`` calls of ``batch_size`` events per system."""
    replay_events: int = 100_000
    """Scenario 4: events in the log being replayed."""
    snapshot_puts: int = 500
    snapshot_gets: int = 500
    """Scenario 5: puts and latest-gets per system and state size."""
    snapshot_sizes: tuple[int, ...] = (2_048, 20_480)
    storage_steps: int = 100
    storage_constant: int = 1 << 20
    storage_changing: int = 2_048
    """Scenario 6: steps of a state with a constant and a changing part."""
    small_artifacts: int = 10_000
    small_size: int = 4_096
    big_artifacts: int = 100
    big_size: int = 4 << 20
    """Scenario 7: artifacts of each size, put then read back."""
    query_tiers: tuple[int, ...] = (10_000, 100_000)
    queries_per_kind: int = 300
    query_seconds: float = 4.0
    """Scenario 8: store sizes; queries of each kind per tier (capped in time)."""
    ui_runs: int = 100_000
    ui_events: int = 1_000_000
    ui_artifacts: int = 100_000
    """Scenario 12: the store the inspector's pages are timed on."""
    ui_checkpoints: int = 1_000
    """Scenario 12: checkpoints of the LangGraph thread whose pages are timed."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT = Sizes()
LARGE = replace(DEFAULT, query_tiers=(10_000, 100_000, 1_000_000))
MEMORY_QUERY_TIERS = (1_000, 10_000)
"""The in-memory reference backend finds by full scan (its creates check
names by scan too), so filling it to 100k artifacts takes hours: with
``--backend memory`` the query tiers stop at 10k, and the run says so."""

QUICK = Sizes(
    append_one=150,
    concurrent_events=640,
    concurrent_peer_events=128,
    batch_calls=10,
    replay_events=3_000,
    snapshot_puts=40,
    snapshot_gets=40,
    storage_steps=10,
    small_artifacts=150,
    big_artifacts=3,
    big_size=1 << 20,
    query_tiers=(300, 1_500),
    queries_per_kind=20,
    query_seconds=1.0,
    ui_runs=1_000,
    ui_events=10_000,
    ui_artifacts=1_000,
    ui_checkpoints=50,
)


@dataclass
class Context:
    backend: str
    """The keepstone backend under test: ``sqlite`` or ``memory``."""
    sizes: Sizes
    root: Path
    large: bool = False
    verbose: bool = True
    measurements: list[Measurement] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    """Durability settings each peer was seen to run with."""

    @contextmanager
    def workdir(self, name: str) -> Iterator[Path]:
        """A fresh directory for one scenario, removed when it ends."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def keepstone_url(self, directory: Path) -> str:
        store_dir = directory / "keepstone"
        store_dir.mkdir(exist_ok=True)
        return store_url(self.backend, store_dir)

    def record(self, m: Measurement) -> Measurement:
        self.measurements.append(m)
        self.say(
            f"    {m.label}: {m.ops} ops in {m.seconds:.2f} s, "
            f"{m.items_per_s:,.0f} items/s, p50 {m.p50 * 1e6:,.0f} µs"
        )
        return m

    def peer(self, name: str) -> ModuleType | None:
        """``bench.peer_<name>``, or ``None`` when the peer is not installed."""
        try:
            return importlib.import_module(f"bench.peer_{name}")
        except ImportError as exc:
            self.say(f"    {name}: peer not installed ({exc})")
            return None

    def say(self, message: str) -> None:
        if self.verbose:
            print(message, file=sys.stderr, flush=True)
