"""A conformance suite for LangGraph ``BaseStore`` implementations.

LangGraph ships no such suite, so this one checks a store *side by side*
with LangGraph's ``InMemoryStore``, the reference: every test runs the same
operations on both and compares what they return. A store's test module
subclasses :class:`BaseStoreConformance` and implements one hook::

    class TestMyStore(BaseStoreConformance):
        async def make_store(self, location, *, index=None):
            return MyStore(path=location / "db", index=index)

(and :meth:`~BaseStoreConformance.close_store` when the store holds
resources). Needs ``pytest``, ``pytest-asyncio`` (auto mode) and
``langgraph``.

Where the order of results is part of the contract (vector search by score,
``list_namespaces`` sorted), results are compared in order; a search over
several namespaces, whose order LangGraph leaves to the store, is compared
as a set, and its pages must cover it exactly. Two reference quirks are
worked around and named where they are: ``InMemoryStore`` keeps listing a
namespace after its last item is deleted, or after a mere ``get`` in it.
"""

from __future__ import annotations

import asyncio
import hashlib
import pathlib
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, ClassVar

import pytest
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore

DIMS = 16
"""Dimensions of :func:`fake_embed`'s vectors."""


def fake_embed(texts: Sequence[str]) -> list[list[float]]:
    """A deterministic embedding: each word adds 1 to a dimension chosen by
    its hash, so texts sharing words point the same way."""
    out = []
    for text in texts:
        vector = [0.0] * DIMS
        for word in re.findall(r"\w+", text.lower()):
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMS] += 1.0
        out.append(vector)
    return out


INDEX: IndexConfig = {"dims": DIMS, "embed": fake_embed, "fields": ["text"]}


def _plain(item: Item | None) -> tuple[Any, ...] | None:
    return None if item is None else (item.namespace, item.key, item.value)


class Pair:
    """The store under test and the reference, driven together."""

    def __init__(self, store: BaseStore, reference: InMemoryStore) -> None:
        self.store = store
        self.reference = reference

    async def put(self, namespace: tuple[str, ...], key: str, value: Any, **kw: Any) -> None:
        await self.store.aput(namespace, key, value, **kw)
        await self.reference.aput(namespace, key, value, **kw)

    async def delete(self, namespace: tuple[str, ...], key: str) -> None:
        await self.store.adelete(namespace, key)
        await self.reference.adelete(namespace, key)

    async def get(self, namespace: tuple[str, ...], key: str) -> Item | None:
        mine = await self.store.aget(namespace, key)
        ref = await self.reference.aget(namespace, key)
        assert _plain(mine) == _plain(ref), (namespace, key)
        if mine is not None:
            check_item(mine)
        return mine

    async def search(self, prefix: tuple[str, ...], *, ordered: bool, **kw: Any) -> list[Any]:
        mine = await self.store.asearch(prefix, **kw)
        ref = await self.reference.asearch(prefix, **kw)
        for item in mine:
            check_item(item)
        got = [(i.namespace, i.key, i.value) for i in mine]
        want = [(i.namespace, i.key, i.value) for i in ref]
        if ordered:
            assert got == want, (prefix, kw)
        else:
            assert sorted(got, key=repr) == sorted(want, key=repr), (prefix, kw)
        return mine

    async def namespaces(self, **kw: Any) -> list[tuple[str, ...]]:
        # Reference quirk: InMemoryStore keeps a namespace once its last item
        # is deleted (or after a get in it); drop those before comparing.
        for target in (self.store, self.reference):
            if isinstance(target, InMemoryStore):
                for ns in [ns for ns, items in target._data.items() if not items]:
                    del target._data[ns]
        mine = await self.store.alist_namespaces(**kw)
        ref = await self.reference.alist_namespaces(**kw)
        assert mine == ref, kw
        return mine


def check_item(item: Item) -> None:
    assert isinstance(item.created_at, datetime) and item.created_at.tzinfo is not None
    assert isinstance(item.updated_at, datetime) and item.updated_at >= item.created_at
    assert isinstance(item.namespace, tuple) and isinstance(item.key, str)


USERS = [
    (("users", "ada"), "prefs", {"lang": "fr", "score": 3, "tags": ["a", "b"]}),
    (("users", "ada"), "diet", {"text": "vegetarian food", "score": 7, "meta": {"kind": "x"}}),
    (("users", "bob"), "prefs", {"lang": "en", "score": 5, "tags": ["b"]}),
    (("users", "bob", "work"), "desk", {"text": "standing desk", "score": 1}),
    (("docs",), "guide", {"text": "how to cook rice", "score": 9, "meta": {"kind": "y"}}),
]


