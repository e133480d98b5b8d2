"""Scenario 8: query latency as the store grows.

The store is filled tier by tier (not timed; 64 concurrent creators, so a
backend with group commit fills fast); at each tier we time single queries
by name, digest, metadata and full text, each aimed at one random artifact,
and report medians.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from bench.context import Context
from bench.keepstone_side import open_store
from bench.report import Row, fmt_seconds, growth_row, max_value_row, skip_row
from bench.timing import Measurement, run_async
from keepstone.schemas.artifacts import ArtifactQuery

NAME = "queries"
TITLE = "8. query latency as the store grows"
KINDS = ("name", "digest", "metadata", "text")
ROWS = {
    "8a": "query by name (get_by_name), growth",
    "8b": "query by digest, growth",
    "8c": "query by metadata, growth",
    "8d": "query by full text, growth",
    "8e": "query by name at 1M",
    "8f": "query by digest at 1M",
    "8g": "query by metadata at 1M",
}
MILLION = 1_000_000
FILL_CONCURRENCY = 64
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "theta",
    "kappa",
    "lambda",
    "sigma",
    "omega",
]


def text_of(i: int) -> str:
    """Text content with one word unique to artifact ``i`` (``u<i>x``)."""
    common = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(6))
    return f"Report {i} of the nightly run mentions u{i}x and {common}.\n"


async def run(ctx: Context) -> list[Row]:
    tiers = ctx.sizes.query_tiers
    results: dict[int, dict[str, Measurement]] = {}
    with ctx.workdir(NAME) as work:
        async with open_store(ctx.keepstone_url(work)) as store:
            collection = await store.artifacts.create_collection("bench")
            digests: list[str] = []
            for tier in tiers:
                await fill(ctx, store, collection.id, digests, tier)
                results[tier] = await measure_tier(ctx, store, collection.id, digests, tier)

    rows: list[Row] = []
    small, large = tiers[0], tiers[-1]
    for letter, kind in zip("abcd", KINDS, strict=True):
        row = growth_row(
            f"8{letter}",
            f"query by {kind}, {small:,} → {large:,} artifacts",
            results[small][kind],
            results[large][kind],
            small,
            large,
        )
        rows.append(row)
    for letter, kind in zip("efg", KINDS[:3], strict=True):
        scenario = f"query by {kind} at {MILLION:,} artifacts, median"
        if MILLION in results:
            rows.append(
                max_value_row(
                    f"8{letter}", scenario, results[MILLION][kind].p50, 0.002, fmt_seconds
                )
            )
        else:
            rows.append(skip_row(f"8{letter}", scenario, "≤ 2.00 ms", "run with --large"))
    ctx.extra["query_medians_s"] = {
        str(tier): {kind: m.p50 for kind, m in by_kind.items()} for tier, by_kind in results.items()
    }
    return rows


async def fill(ctx: Context, store: Any, collection_id: str, digests: list[str], tier: int) -> None:
    start = len(digests)
    ctx.say(f"    filling {start:,} → {tier:,} artifacts")
    digests.extend([""] * (tier - start))
    next_index = iter(range(start, tier))

    async def creator() -> None:
        for i in next_index:
            art = await store.artifacts.create(
                collection_id,
                f"doc-{i:07d}",
                text_of(i),
                metadata={"k": i, "group": i % 100},
            )
            digests[i] = art.digest

    await asyncio.gather(*(creator() for _ in range(FILL_CONCURRENCY)))


async def measure_tier(
    ctx: Context, store: Any, collection_id: str, digests: list[str], tier: int
) -> dict[str, Measurement]:
    rng = random.Random(tier)
    targets = [rng.randrange(tier) for _ in range(ctx.sizes.queries_per_kind + 50)]

    def pick(i: int) -> int:
        return targets[i % len(targets)]

    async def by_name(i: int) -> Any:
        return [await store.artifacts.get_by_name(collection_id, f"doc-{pick(i):07d}")]

    async def by_digest(i: int) -> Any:
        return (await store.artifacts.query(ArtifactQuery(digest=digests[pick(i)]))).items

    async def by_metadata(i: int) -> Any:
        return (await store.artifacts.query(ArtifactQuery(metadata={"k": pick(i)}))).items

    async def by_text(i: int) -> Any:
        return (await store.artifacts.query(ArtifactQuery(text=f"u{pick(i)}x"))).items

    ops: dict[str, Callable[[int], Awaitable[Any]]] = {
        "name": by_name,
        "digest": by_digest,
        "metadata": by_metadata,
        "text": by_text,
    }
    out: dict[str, Measurement] = {}
    for kind, op in ops.items():
        found = await op(0)
        if len(found) != 1 or found[0].name != f"doc-{pick(0):07d}":
            raise AssertionError(f"query by {kind} found {[a.name for a in found]}")
        out[kind] = ctx.record(
            await run_async(
                f"keepstone query by {kind} at {tier:,}",
                op,
                ctx.sizes.queries_per_kind,
                warmup=3,
                max_seconds=ctx.sizes.query_seconds,
            )
        )
    return out
