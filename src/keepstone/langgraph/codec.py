"""Turning LangGraph values into the value entries of a thread's headers,
and back (the entry forms are described in :mod:`keepstone.langgraph.layout`)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from keepstone.errors import StorageError
from keepstone.langgraph.layout import INLINE_LIMIT
from keepstone.langgraph.parts import join, refs_of, split
from keepstone.langgraph.serde import KeepstoneSerializer, refuse_pickle

Parts = dict[str, Any]
"""Large pieces of values to store as snapshot parts: digest -> JSON."""


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
        """The entry of ``value``: its inline form with large pieces replaced
        by references (see :mod:`keepstone.langgraph.parts`), which go to
        ``parts``."""
        form = self.inline(value)
        body = "v" if "v" in form else "b"
        form[body] = split(form[body], parts, set(), INLINE_LIMIT)
        return form

    def load(self, entry: Mapping[str, Any], blobs: Mapping[str, Any]) -> Any:
        """The value of an entry; ``blobs`` maps the digests it needs to their JSON.

        Raises:
            StorageError: ``corrupt`` for a malformed entry; ``invalid`` for
                pickle or a serializer this saver cannot read.
        """
        kind = entry.get("s")
        if not isinstance(kind, str):
            raise StorageError("corrupt", "a stored LangGraph value has no serializer", {})
        refuse_pickle(kind)
        if "v" in entry:
            return self.json.from_json(kind, join(entry["v"], blobs))
        raw = join(entry.get("b"), blobs)
        if not isinstance(raw, str):
            raise StorageError("corrupt", "a stored LangGraph value is malformed", {})
        return self.serde.loads_typed((kind, base64.b64decode(raw)))


def needs(entry: Any) -> list[str]:
    """The digests an entry refers to directly."""
    if isinstance(entry, dict):
        return refs_of(entry.get("v") if "v" in entry else entry.get("b"))
    return []
