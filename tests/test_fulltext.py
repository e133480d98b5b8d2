"""The words rule of full-text search, and stores indexed under the old rule.

The rule (``keepstone.schemas.fulltext``) is checked word by word here; that
every backend answers the same is the conformance suite's job. What follows
is what only stores written before the rule see: SQLite's migration 3 and its
Python step, PostgreSQL's migration 3, the workspace's ``index.json``, and
the rebuild when a store was indexed under another rule or Unicode version.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

import keepstone
from keepstone.backends.sql.common import read_migrations
from keepstone.backends.sql.sqlite_fts import rebuild_fts
from keepstone.backends.sql.sqlite_open import PYTHON_STEPS
from keepstone.backends.sql.sqlite_schema import split_statements
from keepstone.engine.match import words as engine_words
from keepstone.errors import StorageError
from keepstone.schemas import ArtifactQuery
from keepstone.schemas.fulltext import WORDS_RULE, fold, words
from tests import postgres_support as pg

NFD = unicodedata.normalize("NFD", "Un café à İstanbul, η οδος")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (NFD, ["un", "cafe", "a", "istanbul", "η", "οδοσ"]),
        (unicodedata.normalize("NFC", NFD), ["un", "cafe", "a", "istanbul", "η", "οδοσ"]),
        ("STRASSE Straße straße", ["strasse", "strasse", "strasse"]),
        ("\ufb01ne \uff21\uff22 x\u00b2 \u2460", ["fine", "ab", "x2", "1"]),
        ("don't stop-me now_ok", ["don", "t", "stop", "me", "now_ok"]),
        ("東京都 と パン", ["東京都", "と", "パン"]),
        ("\uff8a\uff9f\uff9d", [unicodedata.normalize("NFKD", "パン")]),
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),
        ("Łódź ıstanbul Æsir", ["łodz", "ıstanbul", "æsir"]),
        ("emoji 🙂 sep", ["emoji", "sep"]),
        ("", []),
    ],
)
def test_words_rule(text: str, expected: list[str]) -> None:
    assert words(text) == [unicodedata.normalize("NFKD", w) for w in expected]
    assert engine_words is words  # the engines use this very function


def test_words_do_not_depend_on_the_normal_form() -> None:
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        assert words(unicodedata.normalize(form, NFD)) == words(NFD)
        assert fold(unicodedata.normalize(form, "Café")) == "cafe"


def test_words_are_fixed_points() -> None:
    sample = f"{NFD} STRASSE \ufb01ne 東京都 हिन्दी パン"
    for word in words(sample):
        assert words(word) == [word]


def test_no_other_definition_of_words_in_the_package() -> None:
    src = Path(keepstone.__file__).parent
    offenders = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if path.name != "fulltext.py"
        and path.parent.name != "testing"  # the suites normalise their test data
        and re.search(r"casefold\(|unicodedata\.normalize|re\.compile\(r\"\\w", path.read_text())
    ]
    assert offenders == []


# --------------------------------------------------------------------------- SQLite


def _old_fts_ddl() -> list[str]:
    """The FTS tables as migration 1 made them (FTS5's unicode61 over raw text)."""
    first = read_migrations("sqlite")[0].script
    return [s for s in split_statements(first) if "USING fts5" in s]


def _downgrade_sqlite(path: Path) -> None:
    """Make ``path`` what keepstone wrote before migration 3: schema version 2,
    no words stamp, FTS tables with the unicode61 tokenizer holding raw text."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("DROP TABLE artifact_text_fts")
        conn.execute("DROP TABLE nodes_fts")
        for statement in _old_fts_ddl():
            conn.execute(statement)
        for table, column, fts in (
            ("artifact_text", "text", "artifact_text_fts"),
            ("nodes", "content", "nodes_fts"),
        ):
            for rid, body in conn.execute(f"SELECT rid, body FROM {table}").fetchall():
                value = orjson.loads(body).get(column)
                if isinstance(value, str):
                    conn.execute(f"INSERT INTO {fts} (rowid, {column}) VALUES (?, ?)", (rid, value))
        conn.execute("UPDATE keepstone_meta SET value = 2 WHERE name = 'schema_version'")
        conn.execute("DELETE FROM keepstone_meta WHERE name = 'words_rule'")
        conn.execute("COMMIT")
    finally:
        conn.close()


def _fts_hits(path: Path, table: str, word: str) -> int:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            f"SELECT count(*) FROM {table}_fts WHERE {table}_fts MATCH ?", (f'"{word}"',)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def _meta(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return {str(k): str(v) for k, v in conn.execute("SELECT name, value FROM keepstone_meta")}
    finally:
        conn.close()


async def _fill(url: str) -> dict[str, str]:
    """Artifacts and nodes whose words differ between the old and new rules."""
    async with keepstone.open(url) as store:
        coll = await store.artifacts.create_collection("docs")
        cafe = await store.artifacts.create(coll.id, "cafe", unicodedata.normalize("NFD", "café"))
        greek = await store.artifacts.create(coll.id, "greek", "ΟΔΟΣ Straße")
        profile = await store.memory.create_profile("p")
        await store.memory.put_node(profile.id, "fact", content="İstanbul", id="n1")
        return {"cafe": cafe.id, "greek": greek.id, "profile": profile.id}


async def _search(store: keepstone.Store, text: str) -> list[str]:
    return [a.id for a in (await store.artifacts.query(ArtifactQuery(text=text))).items]


async def test_sqlite_store_of_the_old_schema_is_reindexed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    made = await _fill(f"sqlite:///{path}")
    _downgrade_sqlite(path)
    assert _fts_hits(path, "artifact_text", "cafe") == 0  # unicode61 kept the NFD accent
    assert _meta(path)["schema_version"] == "2"

    async with keepstone.open(f"sqlite:///{path}") as store:
        assert await _search(store, "cafe") == [made["cafe"]]
        assert await _search(store, "οδοσ strasse") == [made["greek"]]
        nodes = await store.memory.search_nodes(made["profile"], "istanbul")
        assert [n.id for n in nodes.items] == ["n1"]
        # The rebuilt index stays consistent through updates and deletes
        # (a contentless FTS5 delete needs exactly the values indexed).
        await store.artifacts.update(made["cafe"], "thé vert")
        await store.artifacts.delete(made["greek"])
        assert await _search(store, "cafe") == []
        assert await _search(store, "the") == [made["cafe"]]
        assert await _search(store, "strasse") == []
    assert _meta(path)["schema_version"] == str(read_migrations("sqlite")[-1].version)
    assert _meta(path)["words_rule"] == WORDS_RULE
    assert _fts_hits(path, "artifact_text", "cafe") == 0
    assert _fts_hits(path, "artifact_text", "the") == 1
    assert _fts_hits(path, "nodes", "istanbul") == 1


async def test_sqlite_index_of_another_words_rule_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "rule.db"
    made = await _fill(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO artifact_text_fts (artifact_text_fts) VALUES ('delete-all')")
        conn.execute("UPDATE keepstone_meta SET value = '1/unicode-0' WHERE name = 'words_rule'")
    conn.close()
    assert _fts_hits(path, "artifact_text", "cafe") == 0
    async with keepstone.open(f"sqlite:///{path}") as store:
        assert await _search(store, "CAFÉ") == [made["cafe"]]
    assert _meta(path)["words_rule"] == WORDS_RULE


async def test_sqlite_damaged_rows_do_not_stop_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    made = await _fill(f"sqlite:///{path}")
    _downgrade_sqlite(path)
    conn = sqlite3.connect(path)
    with conn:  # a row the step cannot index: a body that is not JSON
        conn.execute("UPDATE artifact_text SET body = x'ff' WHERE id = ?", (made["greek"],))
    conn.close()
    async with keepstone.open(f"sqlite:///{path}") as store:
        assert await _search(store, "cafe") == [made["cafe"]]
    assert _meta(path)["schema_version"] == str(read_migrations("sqlite")[-1].version)


async def test_sqlite_failing_python_step_rolls_back_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rollback.db"
    await _fill(f"sqlite:///{path}")
    _downgrade_sqlite(path)

    def failing(conn: sqlite3.Connection) -> None:
        rebuild_fts(conn)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(PYTHON_STEPS, 3, failing)
    with pytest.raises(StorageError):
        await keepstone.open(f"sqlite:///{path}")
    assert _meta(path)["schema_version"] == "2"
    assert "words_rule" not in _meta(path)
    conn = sqlite3.connect(path)
    try:
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'nodes_fts'").fetchone()
    finally:
        conn.close()
    assert "unicode61" in ddl[0]  # the version's SQL was rolled back with its step


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
async def schema(tmp_path: Path) -> AsyncIterator[str]:
    pg.require_postgres()
    name = pg.schema_for(tmp_path)
    try:
        yield name
    finally:
        await pg.drop_schemas([name])


def _old_lexemes(text: str) -> str:
    """A tsvector literal of the rule before version 3: lowercased ``\\w+``."""
    found = sorted({w.lower() for w in re.findall(r"\w+", text)})
    return " ".join("'" + w.replace("'", "''") + "'" for w in found)


async def test_postgres_store_of_the_old_schema_is_reindexed(schema: str) -> None:
    url = pg.url_for(schema)
    made = await _fill(url)
    conn = await pg.connect()
    try:  # back to version 2: lexemes of the old rule, no words stamp
        for table, key, column in (("artifact_text", "id", "text"), ("nodes", "pk", "content")):
            for found, body in await conn.fetch(f'SELECT {key}, body FROM "{schema}".{table}'):
                await conn.execute(
                    f'UPDATE "{schema}".{table} SET tsv = $1::tsvector WHERE {key} = $2',
                    _old_lexemes(orjson.loads(body)[column]),
                    found,
                )
        await conn.execute(
            f"UPDATE \"{schema}\".keepstone_meta SET value = '2' WHERE name = 'schema_version'"
        )
        await conn.execute(f"DELETE FROM \"{schema}\".keepstone_meta WHERE name = 'words_rule'")
    finally:
        await conn.close()
    async with keepstone.open(url) as store:
        assert await _search(store, "cafe") == [made["cafe"]]
        assert await _search(store, "οδοσ strasse") == [made["greek"]]
        nodes = await store.memory.search_nodes(made["profile"], "istanbul")
        assert [n.id for n in nodes.items] == ["n1"]
    conn = await pg.connect()
    try:
        stamps = dict(await conn.fetch(f'SELECT name, value FROM "{schema}".keepstone_meta'))
    finally:
        await conn.close()
    assert stamps["words_rule"] == WORDS_RULE
    assert stamps["schema_version"] == str(read_migrations("postgres")[-1].version)


# --------------------------------------------------------------------------- workspace


async def test_workspace_index_of_another_rule_is_rebuilt(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    made = await _fill(str(root))
    index = root / "index.json"
    saved = orjson.loads(index.read_bytes())
    assert saved["words"] == WORDS_RULE
    for entry in saved["tables"]["artifact_text"]["rows"]:
        entry[6] = ["caf"]  # words of an older rule
    del saved["words"]
    index.write_bytes(orjson.dumps(saved))
    async with keepstone.open(str(root)) as store:
        assert await _search(store, "cafe") == [made["cafe"]]
        assert await _search(store, "caf") == []
