"""``KeepstoneSerializer``: LangGraph values as tagged JSON, never pickle.

LangGraph hands a checkpointer Python objects (channel values, pending
writes): messages, ``Send``, ``Interrupt``, ``Command``, sets, datetimes,
your own pydantic models and dataclasses. This serializer writes them as
plain JSON wherever JSON can say it, and as a small tagged object where it
cannot: ``{"__ks__": "datetime", "v": "2026-01-02T03:04:05+00:00"}``,
``{"__ks__": "obj", "cls": ["langchain_core.messages.ai", "AIMessage"],
"kind": "pydantic", "v": {...}}``. Stored values stay readable by any JSON
tool, by ``keepstone threads state`` and in snapshot exports.

Reading a tagged object never runs code it was not told to trust: a class is
rebuilt only when ``(module, name)`` is in the allow-list (LangGraph's own
list of safe types, plus ``allowed_types`` and what LangGraph passes to
``with_allowlist``); any other class comes back as its plain data, as
LangGraph's strict mode does. Values JSON cannot hold at all (objects that
are neither pydantic models, dataclasses, named tuples nor enums) are
written with LangGraph's msgpack encoding only when their type is in
``msgpack_allowlist``, and read back with LangGraph's strict msgpack reader
limited to that list; otherwise writing them fails with a clear error.
Pickle is neither written nor read, whatever the configuration.

Each stored value records its serializer (``"json"``, ``"msgpack"``,
``"bytes"``, ``"null"``, or the type name another ``SerializerProtocol``
returned), so a store written with one configuration stays readable.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import importlib
import ipaddress
import logging
import math
import pathlib
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

import orjson

from keepstone.errors import StorageError

logger = logging.getLogger("keepstone.langgraph")

TAG: Final = "__ks__"
"""The key that marks a tagged JSON object."""

JSON: Final = "json"
MSGPACK: Final = "msgpack"
SERIALIZERS: Final = frozenset({JSON, MSGPACK, "bytes", "bytearray", "null"})
"""The serializer names :class:`KeepstoneSerializer` writes."""

_MAX_INT = (1 << 63) - 1
_MIN_INT = -(1 << 63)

ClassKey = tuple[str, str]


def _safe_types() -> frozenset[ClassKey]:
    """LangGraph's curated list of types safe to rebuild (messages, documents,
    ``Send``, ``Interrupt``, ``Command``...), as ``(module, name)`` pairs."""
    try:
        from langgraph.checkpoint.serde._msgpack import SAFE_MSGPACK_TYPES
    except ImportError:  # pragma: no cover - every supported version has it
        return frozenset()
    return frozenset((t[0], t[1]) for t in SAFE_MSGPACK_TYPES if len(t) == 2)


def class_key(item: type | tuple[str, ...]) -> ClassKey:
    """``(module, name)`` of a class, or of an already given pair."""
    if isinstance(item, type):
        return (item.__module__, item.__qualname__)
    if (
        isinstance(item, tuple)
        and len(item) == 2
        and all(isinstance(part, str) and part for part in item)
    ):
        return (item[0], item[1])
    raise StorageError(
        "config",
        f"an allow-list entry must be a class or a (module, name) pair, not {item!r}",
        {"entry": repr(item)},
    )


class UnsupportedValue(TypeError):
    """A value the JSON encoding cannot represent."""

    def __init__(self, value: Any) -> None:
        cls = type(value)
        self.key: ClassKey = (cls.__module__, cls.__qualname__)
        super().__init__(f"{self.key[0]}.{self.key[1]}")


class KeepstoneSerializer:
    """A LangGraph ``SerializerProtocol`` that writes tagged JSON (see the
    module docstring) and never pickle.

    Args:
        allowed_types: extra classes (or ``(module, name)`` pairs) that may be
            rebuilt when read back, e.g. the pydantic models and dataclasses
            of your graph state.
        msgpack_allowlist: classes (or pairs) JSON cannot represent that may be
            written and read with LangGraph's msgpack encoding. Empty by
            default: such values are refused when written.
    """

    def __init__(
        self,
        *,
        allowed_types: Iterable[type | tuple[str, ...]] = (),
        msgpack_allowlist: Iterable[type | tuple[str, ...]] = (),
    ) -> None:
        self._allowed: frozenset[ClassKey] = _safe_types() | {class_key(t) for t in allowed_types}
        self._msgpack: frozenset[ClassKey] = frozenset(class_key(t) for t in msgpack_allowlist)
        self._warned: set[ClassKey] = set()
        self._unpack_hook: Callable[[int, bytes], Any] | None = None

    @property
    def allowed_types(self) -> frozenset[ClassKey]:
        """Every ``(module, name)`` this serializer rebuilds when reading."""
        return self._allowed

    @property
    def msgpack_allowlist(self) -> frozenset[ClassKey]:
        return self._msgpack

    def with_allowed(self, extra: Iterable[type | tuple[str, ...]]) -> KeepstoneSerializer:
        """A copy that also rebuilds the classes in ``extra``."""
        keys = {class_key(t) for t in extra}
        if keys <= self._allowed:
            return self
        clone = KeepstoneSerializer.__new__(KeepstoneSerializer)
        clone._allowed = self._allowed | keys
        clone._msgpack = self._msgpack
        clone._warned = set()
        clone._unpack_hook = None
        return clone

    # ------------------------------------------------------------------ JSON form

    def to_json(self, value: Any) -> tuple[str, Any]:
        """``(serializer, JSON value)`` for ``value``.

        Raises:
            StorageError: ``invalid`` when the value (or something inside it)
                cannot be represented and its type is not in
                ``msgpack_allowlist``; the message names the type.
        """
        if value is None:
            return "null", None
        try:
            return JSON, self._encode(value, 0)
        except UnsupportedValue as exc:
            if exc.key in self._msgpack:
                try:
                    packed = _msgpack_dumps(value)
                except Exception as err:
                    raise StorageError(
                        "invalid",
                        f"LangGraph's msgpack encoding cannot store this value either ({err})",
                        {"type": ".".join(exc.key)},
                    ) from None
                return MSGPACK, base64.b64encode(packed).decode("ascii")
            module, name = exc.key
            raise StorageError(
                "invalid",
                f"cannot store a value of type {module}.{name}: keepstone writes LangGraph "
                "state as JSON (pydantic models, dataclasses, named tuples, enums, messages "
                "and the standard types). Convert it to one of those, or allow LangGraph's "
                f"msgpack encoding for it: KeepstoneSerializer(msgpack_allowlist=[({module!r}, "
                f"{name!r})])",
                {"type": f"{module}.{name}"},
            ) from None

    def from_json(self, serializer: str, data: Any) -> Any:
        """The value stored as ``(serializer, data)`` by :meth:`to_json`.

        Raises:
            StorageError: ``corrupt`` for a malformed value; ``invalid`` for a
                pickled value or an unknown serializer.
        """
        if serializer == "null":
            return None
        if serializer == JSON:
            return self._decode(data)
        if serializer == MSGPACK:
            return self._msgpack_loads(_b64(data))
        if serializer in ("bytes", "bytearray"):
            raw = _b64(data)
            return raw if serializer == "bytes" else bytearray(raw)
        refuse_pickle(serializer)
        raise StorageError(
            "invalid",
            f"a value was stored with the serializer {serializer!r}, which "
            "KeepstoneSerializer does not read; open the saver with the serializer that "
            "wrote it",
            {"serializer": serializer},
        )

    # ------------------------------------------------------------------ SerializerProtocol

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        """LangGraph's ``SerializerProtocol``: ``(serializer, bytes)``."""
        if isinstance(obj, bytes):
            return "bytes", obj
        if isinstance(obj, bytearray):
            return "bytearray", bytes(obj)
        kind, data = self.to_json(obj)
        if kind == MSGPACK:
            return MSGPACK, base64.b64decode(data)
        return kind, b"" if kind == "null" else orjson.dumps(data)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """LangGraph's ``SerializerProtocol``: the value of ``dumps_typed``."""
        kind, raw = data
        if kind == "null":
            return None
        if kind == "bytes":
            return bytes(raw)
        if kind == "bytearray":
            return bytearray(raw)
        if kind == JSON:
            try:
                return self._decode(orjson.loads(raw))
            except orjson.JSONDecodeError as exc:
                raise StorageError("corrupt", f"a stored JSON value is malformed: {exc}") from exc
        if kind == MSGPACK:
            return self._msgpack_loads(raw)
        refuse_pickle(kind)
        raise StorageError("invalid", f"unknown serializer {kind!r}", {"serializer": kind})

    # ------------------------------------------------------------------ encoding

    def _encode(self, value: Any, depth: int) -> Any:
        if depth > 48:
            raise StorageError(
                "invalid", "a LangGraph value is nested more than 48 levels deep", {}
            )
        if value is None or value is True or value is False or type(value) is str:
            return value
        if type(value) is int:
            if _MIN_INT <= value <= _MAX_INT:
                return value
            return {TAG: "int", "v": str(value)}
        if type(value) is float:
            if math.isfinite(value):
                return value
            return {TAG: "float", "v": repr(value)}
        if type(value) is list:
            return [self._encode(v, depth + 1) for v in value]
        if type(value) is dict:
            if all(type(k) is str for k in value) and TAG not in value:
                return {k: self._encode(v, depth + 1) for k, v in value.items()}
            return {
                TAG: "dict",
                "v": [
                    [self._encode(k, depth + 1), self._encode(v, depth + 1)]
                    for k, v in value.items()
                ],
            }
        return self._encode_other(value, depth)

    def _encode_other(self, value: Any, depth: int) -> Any:
        enc = self._encode
        if isinstance(value, Enum):
            return _obj(value, "enum", enc(value.value, depth + 1))
        if isinstance(value, bool):  # a bool subclass
            return bool(value)
        if isinstance(value, str):
            return str(value)
        if isinstance(value, int):
            return enc(int(value), depth)
        if isinstance(value, float):
            return enc(float(value), depth)
        if isinstance(value, bytes | bytearray | memoryview):
            kind = "bytearray" if isinstance(value, bytearray) else "bytes"
            return {TAG: kind, "v": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, BaseException):
            return repr(value)  # as LangGraph's own serializer stores errors
        special = _STANDARD.get(type(value))
        if special is not None:
            return {TAG: special[0], "v": special[1](value, lambda v: enc(v, depth + 1))}
        if type(value).__name__ == "_DeltaSnapshot" and hasattr(value, "value"):
            return {TAG: "delta_snapshot", "v": enc(value.value, depth + 1)}
        if _is_send(value):
            args = [value.node, value.arg]
            if getattr(value, "timeout", None) is not None:
                args.append(value.timeout)
            return _obj(value, "args", enc(args, depth + 1))
        dump = getattr(value, "model_dump", None)
        if callable(dump) and not isinstance(value, type):
            return _obj(value, "pydantic", enc(dump(), depth + 1))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return _obj(value, "dataclass", enc(fields, depth + 1))
        if isinstance(value, tuple) and hasattr(value, "_asdict"):
            return _obj(value, "namedtuple", enc(dict(value._asdict()), depth + 1))
        for base, kind in _SUBCLASSABLE:
            if isinstance(value, base):
                items = [enc(v, depth + 1) for v in cast(Iterable[Any], value)]
                return items if kind == "list" else {TAG: kind, "v": items}
        if isinstance(value, Mapping):
            return enc(dict(value), depth)
        slots = _slot_fields(value)
        if slots is not None:
            return _obj(value, "kwargs", enc(slots, depth + 1))
        raise UnsupportedValue(value)

    # ------------------------------------------------------------------ decoding

    def _decode(self, data: Any) -> Any:
        if type(data) is list:
            return [self._decode(v) for v in data]
        if type(data) is not dict:
            return data
        tag = data.get(TAG)
        if tag is None:
            return {k: self._decode(v) for k, v in data.items()}
        try:
            return self._decode_tagged(tag, data)
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(
                "corrupt", f"a stored {tag!r} value is malformed ({type(exc).__name__}: {exc})"
            ) from exc

    def _decode_tagged(self, tag: str, data: dict[str, Any]) -> Any:
        value: Any = data.get("v")
        if tag == "obj":
            return self._decode_obj(data)
        if tag == "dict":
            return {self._decode(k): self._decode(v) for k, v in value}
        if tag in _CONTAINERS:
            return _CONTAINERS[tag]([self._decode(v) for v in value])
        if tag == "delta_snapshot":
            from langgraph.checkpoint.serde.types import _DeltaSnapshot

            return _DeltaSnapshot(self._decode(value))
        reader = _READERS.get(tag)
        if reader is None:
            raise StorageError(
                "unsupported_schema",
                f"a stored value is tagged {tag!r}, which this keepstone does not know: "
                "upgrade keepstone",
                {"tag": tag},
            )
        return reader(value, self._decode)

    def _decode_obj(self, data: dict[str, Any]) -> Any:
        module, name = data["cls"]
        kind = data["kind"]
        payload = self._decode(data["v"])
        key = (module, name)
        if key not in self._allowed:
            if key not in self._warned and len(self._warned) < 1000:
                self._warned.add(key)
                logger.warning(
                    "%s.%s is not in the allow-list: returning its data, not the object. "
                    "Allow it with KeepstoneSerializer(allowed_types=[...]) or the saver's "
                    "with_allowlist().",
                    module,
                    name,
                )
            return payload
        try:
            cls: Any = importlib.import_module(module)
            for part in name.split("."):
                cls = getattr(cls, part)
            if kind == "enum":
                return cls(payload)
            if kind == "args":
                if (module, name) == ("langgraph.types", "Send"):
                    return cls(
                        payload[0],
                        payload[1],
                        **({"timeout": payload[2]} if len(payload) > 2 else {}),
                    )
                return cls(*payload)
            if kind == "pydantic":
                try:
                    return cls(**payload)
                except Exception:
                    return cls.model_construct(**payload)
            return cls(**payload)
        except Exception as exc:
            if key not in self._warned:
                self._warned.add(key)
                logger.warning(
                    "could not rebuild %s.%s (%s: %s); returning its data",
                    module,
                    name,
                    type(exc).__name__,
                    exc,
                )
            return payload

    # ------------------------------------------------------------------ msgpack

    def _msgpack_loads(self, raw: bytes) -> Any:
        import ormsgpack

        if self._unpack_hook is None:
            from langgraph.checkpoint.serde.jsonplus import _create_msgpack_ext_hook

            self._unpack_hook = _create_msgpack_ext_hook(set(self._msgpack) or None)
        try:
            return ormsgpack.unpackb(
                raw, ext_hook=self._unpack_hook, option=ormsgpack.OPT_NON_STR_KEYS
            )
        except Exception as exc:
            raise StorageError("corrupt", f"a stored msgpack value is malformed: {exc}") from exc


