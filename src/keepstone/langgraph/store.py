"""``KeepstoneMemoryStore``: LangGraph's long-term memory (``BaseStore``) on
any keepstone store.

.. code-block:: python

    async with KeepstoneMemoryStore.from_url("sqlite:///agent.db") as memory:
        await memory.aput(("users", "ada"), "prefs", {"lang": "fr"})
        hits = await memory.asearch(("users",), query="french")

Beyond LangGraph's stores: every ``put`` is a revision (:meth:`aitem_history`,
:meth:`aitems_at` read the past), ``delete`` is a tombstone with an audit
record and only an approved :meth:`apurge` removes the bytes, ``query`` works
without an embedding function (full text), and with one (vectors). Items and
their layout are described in :mod:`keepstone.langgraph.store_items`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    ensure_embeddings,
    get_text_at_path,
    tokenize_path,
    validate_op_namespace,
)

from keepstone.errors import StorageError
from keepstone.langgraph._bridge import LoopBinding, Opening
from keepstone.langgraph.serde import KeepstoneSerializer
from keepstone.langgraph.store_items import (
    VECTORS_MEDIA,
    ItemRecords,
    expires_at,
    item_key,
    item_namespace,
    item_ttl,
)
from keepstone.langgraph.store_search import (
    cosine,
    matches,
    namespace_matches,
    query_words,
    text_score,
)
from keepstone.schemas import ApprovalMarker, Artifact, LifecycleAction
from keepstone.store import Store

REFRESH_SHARE: Final = 0.1
"""A read moves an item's expiry only when that gains more than this share of
its TTL, so reading a hot item does not add a revision each time."""


@dataclass(frozen=True)
class ItemVersion:
    """One state of an item in its history: a ``put`` (``value``) or a
    ``delete`` (``value`` is ``None``)."""

    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any] | None
    at: datetime
    generation: int
    """1 for the first life of the key, 2 after it was deleted and put again..."""
    revision: int


class KeepstoneMemoryStore(BaseStore):
    """A LangGraph ``BaseStore`` kept in a keepstone store.

    Args:
        store: an open :class:`keepstone.Store`; :meth:`from_url` opens one.
        name: the artifact collection holding the items.
        index: LangGraph's ``IndexConfig``; with ``embed``, ``query`` ranks by
            vectors, otherwise by full text.
        ttl: LangGraph's ``TTLConfig`` (``default_ttl`` and ``ttl`` in minutes,
            ``refresh_on_read``, ``sweep_interval_minutes``, ``omit_expired``).
        serde: the serializer of values JSON cannot hold (default: a
            :class:`~keepstone.langgraph.KeepstoneSerializer`).
    """

    supports_ttl: bool = True

    def __init__(
        self,
        store: Store,
        *,
        name: str = "langgraph.store",
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        serde: KeepstoneSerializer | None = None,
        _binding: LoopBinding | None = None,
    ) -> None:
        self.store = store
        self.ttl_config = ttl
        self.index_config = index
        self._binding = _binding or LoopBinding(store)
        self._items = ItemRecords(store, name, serde or KeepstoneSerializer())
        self.embeddings: Embeddings | None = None
        self._fields: list[tuple[str, Any]] = [("$", "$")]
        if index:
            self.embeddings = ensure_embeddings(index.get("embed")) if index.get("embed") else None
            self._fields = [
                (p, p if p == "$" else tokenize_path(p)) for p in (index.get("fields") or ["$"])
            ]
        self._vectors: dict[str, tuple[int, list[list[float]]]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def from_url(
        cls,
        url: str | os.PathLike[str],
        *,
        name: str = "langgraph.store",
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        serde: KeepstoneSerializer | None = None,
        **options: Any,
    ) -> Opening[KeepstoneMemoryStore]:
        """Open the keepstone store at ``url``: ``with`` runs it on a loop of
        its own, ``async with`` on the current one. Closed on exit (the TTL
        sweeper too)."""

        def build(binding: LoopBinding) -> KeepstoneMemoryStore:
            return cls(
                binding.store, name=name, index=index, ttl=ttl, serde=serde, _binding=binding
            )

        async def close(made: KeepstoneMemoryStore) -> None:
            await made.stop_ttl_sweeper()

        return Opening(url, build, close, options)

    # ------------------------------------------------------------------ BaseStore

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self._binding.call(self.abatch(ops))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        listed = list(ops)
        for op in listed:
            _validate(op)
        return await self._binding.run(self._batch(listed))

    async def _batch(self, ops: list[Op]) -> list[Result]:
        now = self.store.clock.now()
        results: list[Result] = [None] * len(ops)
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for i, op in enumerate(ops):
            if isinstance(op, GetOp):
                results[i] = await self._get(op, now)
            elif isinstance(op, SearchOp):
                results[i] = await self._search(op, now)
            elif isinstance(op, ListNamespacesOp):
                results[i] = await self._list_namespaces(op, now)
            elif isinstance(op, PutOp):
                puts[(tuple(op.namespace), str(op.key))] = op
            else:
                raise StorageError("invalid", f"unknown store operation {type(op).__name__}", {})
        if puts:
            await self._apply(list(puts.values()), now)
        return results

    # ------------------------------------------------------------------ reads

    def _expired(self, art: Artifact, now: datetime) -> bool:
        if not (self.ttl_config or {}).get("omit_expired"):
            return False
        when = expires_at(art)
        return when is not None and when <= now

    async def _refresh(self, art: Artifact, refresh: bool, now: datetime) -> Artifact:
        ttl = item_ttl(art)
        when = expires_at(art)
        if not refresh or ttl is None or when is None:
            return art
        if (now + timedelta(minutes=ttl) - when) <= timedelta(minutes=ttl * REFRESH_SHARE):
            return art
        return await self._items.touch(art, now)

    async def _item(self, art: Artifact, cls: type[Item] = Item, **extra: Any) -> Any:
        value = await self._items.value(art)
        put_at = (art.metadata or {}).get("put_at")
        updated = art.updated_at
        if put_at:  # a TTL refresh moves the artifact's updated_at, not the item's
            stamped = datetime.fromisoformat(str(put_at).replace("Z", "+00:00"))
            updated = max(art.created_at, stamped)
        return cls(
            namespace=item_namespace(art),
            key=item_key(art),
            value=value,
            created_at=art.created_at,
            updated_at=updated,
            **extra,
        )

    async def _get(self, op: GetOp, now: datetime) -> Item | None:
        art = await self._items.find(tuple(op.namespace), str(op.key))
        if art is None or self._expired(art, now):
            return None
        art = await self._refresh(art, op.refresh_ttl, now)
        item: Item = await self._item(art)
        return item

    async def _search(self, op: SearchOp, now: datetime) -> list[SearchItem]:
        prefix = tuple(op.namespace_prefix)
        if op.limit <= 0:
            return []
        if op.query and self.embeddings is not None:
            return await self._vector_search(op, prefix, now)
        if op.query:
            return await self._text_search(op, prefix, now)
        arts = [a for a in await self._items.scan(prefix) if not self._expired(a, now)]
        if op.filter:
            picked = []
            for art in arts:
                value = await self._items.value(art)
                if matches(value, op.filter):
                    picked.append(art)
            arts = picked
        page = arts[op.offset : op.offset + op.limit]
        return [await self._hit(a, None, op.refresh_ttl, now) for a in page]

    async def _hit(
        self, art: Artifact, score: float | None, refresh: bool, now: datetime
    ) -> SearchItem:
        art = await self._refresh(art, refresh, now)
        hit: SearchItem = await self._item(art, SearchItem, score=score)
        return hit

    async def _text_search(
        self, op: SearchOp, prefix: tuple[str, ...], now: datetime
    ) -> list[SearchItem]:
        words = query_words(op.query or "")
        found: dict[str, Artifact] = {}
        for word in words:
            for art in await self._items.text_matches(prefix, word):
                found.setdefault(art.id, art)
        scored: list[tuple[float, Artifact]] = []
        for art in found.values():
            if self._expired(art, now):
                continue
            value = await self._items.value(art)
            if not matches(value, op.filter):
                continue
            score = text_score(value, self._fields, words)
            if score > 0:
                scored.append((score, art))
        scored.sort(key=lambda pair: (-pair[0], pair[1].id))
        page = scored[op.offset : op.offset + op.limit]
        return [await self._hit(a, s, op.refresh_ttl, now) for s, a in page]

    async def _vector_search(
        self, op: SearchOp, prefix: tuple[str, ...], now: datetime
    ) -> list[SearchItem]:
        assert self.embeddings is not None
        query = await self.embeddings.aembed_query(op.query or "")
        scored: list[tuple[float, Artifact]] = []
        unscored: list[Artifact] = []
        for art in await self._items.scan(prefix):
            if self._expired(art, now):
                continue
            if op.filter and not matches(await self._items.value(art), op.filter):
                continue
            vectors = await self._vectors_of(art)
            score = cosine(query, vectors) if vectors else None
            if score is None:
                unscored.append(art)
            else:
                scored.append((score, art))
        scored.sort(key=lambda pair: (-pair[0], pair[1].id))
        page: list[tuple[float | None, Artifact]] = [
            (s, a) for s, a in scored[op.offset : op.offset + op.limit]
        ]
        if len(page) < op.limit and op.offset == 0:
            page += [(None, a) for a in unscored[: op.limit - len(page)]]
        return [await self._hit(a, s, op.refresh_ttl, now) for s, a in page]

    async def _list_namespaces(self, op: ListNamespacesOp, now: datetime) -> list[tuple[str, ...]]:
        prefix: tuple[str, ...] = ()
        for cond in op.match_conditions or ():
            if cond.match_type == "prefix":
                prefix = tuple(cond.path)
        spaces = {
            item_namespace(a) for a in await self._items.scan(prefix) if not self._expired(a, now)
        }
        kept = [
            ns for ns in spaces if all(namespace_matches(c, ns) for c in op.match_conditions or ())
        ]
        if op.max_depth is not None:
            kept = list({ns[: op.max_depth] for ns in kept})
        return sorted(kept)[op.offset : op.offset + op.limit]

    # ------------------------------------------------------------------ writes

    async def _apply(self, puts: list[PutOp], now: datetime) -> None:
        to_embed = self._texts(puts)
        vectors: dict[tuple[tuple[str, ...], str], dict[str, list[float]]] = {}
        if to_embed and self.embeddings is not None:
            texts = [t for _, _, t in to_embed]
            embedded = await self.embeddings.aembed_documents(texts)
            if len(embedded) != len(texts):
                raise StorageError(
                    "invalid",
                    f"the embedding function returned {len(embedded)} vectors for "
                    f"{len(texts)} texts",
                    {},
                )
            for (item, path, _), vector in zip(to_embed, embedded, strict=True):
                vectors.setdefault(item, {})[path] = [float(x) for x in vector]
        for op in puts:
            namespace, key = tuple(op.namespace), str(op.key)
            current = await self._items.find(namespace, key)
            if op.value is None:
                if current is not None:
                    await self.store.artifacts.delete(current.id, reason="LangGraph store delete")
                    await self._drop_vectors(current)
                continue
            art = await self._items.write(
                namespace, key, dict(op.value), ttl=op.ttl, now=now, current=current
            )
            found = vectors.get((namespace, key))
            if found is not None:
                await self._save_vectors(art, found)
            elif current is not None:
                await self._drop_vectors(current)

    def _texts(self, puts: list[PutOp]) -> list[tuple[tuple[tuple[str, ...], str], str, str]]:
        if self.embeddings is None:
            return []
        out = []
        for op in puts:
            if op.value is None or op.index is False:
                continue
            paths = (
                self._fields
                if op.index is None
                else [(p, p if p == "$" else tokenize_path(p)) for p in op.index]
            )
            item = (tuple(op.namespace), str(op.key))
            for path, tokens in paths:
                texts = (
                    [orjson.dumps(dict(op.value)).decode()]
                    if path == "$"
                    else get_text_at_path(dict(op.value), tokens)
                )
                for i, text in enumerate(texts):
                    out.append((item, path if len(texts) == 1 else f"{path}.{i}", text))
        return out

    async def _save_vectors(self, art: Artifact, vectors: dict[str, list[float]]) -> None:
        col = await self._items.vectors_collection()
        content = orjson.dumps(
            {"item": art.id, "revision": art.revision, "vectors": vectors},
            option=orjson.OPT_SORT_KEYS,
        )
        try:
            current = await self.store.artifacts.get_by_name(col.id, art.id)
        except StorageError as exc:
            if exc.code != "not_found":
                raise
            await self.store.artifacts.create(
                col.id, art.id, content, type="other", media_type=VECTORS_MEDIA
            )
        else:
            await self.store.artifacts.update(current.id, content, media_type=VECTORS_MEDIA)
        self._vectors[art.id] = (art.revision, list(vectors.values()))

    async def _drop_vectors(self, art: Artifact) -> None:
        self._vectors.pop(art.id, None)
        if self.embeddings is None:
            return
        col = await self._items.vectors_collection()
        try:
            current = await self.store.artifacts.get_by_name(col.id, art.id)
        except StorageError as exc:
            if exc.code != "not_found":
                raise
            return
        await self.store.artifacts.delete(current.id, reason="its item changed or went")

    async def _vectors_of(self, art: Artifact) -> list[list[float]]:
        cached = self._vectors.get(art.id)
        if cached is not None and cached[0] == art.revision:
            return cached[1]
        col = await self._items.vectors_collection()
        try:
            holder = await self.store.artifacts.get_by_name(col.id, art.id)
        except StorageError as exc:
            if exc.code != "not_found":
                raise
            return []
        doc = orjson.loads(await self.store.artifacts.read(holder.id))
        vectors = [list(map(float, v)) for v in doc.get("vectors", {}).values()]
        self._vectors[art.id] = (int(doc.get("revision", 0)), vectors)
        return vectors if doc.get("revision") == art.revision else []

    # ------------------------------------------------------------------ history

    async def aitem_history(self, namespace: tuple[str, ...], key: str) -> list[ItemVersion]:
        """Every value the item had, oldest first, with its deletes."""
        return await self._binding.run(self._history(tuple(namespace), str(key)))

    async def _history(self, namespace: tuple[str, ...], key: str) -> list[ItemVersion]:
        out: list[ItemVersion] = []
        for generation, art in enumerate(await self._items.generations(namespace, key), 1):
            previous = None
            cursor = None
            while True:
                page = await self.store.artifacts.revisions(art.id, cursor=cursor, limit=1000)
                for rev in page.items:
                    if rev.digest == previous:
                        continue  # a TTL refresh: same value
                    previous = rev.digest
                    value = None if rev.purged else await self._items.value(art, rev.number)
                    out.append(
                        ItemVersion(namespace, key, value, rev.created_at, generation, rev.number)
                    )
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            if art.deleted_at is not None:
                out.append(
                    ItemVersion(namespace, key, None, art.deleted_at, generation, art.revision)
                )
        return out

    async def aitems_at(self, at: datetime, namespace_prefix: tuple[str, ...] = ()) -> list[Item]:
        """The items under ``namespace_prefix`` as they were at time ``at``."""
        return await self._binding.run(self._items_at(at, tuple(namespace_prefix)))

    async def _items_at(self, at: datetime, prefix: tuple[str, ...]) -> list[Item]:
        found: list[Item] = []
        for art in await self._items.scan(prefix, deleted=True):
            if art.created_at > at or (art.deleted_at is not None and art.deleted_at <= at):
                continue
            chosen = None
            cursor = None
            while True:
                page = await self.store.artifacts.revisions(art.id, cursor=cursor, limit=1000)
                for rev in page.items:
                    if rev.created_at <= at:
                        chosen = rev
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            if chosen is None or chosen.purged:
                continue
            found.append(
                Item(
                    namespace=item_namespace(art),
                    key=item_key(art),
                    value=await self._items.value(art, chosen.number),
                    created_at=art.created_at,
                    updated_at=chosen.created_at,
                )
            )
        return found

    # ------------------------------------------------------------------ purge, TTL

    async def apurge(
        self,
        namespace: tuple[str, ...] | None = None,
        key: str | None = None,
        *,
        approval: ApprovalMarker | None = None,
    ) -> int:
        """Remove the bytes of deleted items (all of them, or one key's old
        lives): a review-gated ``purge_artifact`` action per revision.

        Returns:
            The number of revisions purged.

        Raises:
            StorageError: ``review_required`` (audited as denied) without an
                approval.
        """
        return await self._binding.run(self._purge(namespace, key, approval))

    async def _purge(
        self,
        namespace: tuple[str, ...] | None,
        key: str | None,
        approval: ApprovalMarker | None,
    ) -> int:
        if namespace is not None and key is not None:
            arts = await self._items.generations(tuple(namespace), str(key))
        else:
            arts = await self._items.scan(tuple(namespace or ()), deleted=True)
        doomed = [a for a in arts if a.deleted_at is not None]
        target = self._items.name if key is None else f"{'.'.join(namespace or ())}/{key}"
        action = LifecycleAction(
            kind="purge_artifact", target=target, params={"items": len(doomed)}
        )
        await self.store.review.check(action, approval)
        purged = 0
        for art in doomed:
            cursor = None
            while True:
                page = await self.store.artifacts.revisions(art.id, cursor=cursor, limit=1000)
                for rev in page.items:
                    if not rev.purged:
                        await self.store.artifacts.purge_revision(
                            art.id, rev.number, approval=approval
                        )
                        purged += 1
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        return purged

    async def asweep_ttl(self, now: datetime | None = None) -> int:
        """Delete (tombstone) the items whose TTL ran out; returns how many."""
        return await self._binding.run(self._sweep(now))

    async def _sweep(self, now: datetime | None) -> int:
        now = now or self.store.clock.now()
        gone = 0
        for art in await self._items.scan(()):
            when = expires_at(art)
            if when is not None and when <= now:
                try:
                    await self.store.artifacts.delete(
                        art.id, expected_revision=art.revision, reason="TTL expired"
                    )
                except StorageError as exc:
                    if exc.code == "conflict":
                        continue  # touched or changed meanwhile
                    raise
                await self._drop_vectors(art)
                gone += 1
        return gone

    async def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> None:
        """Sweep expired items periodically (every ``sweep_interval_minutes``,
        default the ``TTLConfig``'s, else 5) until :meth:`stop_ttl_sweeper`."""
        minutes = (
            sweep_interval_minutes or (self.ttl_config or {}).get("sweep_interval_minutes") or 5
        )

        async def start() -> None:
            if self._sweeper is None or self._sweeper.done():
                self._sweeper = asyncio.create_task(self._sweep_forever(float(minutes)))

        await self._binding.run(start())

    async def _sweep_forever(self, minutes: float) -> None:
        while True:
            await asyncio.sleep(minutes * 60)
            try:
                await self._sweep(None)
            except StorageError:  # the next round tries again
                continue

    async def stop_ttl_sweeper(self) -> bool:
        """Stop the sweeper; ``True`` if one was running."""

        async def stop() -> bool:
            task, self._sweeper = self._sweeper, None
            if task is None or task.done():
                return False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return True

        return await self._binding.run(stop())


def _validate(op: Op) -> None:
    """LangGraph's namespace rules, for operations given to ``batch`` directly."""
    validate_op_namespace(op)
    if isinstance(op, PutOp):
        if not op.namespace:
            raise InvalidNamespaceError("Namespace cannot be empty.")
        if op.namespace[0] == "langgraph":
            raise InvalidNamespaceError(
                f'Root label for namespace cannot be "langgraph". Got: {op.namespace}'
            )
        if op.value is not None and not isinstance(op.value, Mapping):
            raise StorageError("invalid", "a LangGraph store value must be a mapping (a dict)", {})
