"""How LangGraph threads are kept in keepstone records.

- A **thread** is a keepstone run named ``langgraph.thread`` whose id is
  derived from the thread id (``lgt.<thread id>``, or ``lgt.x:<sha256>`` for
  ids that are not plain ``[A-Za-z0-9_-]`` text) and whose params hold the
  thread id. ``delete_thread`` ends the run as ``cancelled`` (a tombstone
  naming who deleted it and when); using the thread id again starts a new
  *generation*, ``lgt.<key>.2``.
- A **checkpoint** is a run snapshot labelled ``checkpoint <id> [<ns>]``.
  Its part ``checkpoint`` is the header: the checkpoint without its channel
  values, its metadata, its parent, and one entry per channel. A channel
  value whose JSON is small (at most :data:`INLINE_LIMIT` bytes) sits in the
  entry; every larger piece of it is a part of its own, named by its
  digest, and the
  entry holds the digest (long lists are cut in chunks, see
  :mod:`keepstone.langgraph.parts`). Parts are stored by content, so a value
  that did not change is not written again: the entry of a channel whose
  version did not move simply repeats the digests.
- The **pending writes** of one ``put_writes`` call are a run snapshot
  labelled ``writes <checkpoint id> <task id> [<ns>]``, with a ``writes``
  header and the large values as parts, like a checkpoint.
- A ``values`` snapshot holds large values that kept checkpoints still use
  after the snapshots that first stored them were pruned.
- A ``claim`` snapshot marks where a writer took the thread over; a
  checkpoint or pending write labelled with an older writer's epoch that
  comes after it is void (see :mod:`keepstone.langgraph.fencing`).

Every one of these is an ordinary keepstone record: snapshots export and
import them, the doctor checks their parts, and each write is in the audit
chain (``run.snapshot``).

Value entries: ``{"s": serializer, "v": json}`` (JSON) or ``{"s":
serializer, "b": base64}`` (bytes from another serializer), where large
pieces of ``v`` or ``b`` are references to parts named by their digest
(see :mod:`keepstone.langgraph.parts`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

from keepstone.errors import StorageError
from keepstone.langgraph.parts import refs_of

RUN_NAME: Final = "langgraph.thread"
"""The name of every thread's run (``keepstone runs list --name langgraph.thread``)."""

WRITER_STEP: Final = "langgraph.writer"
"""The run step whose attempts count the writers that claimed the thread."""

RETENTION_STEP: Final = "langgraph.retention"
"""The run step whose attempts count the prunes of the thread."""

DELETED: Final = "langgraph.thread_deleted"
"""The error type of a deleted thread's run."""

CHECKPOINT_PART: Final = "checkpoint"
WRITES_PART: Final = "writes"

INLINE_LIMIT: Final = 2048
"""Values whose JSON is larger than this many bytes are stored by digest."""

FORMAT: Final = 1
"""The version of the header format this keepstone writes and reads."""

_PLAIN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,150}")

LabelKind = Literal["checkpoint", "writes", "values", "claim"]


