"""Scenario 7: artifact put and get, small and large, against writing the
same bytes as files with an fsync each, and reading them back.

``artifacts.read`` verifies the content's SHA-256 digest by default, so its
yardstick is the verified limit: read the file AND hash it. Reading without
hashing is kept as a reference for ``read(verify=False)``.
"""

from __future__ import annotations

import random

from bench.context import Context
from bench.keepstone_side import open_store
from bench.peer_raw import fsync_dir, read_and_hash, read_file, write_file
from bench.report import Row, fmt_bytes, info_ratio_row, ratio_row
from bench.timing import Measurement, run_async, run_sync

NAME = "artifacts"
TITLE = "7. artifact put and get"
ROWS = {
    "7a": "artifact put, small",
    "7b": "artifact get, small",
    "7c": "artifact put, large",
    "7d": "artifact get, large",
    "7e": "artifact get, large, verify=False",
}


def contents(count: int, size: int, seed: int) -> list[bytes]:
    """``count`` distinct payloads of ``size`` random bytes (distinct prefixes)."""
    base = random.Random(seed).randbytes(size)
    return [i.to_bytes(8, "big") + base[8:] for i in range(count)]


async def run(ctx: Context) -> list[Row]:
    s = ctx.sizes
    small = await one_size(ctx, s.small_artifacts, s.small_size)
    large = await one_size(ctx, s.big_artifacts, s.big_size)
    ks_put, ks_get, _, f_put, f_get, _ = small
    lks_put, lks_get, lks_get_nv, lf_put, lf_get, lf_read = large
    small_tag = f"{s.small_artifacts:,} × {fmt_bytes(s.small_size)}"
    large_tag = f"{s.big_artifacts:,} × {fmt_bytes(s.big_size)}"
    return [
        ratio_row(
            "7a", f"artifact put, {small_tag}", ks_put, f_put, "file+fsync", 0.7, unit=" puts/s"
        ),
        ratio_row(
            "7b",
            f"artifact get, {small_tag}",
            ks_get,
            f_get,
            "file read+sha256",
            0.7,
            unit=" gets/s",
        ),
        ratio_row(
            "7c",
            f"artifact put, {large_tag}",
            lks_put,
            lf_put,
            "file+fsync",
            0.7,
            per="mb",
            unit=" MB/s",
        ),
        ratio_row(
            "7d",
            f"artifact get, {large_tag}",
            lks_get,
            lf_get,
            "file read+sha256",
            0.7,
            per="mb",
            unit=" MB/s",
        ),
        info_ratio_row(
            "7e",
            f"artifact get, {large_tag}, verify=False",
            lks_get_nv,
            lf_read,
            "file read",
            "without re-hashing on read, against reading alone",
            per="mb",
            unit=" MB/s",
        ),
    ]


async def one_size(
    ctx: Context, count: int, size: int
) -> tuple[Measurement, Measurement, Measurement, Measurement, Measurement, Measurement]:
    """keepstone's put, get and unverified get; files' put, read+hash and read."""
    tag = f"{fmt_bytes(size)}"
    data = contents(count, size, seed=size)
    warm = contents(max(1, min(50, count // 20)), size, seed=size + 1)
    with ctx.workdir(f"{NAME}-{size}") as work:
        async with open_store(ctx.keepstone_url(work)) as store:
            collection = await store.artifacts.create_collection("bench")
            ids: list[str] = []

            async def put(i: int) -> None:
                if i < 0:
                    await store.artifacts.create(collection.id, f"w{-i}", warm[-i - 1])
                    return
                art = await store.artifacts.create(collection.id, f"a{i}", data[i])
                ids.append(art.id)

            ks_put = ctx.record(
                await run_async(
                    f"keepstone artifacts.create {tag}",
                    put,
                    count,
                    bytes_per_op=size,
                    writes=True,
                )
            )

            async def get(i: int) -> None:
                await store.artifacts.read(ids[i])

            async def get_unverified(i: int) -> None:
                await store.artifacts.read(ids[i], verify=False)

            ks_get = ctx.record(
                await run_async(f"keepstone artifacts.read {tag}", get, count, bytes_per_op=size)
            )
            ks_get_nv = ctx.record(
                await run_async(
                    f"keepstone artifacts.read(verify=False) {tag}",
                    get_unverified,
                    count,
                    bytes_per_op=size,
                )
            )

        files = work / "files"
        files.mkdir()

        def file_put(i: int) -> None:
            if i < 0:
                write_file(files / f"w{-i}", warm[-i - 1])
            else:
                write_file(files / f"a{i}", data[i])

        f_put = ctx.record(
            run_sync(f"file write+fsync {tag}", file_put, count, bytes_per_op=size, writes=True)
        )
        fsync_dir(files)
        f_get = ctx.record(
            run_sync(
                f"file read + sha256 {tag}",
                lambda i: read_and_hash(files / f"a{max(i, 0)}"),
                count,
                bytes_per_op=size,
            )
        )
        f_read = ctx.record(
            run_sync(
                f"file read {tag}",
                lambda i: read_file(files / f"a{max(i, 0)}"),
                count,
                bytes_per_op=size,
            )
        )
    return ks_put, ks_get, ks_get_nv, f_put, f_get, f_read
