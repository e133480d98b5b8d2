"""Stores are created owner-only; secrets in URLs never show up in errors or output."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import keepstone
from tests.conftest import DURABLE_BACKENDS, store_url

LOCAL = [b for b in DURABLE_BACKENDS if b in ("sqlite", "file")]


def modes(root: Path) -> dict[str, tuple[bool, int]]:
    """Every path under ``root``: (is a directory, permission bits)."""
    found = {str(root): (True, stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path)] = (path.is_dir(), stat.S_IMODE(path.lstat().st_mode))
    return found


@pytest.mark.parametrize("backend", LOCAL)
async def test_new_stores_are_owner_only(backend: str, tmp_path: Path) -> None:
    location = tmp_path / "store"
    location.mkdir(mode=0o700)
    async with keepstone.open(store_url(backend, location)) as store:
        run = await store.runs.create("etl")
        coll = await store.artifacts.create_collection("docs")
        await store.artifacts.create(coll.id, "big", b"x" * (1 << 20))  # a blob file
        await store.logs.write(run.id, "hello")
    for path, (is_dir, mode) in modes(location).items():
        expected = 0o700 if is_dir else 0o600
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}, want {oct(expected)}"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://keeper:hunter2-secret@127.0.0.1:1/nowhere",
        "postgresql://keeper:hunter2-secret@127.0.0.1:1/db?blobs=s3://b/p"
        "&aws_secret_access_key=hunter2-secret",
    ],
)
async def test_secrets_in_urls_never_appear_in_errors(url: str) -> None:
    with pytest.raises(keepstone.StorageError) as info:
        await keepstone.open(url, connect_timeout=1)
    shown = f"{info.value} {info.value!r} {info.value.to_dict()}"
    assert "hunter2-secret" not in shown
    assert info.value.code in ("unavailable", "config")