FILTERS: list[dict[str, Any]] = [
    {"lang": "fr"},
    {"score": 5},
    {"tags": ["b"]},
    {"meta": {"kind": "x"}},
    {"score": {"$gt": 3}},
    {"score": {"$gte": 3, "$lt": 9}},
    {"score": {"$lte": 5}},
    {"score": {"$ne": 5}},
    {"lang": {"$eq": "en"}},
    {"lang": "fr", "score": 3},
    {"absent": None},
    {"lang": "zz"},
]


class BaseStoreConformance:
    """The suite (see the module docstring). Subclasses implement :meth:`make_store`."""

    reference_index: ClassVar[IndexConfig] = INDEX

    async def make_store(
        self, location: pathlib.Path, *, index: IndexConfig | None = None
    ) -> BaseStore:
        """A fresh, empty store under test, using ``location`` for its files."""
        raise NotImplementedError("a store's conformance test class implements make_store()")

    async def close_store(self, store: BaseStore) -> None:
        """Release what :meth:`make_store` opened (default: nothing)."""
        return None

    @pytest.fixture
    async def pair(self, tmp_path: pathlib.Path) -> AsyncIterator[Pair]:
        store = await self.make_store(tmp_path)
        try:
            yield Pair(store, InMemoryStore())
        finally:
            await self.close_store(store)

    @pytest.fixture
    async def vectors(self, tmp_path: pathlib.Path) -> AsyncIterator[Pair]:
        store = await self.make_store(tmp_path, index=self.reference_index)
        try:
            yield Pair(store, InMemoryStore(index=self.reference_index))
        finally:
            await self.close_store(store)

    async def fill(self, pair: Pair) -> None:
        for namespace, key, value in USERS:
            await pair.put(namespace, key, value)

    # ------------------------------------------------------------------ get, put, delete

    async def test_put_then_get(self, pair: Pair) -> None:
        await self.fill(pair)
        for namespace, key, _ in USERS:
            await pair.get(namespace, key)
        assert await pair.get(("users", "ada"), "nothing") is None
        assert await pair.get(("nowhere",), "prefs") is None

    async def test_put_replaces_the_value(self, pair: Pair) -> None:
        await pair.put(("a",), "k", {"v": 1})
        first = await pair.get(("a",), "k")
        await pair.put(("a",), "k", {"v": 2, "w": [1, {"x": None}]})
        second = await pair.get(("a",), "k")
        assert first is not None and second is not None
        assert second.value == {"v": 2, "w": [1, {"x": None}]}
        assert second.updated_at >= first.updated_at

    async def test_delete(self, pair: Pair) -> None:
        await self.fill(pair)
        await pair.delete(("users", "ada"), "prefs")
        assert await pair.get(("users", "ada"), "prefs") is None
        await pair.delete(("users", "ada"), "prefs")  # deleting again is no error
        await pair.delete(("never",), "there")
        await pair.search(("users", "ada"), ordered=True)
        await pair.put(("users", "ada"), "prefs", {"lang": "de"})
        await pair.get(("users", "ada"), "prefs")

    async def test_values_keep_their_json_types(self, pair: Pair) -> None:
        value = {"s": "é\n\u2028", "i": -(2**53), "f": 0.1, "b": False, "n": None, "l": [[], {}]}
        await pair.put(("types",), "all", value)
        item = await pair.get(("types",), "all")
        assert item is not None and item.value == value

    async def test_keys_and_labels_are_text(self, pair: Pair) -> None:
        await pair.put(("with space", "ünï", "a:b/c"), "key.with/odd chars", {"x": 1})
        await pair.get(("with space", "ünï", "a:b/c"), "key.with/odd chars")
        await pair.search(("with space",), ordered=True)

    # ------------------------------------------------------------------ namespaces

    async def test_invalid_namespaces_are_refused(self, pair: Pair) -> None:
        bad: list[tuple[Any, ...]] = [
            (),
            ("langgraph", "x"),
            ("a.b",),
            ("",),
            ("ok", ""),
            ("a\x00b",),
            ("ok", 3),
        ]
        for namespace in bad:
            for target in (pair.store, pair.reference):
                with pytest.raises(InvalidNamespaceError):
                    await target.aput(namespace, "k", {"v": 1})
                if namespace and "langgraph" not in namespace:
                    with pytest.raises(InvalidNamespaceError):
                        await target.aget(namespace, "k")
                    with pytest.raises(InvalidNamespaceError):
                        await target.asearch(namespace)
        assert await pair.store.alist_namespaces() == []

    async def test_list_namespaces(self, pair: Pair) -> None:
        await self.fill(pair)
        await pair.namespaces()
        await pair.namespaces(prefix=("users",))
        await pair.namespaces(prefix=("users", "*", "work"))
        await pair.namespaces(suffix=("ada",))
        await pair.namespaces(suffix=("*",), max_depth=1)
        await pair.namespaces(prefix=("users",), max_depth=2)
        await pair.namespaces(max_depth=1)
        await pair.namespaces(limit=2)
        await pair.namespaces(limit=2, offset=2)
        await pair.namespaces(prefix=("nope",))
        await pair.delete(("users", "bob", "work"), "desk")
        await pair.namespaces(prefix=("users",))

    # ------------------------------------------------------------------ search

    async def test_search_by_prefix(self, pair: Pair) -> None:
        await self.fill(pair)
        await pair.search(("users", "ada"), ordered=True)
        await pair.search(("users", "bob"), ordered=False)
        await pair.search(("users",), ordered=False)
        await pair.search((), ordered=False, limit=100)
        await pair.search(("missing",), ordered=True)

    async def test_search_filters(self, pair: Pair) -> None:
        await self.fill(pair)
        for filter in FILTERS:
            await pair.search((), ordered=False, filter=filter, limit=100)
            await pair.search(("users", "ada"), ordered=True, filter=filter)

    async def test_search_pages_in_one_namespace(self, pair: Pair) -> None:
        for i in range(7):
            await pair.put(("page",), f"k{i}", {"i": i})
        await pair.put(("page",), "k2", {"i": 22})  # an update keeps its place
        for offset, limit in ((0, 3), (3, 3), (6, 3), (0, 10), (10, 3)):
            await pair.search(("page",), ordered=True, offset=offset, limit=limit)

    async def test_search_pages_cover_several_namespaces(self, pair: Pair) -> None:
        await self.fill(pair)
        everything = await pair.search((), ordered=False, limit=100)
        seen: list[tuple[Any, ...]] = []
        for offset in range(0, len(everything), 2):
            page = await pair.store.asearch((), limit=2, offset=offset)
            assert len(page) <= 2
            seen += [(i.namespace, i.key) for i in page]
        assert sorted(seen) == sorted((i.namespace, i.key) for i in everything)

    # ------------------------------------------------------------------ batch

    async def test_batch_reads_see_the_state_before_its_writes(self, pair: Pair) -> None:
        await pair.put(("b",), "x", {"v": 0})
        ops: list[Op] = [
            PutOp(("b",), "x", {"v": 1}),
            GetOp(("b",), "x"),
            PutOp(("b",), "y", {"v": 2}),
            PutOp(("b",), "y", {"v": 3}),
            SearchOp(("b",)),
            ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("b",)),)),
            PutOp(("b",), "x", None),
        ]
        mine = await pair.store.abatch(ops)
        ref = await pair.reference.abatch(ops)
        assert [_norm(r) for r in mine] == [_norm(r) for r in ref]
        await pair.get(("b",), "x")
        await pair.get(("b",), "y")

    async def test_the_sync_api_from_another_thread(self, pair: Pair) -> None:
        def use(store: BaseStore) -> tuple[Any, ...]:
            store.put(("sync",), "k", {"v": 1})
            got = store.get(("sync",), "k")
            found = store.search(("sync",))
            spaces = store.list_namespaces()
            store.delete(("sync",), "k")
            return _plain(got), [_plain(i) for i in found], spaces, store.get(("sync",), "k")

        mine = await asyncio.to_thread(use, pair.store)
        ref = await asyncio.to_thread(use, pair.reference)
        assert mine == ref

    # ------------------------------------------------------------------ vectors

    async def test_vector_search_ranks_like_the_reference(self, vectors: Pair) -> None:
        docs = {
            "rice": "how to cook rice and beans",
            "bread": "bake bread with flour",
            "beans": "beans beans beans",
            "tea": "green tea leaves",
        }
        for key, text in docs.items():
            await vectors.put(("kb",), key, {"text": text, "n": len(text)})
        await vectors.put(("kb",), "plain", {"text": "rice", "n": 4}, index=False)
        mine = await vectors.search(("kb",), ordered=True, query="cook beans", limit=3)
        ref = await vectors.reference.asearch(("kb",), query="cook beans", limit=3)
        assert [round(i.score or 0, 6) for i in mine] == [round(i.score or 0, 6) for i in ref]
        await vectors.search(("kb",), ordered=True, query="rice", limit=10)
        await vectors.search(("kb",), ordered=True, query="tea", filter={"n": {"$gt": 10}})
        await vectors.search(("kb",), ordered=True, query="beans", offset=1, limit=2)
        await vectors.put(("kb",), "tea", {"text": "black coffee", "n": 1}, index=["text"])
        await vectors.search(("kb",), ordered=True, query="coffee", limit=2)


def _norm(result: Any) -> Any:
    if isinstance(result, Item):
        return _plain(result)
    if isinstance(result, list):
        return [_norm(r) for r in result]
    return result
