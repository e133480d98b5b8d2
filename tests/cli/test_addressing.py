"""Addressing: what a bare path opens, ambiguous paths, unknown schemes,
names wherever ids are accepted, and global options anywhere on the line."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

import keepstone
from keepstone.errors import StorageError


async def _open_fails(url: str) -> StorageError:
    with pytest.raises(StorageError) as caught:
        async with keepstone.open(url):
            pass
    return caught.value


@pytest.mark.parametrize("name", ["my.db", "store.sqlite", "nested/x.SQLITE3"])
def test_a_bare_path_with_a_sqlite_suffix_opens_sqlite(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nested").mkdir()

    async def main() -> str:
        async with keepstone.open(name) as store:
            await store.runs.create("etl")
            return store.backend.name

    assert asyncio.run(main()) == "sqlite"
    assert (tmp_path / name).is_file()
    assert (tmp_path / name).read_bytes()[:16] == b"SQLite format 3\x00"


def test_a_bare_path_without_a_suffix_is_still_a_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async def main() -> str:
        async with keepstone.open("ws") as store:
            return store.backend.name

    assert asyncio.run(main()) == "file"
    assert (tmp_path / "ws" / "keepstone.json").is_file()


def test_ambiguous_paths_name_the_url_to_write(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    err = asyncio.run(_open_fails(str(plain)))
    assert err.code == "config" and f"sqlite:///{plain}" in err.message
    folder = tmp_path / "old.db"
    folder.mkdir()
    err = asyncio.run(_open_fails(str(folder)))
    assert err.code == "config" and f"file://{folder}" in err.message
    assert os.listdir(folder) == []  # nothing was created in it
    err = asyncio.run(_open_fails("sqlite:/x.db"))
    assert err.code == "config" and "://" in err.message


@pytest.mark.parametrize(
    ("url", "suggested"),
    [("sqlit:///x.db", "sqlite"), ("postgressql://h/db", "postgresql"), ("mem://", "memory")],
)
def test_an_unknown_scheme_suggests_the_closest(url: str, suggested: str) -> None:
    err = asyncio.run(_open_fails(url))
    assert err.code == "config"
    assert f"did you mean {suggested}://?" in err.message
    assert err.details["suggestion"] == suggested
    assert json.dumps(err.details)  # details stay JSON
