"""Turning LangGraph values into the value entries of a thread's headers,
and back (the entry forms are described in :mod:`keepstone.langgraph.layout`)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from keepstone.errors import StorageError
from keepstone.langgraph.layout import INLINE_LIMIT
from keepstone.langgraph.serde import KeepstoneSerializer, refuse_pickle
from keepstone.schemas import canonical_json, sha256_digest

Parts = dict[str, Any]
"""Large values to store as snapshot parts: digest -> inline form."""


class ValueCodec:
    """Entries for values, written with the saver's serializer.

    A :class:`~keepstone.langgraph.serde.KeepstoneSerializer` writes JSON
    entries; any other ``SerializerProtocol`` writes its bytes in base64
    (pickle is refused either way). JSON entries stay readable whichever
    serializer the saver is opened with.
    """

    def __init__(self, serde: SerializerProtocol) -> None:
        self.serde = serde
        self.json = serde if isinstance(serde, KeepstoneSerializer) else KeepstoneSerializer()

    def inline(self, value: Any) -> dict[str, Any]:
        """The inline form of ``value``: ``{"s", "v"}`` or ``{"s", "b"}``."""
        if isinstance(self.serde, KeepstoneSerializer):
            kind, data = self.serde.to_json(value)
            return {"s": kind, "v": data}
        kind, raw = self.serde.dumps_typed(value)
        refuse_pickle(kind)
        return {"s": kind, "b": base64.b64encode(raw).decode("ascii")}

    def entry(self, value: Any, parts: Parts) -> dict[str, Any]:
        """The entry of ``value``; a large value's inline form goes to ``parts``."""
        form = self.inline(value)
        raw = canonical_json(form)
        if len(raw) <= INLINE_LIMIT:
            return form
        digest = sha256_digest(raw)
        parts[digest] = form
        return {"s": form["s"], "d": digest, "n": len(raw)}

    def load(self, entry: Mapping[str, Any], blobs: Mapping[str, Any]) -> Any:
        """The value of an entry; ``blobs`` holds the forms of digests.

        Raises:
            StorageError: ``corrupt`` for a malformed entry; ``invalid`` for
                pickle or a serializer this saver cannot read.
        """
        form: Mapping[str, Any] = entry
        digest = entry.get("d")
        if isinstance(digest, str):
            form = blobs[digest]
        kind = form.get("s")
        if not isinstance(kind, str):
            raise StorageError("corrupt", "a stored LangGraph value has no serializer", {})
        refuse_pickle(kind)
        if "v" in form:
            return self.json.from_json(kind, form["v"])
        data = form.get("b")
        if not isinstance(data, str):
            raise StorageError("corrupt", "a stored LangGraph value is malformed", {})
        return self.serde.loads_typed((kind, base64.b64decode(data)))