def refuse_pickle(serializer: str) -> None:
    """Refuse a pickled value, whichever way it arrives.

    Raises:
        StorageError: ``invalid``.
    """
    if "pickle" in serializer.lower():
        raise StorageError(
            "invalid",
            "keepstone never writes or reads pickled values (unpickling runs arbitrary code); "
            "use KeepstoneSerializer or a serializer without pickle",
            {"serializer": serializer},
        )


def _msgpack_dumps(value: Any) -> bytes:
    from langgraph.checkpoint.serde.jsonplus import _msgpack_enc

    return _msgpack_enc(value)


def _b64(data: Any) -> bytes:
    if not isinstance(data, str):
        raise StorageError("corrupt", "a stored binary value is not base64 text")
    try:
        return base64.b64decode(data.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise StorageError("corrupt", f"a stored binary value is not base64: {exc}") from exc


def _obj(value: Any, kind: str, payload: Any) -> dict[str, Any]:
    cls = type(value)
    return {TAG: "obj", "cls": [cls.__module__, cls.__qualname__], "kind": kind, "v": payload}


def _is_send(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "Send" and cls.__module__ == "langgraph.types"


def _slot_fields(value: Any) -> dict[str, Any] | None:
    """The fields of a ``__slots__`` class such as LangGraph's store ``Item``."""
    cls = type(value)
    if cls.__module__ != "langgraph.store.base" or not hasattr(cls, "__slots__"):
        return None
    names = [n for c in cls.__mro__ for n in getattr(c, "__slots__", ()) if n != "__weakref__"]
    return {n: getattr(value, n) for n in names if hasattr(value, n)}


# The standard library types, written and read by name (no import on read).
_STANDARD: dict[type, tuple[str, Callable[[Any, Callable[[Any], Any]], Any]]] = {
    dt.datetime: ("datetime", lambda v, _: v.isoformat()),
    dt.date: ("date", lambda v, _: v.isoformat()),
    dt.time: ("time", lambda v, _: v.isoformat()),
    dt.timedelta: ("timedelta", lambda v, _: [v.days, v.seconds, v.microseconds]),
    dt.timezone: (
        "timezone",
        lambda v, _: [v.utcoffset(None).total_seconds(), v.tzname(None)],
    ),
    uuid.UUID: ("uuid", lambda v, _: str(v)),
    decimal.Decimal: ("decimal", lambda v, _: str(v)),
    pathlib.PurePosixPath: ("path", lambda v, _: str(v)),
    pathlib.PosixPath: ("path", lambda v, _: str(v)),
    pathlib.PureWindowsPath: ("windows_path", lambda v, _: str(v)),
    ZoneInfo: ("zoneinfo", lambda v, _: v.key),
    re.Pattern: ("pattern", lambda v, _: [v.pattern, v.flags]),
    ipaddress.IPv4Address: ("ip", lambda v, _: str(v)),
    ipaddress.IPv6Address: ("ip", lambda v, _: str(v)),
    ipaddress.IPv4Network: ("ip_network", lambda v, _: str(v)),
    ipaddress.IPv6Network: ("ip_network", lambda v, _: str(v)),
    ipaddress.IPv4Interface: ("ip_interface", lambda v, _: str(v)),
    ipaddress.IPv6Interface: ("ip_interface", lambda v, _: str(v)),
    tuple: ("tuple", lambda v, enc: [enc(x) for x in v]),
    set: ("set", lambda v, enc: [enc(x) for x in v]),
    frozenset: ("frozenset", lambda v, enc: [enc(x) for x in v]),
    deque: ("deque", lambda v, enc: [enc(x) for x in v]),
}

_SUBCLASSABLE: tuple[tuple[type, str], ...] = (
    (list, "list"),
    (tuple, "tuple"),
    (set, "set"),
    (frozenset, "frozenset"),
    (deque, "deque"),
)

_CONTAINERS: dict[str, Callable[[list[Any]], Any]] = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "deque": deque,
}


def _timezone(v: list[Any]) -> dt.timezone:
    offset = dt.timedelta(seconds=float(v[0]))
    return dt.timezone(offset) if v[1] is None else dt.timezone(offset, v[1])


_READERS: dict[str, Callable[[Any, Callable[[Any], Any]], Any]] = {
    "int": lambda v, _: int(v),
    "float": lambda v, _: float(v),
    "bytes": lambda v, _: _b64(v),
    "bytearray": lambda v, _: bytearray(_b64(v)),
    "datetime": lambda v, _: dt.datetime.fromisoformat(v),
    "date": lambda v, _: dt.date.fromisoformat(v),
    "time": lambda v, _: dt.time.fromisoformat(v),
    "timedelta": lambda v, _: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "timezone": lambda v, _: _timezone(v),
    "uuid": lambda v, _: uuid.UUID(v),
    "decimal": lambda v, _: decimal.Decimal(v),
    "path": lambda v, _: pathlib.Path(v),
    "windows_path": lambda v, _: pathlib.PureWindowsPath(v),
    "zoneinfo": lambda v, _: ZoneInfo(v),
    "pattern": lambda v, _: re.compile(v[0], v[1]),
    "ip": lambda v, _: ipaddress.ip_address(v),
    "ip_network": lambda v, _: ipaddress.ip_network(v),
    "ip_interface": lambda v, _: ipaddress.ip_interface(v),
}