def thread_key(thread_id: str) -> str:
    """The part of a run id that names ``thread_id``."""
    if not isinstance(thread_id, str) or not thread_id:
        raise StorageError(
            "invalid",
            f"a LangGraph thread_id must be a non-empty string, not {thread_id!r}",
            {"thread_id": repr(thread_id)},
        )
    if _PLAIN_KEY.fullmatch(thread_id):
        return thread_id
    return "x:" + hashlib.sha256(thread_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def thread_run_id(thread_id: str, generation: int = 1) -> str:
    """The id of the run holding generation ``generation`` of a thread."""
    base = f"lgt.{thread_key(thread_id)}"
    return base if generation == 1 else f"{base}.{generation}"


@dataclass(frozen=True, slots=True)
class Label:
    """What a snapshot's ``step`` label says about it.

    ``epoch`` is the writer's claim (see :mod:`keepstone.langgraph.fencing`)
    for checkpoints, pending writes and claims; 0 for ``values`` snapshots.
    """

    kind: LabelKind
    checkpoint_id: str = ""
    checkpoint_ns: str = ""
    task_id: str = ""
    epoch: int = 0


def _q(text: str) -> str:
    return quote(text, safe="")


def checkpoint_label(checkpoint_ns: str, checkpoint_id: str, epoch: int) -> str:
    """``checkpoint <id> e<epoch> [<ns>]`` (ids and namespaces URL-quoted)."""
    text = f"checkpoint {_q(checkpoint_id)} e{epoch}"
    return text + (f" {_q(checkpoint_ns)}" if checkpoint_ns else "")


def writes_label(checkpoint_ns: str, checkpoint_id: str, task_id: str, epoch: int) -> str:
    """``writes <checkpoint id> <task id> e<epoch> [<ns>]``."""
    text = f"writes {_q(checkpoint_id)} {_q(task_id)} e{epoch}"
    return text + (f" {_q(checkpoint_ns)}" if checkpoint_ns else "")


def claim_label(epoch: int) -> str:
    """``claim e<epoch>``: writer ``epoch`` took the thread over here."""
    return f"claim e{epoch}"


VALUES_LABEL: Final = "values"


def _epoch(word: str) -> int:
    if not word.startswith("e") or not word[1:].isdigit():
        raise ValueError(word)
    return int(word[1:])


def parse_label(step: str | None) -> Label | None:
    """The label of a thread snapshot, or ``None`` for anything else."""
    if not step:
        return None
    words = step.split(" ")
    try:
        if words[0] == "checkpoint" and len(words) in (3, 4):
            ns = unquote(words[3]) if len(words) == 4 else ""
            return Label("checkpoint", unquote(words[1]), ns, epoch=_epoch(words[2]))
        if words[0] == "writes" and len(words) in (4, 5):
            ns = unquote(words[4]) if len(words) == 5 else ""
            return Label("writes", unquote(words[1]), ns, unquote(words[2]), epoch=_epoch(words[3]))
        if words[0] == "claim" and len(words) == 2:
            return Label("claim", epoch=_epoch(words[1]))
    except (ValueError, UnicodeDecodeError):
        return None
    if step == VALUES_LABEL:
        return Label("values")
    return None


def entry_digests(entry: Any) -> list[str]:
    """The digests a value entry refers to directly."""
    if isinstance(entry, dict):
        return refs_of(entry.get("v") if "v" in entry else entry.get("b"))
    return []


def header_digests(header: dict[str, Any]) -> set[str]:
    """Every digest a checkpoint or writes header refers to directly (the
    parts these refer to in turn are found with
    :func:`keepstone.langgraph.parts.closure`)."""
    found: set[str] = set()
    for entry in (header.get("values") or {}).values():
        found.update(entry_digests(entry))
    for write in header.get("writes") or []:
        if isinstance(write, list) and len(write) == 3:
            found.update(entry_digests(write[2]))
    for key in ("checkpoint", "metadata"):
        found.update(entry_digests(header.get(key)))
    return found


def check_header(header: Any, kind: str) -> dict[str, Any]:
    """``header`` if it is a header of ``kind`` this keepstone reads.

    Raises:
        StorageError: ``corrupt`` for a malformed header;
            ``unsupported_schema`` for a newer format.
    """
    if not isinstance(header, dict) or header.get("kind") != f"langgraph.{kind}":
        raise StorageError("corrupt", f"a stored LangGraph {kind} header is malformed", {})
    fmt = header.get("format")
    if not isinstance(fmt, int) or fmt > FORMAT:
        raise StorageError(
            "unsupported_schema",
            f"a LangGraph {kind} was stored in format {fmt!r}; this keepstone reads up to "
            f"{FORMAT}: upgrade keepstone",
            {"format": fmt, "supported": FORMAT},
        )
    return header
