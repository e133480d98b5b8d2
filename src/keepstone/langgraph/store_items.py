"""How :class:`~keepstone.langgraph.KeepstoneMemoryStore` keeps items.

- The store is a keepstone artifact collection (default ``langgraph.store``).
- An **item** is an artifact of type ``knowledge`` named by its namespace
  and key as a JSON array (``["users","alice","prefs"]``). Its content is
  the value as JSON (``application/json``, so it is full-text indexed);
  values JSON cannot hold are written with the store's serializer, named in
  the ``serializer`` metadata. Its metadata holds the namespace (``ns``,
  ``ns0``, ``ns1``..., ``depth``), the ``key``, and the TTL (``ttl`` in
  minutes, ``expires_at``); metadata is indexed, so a namespace prefix is
  an indexed lookup.
- Every ``put`` is a new revision of the artifact, so an item's history and
  the store as of a past time can be read back. ``delete`` tombstones the
  artifact (a change record and an audit record say who and when); its
  revisions stay until an approved purge removes their bytes.
- With an ``IndexConfig``, an item's vectors are an artifact of the
  collection ``<name>.vectors`` named by the item's artifact id.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from keepstone.errors import StorageError
from keepstone.langgraph.serde import JSON, KeepstoneSerializer
from keepstone.schemas import Artifact, ArtifactQuery, Collection, canonical_json
from keepstone.schemas._base import format_timestamp
from keepstone.store import Store

JSON_MEDIA: Final = "application/json"
BINARY_MEDIA: Final = "application/vnd.keepstone.langgraph.value"
VECTORS_MEDIA: Final = "application/vnd.keepstone.langgraph.vectors+json"
_NAME_LIMIT = 512
_PAGE = 1000


def item_name(namespace: tuple[str, ...], key: str) -> str:
    """The artifact name of an item (a JSON array; a digest when too long)."""
    text = orjson.dumps([*namespace, key]).decode()
    if len(text) <= _NAME_LIMIT:
        return text
    return "#" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def namespace_tags(prefix: tuple[str, ...]) -> dict[str, Any]:
    """The metadata equalities of a namespace prefix (``*`` matches anything)."""
    return {f"ns{i}": label for i, label in enumerate(prefix) if label != "*"}


def item_tags(
    namespace: tuple[str, ...],
    key: str,
    *,
    serializer: str,
    ttl: float | None,
    expires_at: datetime | None,
) -> dict[str, Any]:
    tags: dict[str, Any] = {
        "ns": ".".join(namespace),
        "depth": len(namespace),
        "key": key,
        "serializer": serializer,
        "ttl": ttl,
        "expires_at": None if expires_at is None else format_timestamp(expires_at),
    }
    tags.update(namespace_tags(namespace))
    return tags


def item_namespace(art: Artifact) -> tuple[str, ...]:
    meta = art.metadata or {}
    depth = meta.get("depth")
    if not isinstance(depth, int):
        raise StorageError("corrupt", f"artifact {art.id} is not a LangGraph store item", {})
    return tuple(str(meta[f"ns{i}"]) for i in range(depth))


def item_key(art: Artifact) -> str:
    return str((art.metadata or {}).get("key"))


def expires_at(art: Artifact) -> datetime | None:
    value = (art.metadata or {}).get("expires_at")
    return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def item_ttl(art: Artifact) -> float | None:
    value = (art.metadata or {}).get("ttl")
    return None if value is None else float(value)


class ItemRecords:
    """Reading and writing items as artifacts (see the module docstring)."""

    def __init__(self, store: Store, name: str, serde: KeepstoneSerializer) -> None:
        self.store = store
        self.name = name
        self.serde = serde
        self._collection: Collection | None = None
        self._vectors: Collection | None = None

    async def collection(self) -> Collection:
        if self._collection is None:
            self._collection = await _collection(self.store, self.name)
        return self._collection

    async def vectors_collection(self) -> Collection:
        if self._vectors is None:
            self._vectors = await _collection(self.store, self.name + ".vectors")
        return self._vectors

    async def find(self, namespace: tuple[str, ...], key: str) -> Artifact | None:
        """The live artifact of an item, or ``None``."""
        col = await self.collection()
        try:
            return await self.store.artifacts.get_by_name(col.id, item_name(namespace, key))
        except StorageError as exc:
            if exc.code == "not_found":
                return None
            raise

    def encode(self, value: Any) -> tuple[bytes, str, str]:
        """``(content, media type, serializer)`` of a value."""
        kind, data = self.serde.to_json(value)
        if kind == JSON:
            return canonical_json(data), JSON_MEDIA, kind
        return orjson.dumps(data), BINARY_MEDIA, kind

    def decode(self, content: bytes, serializer: str) -> Any:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise StorageError(
                "corrupt", f"a stored LangGraph store value is malformed: {exc}"
            ) from exc
        return self.serde.from_json(serializer, data)

    async def value(self, art: Artifact, revision: int | None = None) -> Any:
        content = await self.store.artifacts.read(art.id, revision=revision)
        serializer = str((art.metadata or {}).get("serializer") or JSON)
        if revision is not None:
            rev = await self.store.artifacts.get_revision(art.id, revision)
            serializer = str((rev.metadata or {}).get("serializer") or serializer)
        return self.decode(content, serializer)

    async def write(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: Any,
        *,
        ttl: float | None,
        now: datetime,
        current: Artifact | None,
    ) -> Artifact:
        """Create the item, or add a revision to it."""
        content, media, serializer = self.encode(value)
        expiry = None if ttl is None else now + timedelta(minutes=ttl)
        tags = item_tags(namespace, key, serializer=serializer, ttl=ttl, expires_at=expiry)
        tags["put_at"] = format_timestamp(now)
        if current is None:
            col = await self.collection()
            try:
                return await self.store.artifacts.create(
                    col.id,
                    item_name(namespace, key),
                    content,
                    type="knowledge",
                    media_type=media,
                    metadata=tags,
                )
            except StorageError as exc:  # created meanwhile: update it instead
                if exc.code != "conflict":
                    raise
                current = await self.find(namespace, key)
                if current is None:
                    raise
        return await self.store.artifacts.update(
            current.id, content, media_type=media, metadata=tags
        )

    async def touch(self, art: Artifact, now: datetime) -> Artifact:
        """Move an item's expiry to ``now + ttl`` (a revision with the same content)."""
        ttl = item_ttl(art)
        if ttl is None:
            return art
        content = await self.store.artifacts.read(art.id)
        meta = dict(art.metadata or {})
        meta["expires_at"] = format_timestamp(now + timedelta(minutes=ttl))
        return await self.store.artifacts.update(art.id, content, metadata=meta)

    async def scan(self, prefix: tuple[str, ...] = (), *, deleted: bool = False) -> list[Artifact]:
        """Every item under a namespace prefix, in creation order."""
        col = await self.collection()
        query = ArtifactQuery(
            collection_id=col.id, metadata=namespace_tags(prefix) or None, include_deleted=deleted
        )
        return await _all(self.store, query)

    async def text_matches(self, prefix: tuple[str, ...], word: str) -> list[Artifact]:
        col = await self.collection()
        query = ArtifactQuery(
            collection_id=col.id, metadata=namespace_tags(prefix) or None, text=word
        )
        return await _all(self.store, query)

    async def generations(self, namespace: tuple[str, ...], key: str) -> list[Artifact]:
        """Every artifact that held this item, deleted ones included, oldest first."""
        col = await self.collection()
        query = ArtifactQuery(
            collection_id=col.id, name=item_name(namespace, key), include_deleted=True
        )
        return await _all(self.store, query)


async def _collection(store: Store, name: str) -> Collection:
    try:
        return await store.artifacts.get_collection_by_name(name)
    except StorageError as exc:
        if exc.code != "not_found":
            raise
    try:
        return await store.artifacts.create_collection(name, metadata={"langgraph": "store"})
    except StorageError as err:  # created meanwhile
        if err.code != "conflict":
            raise
        return await store.artifacts.get_collection_by_name(name)


async def _all(store: Store, query: ArtifactQuery) -> list[Artifact]:
    found: list[Artifact] = []
    cursor = None
    while True:
        page = await store.artifacts.query(query, cursor=cursor, limit=_PAGE)
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
