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
  entry; a larger one is a part of its own, named by its digest, and the
  entry holds the digest. Parts are stored by content, so a value that did
  not change is not written again: the entry of a channel whose version did
  not move simply repeats the digest.
- The **pending writes** of one ``put_writes`` call are a run snapshot
  labelled ``writes <checkpoint id> <task id> [<ns>]``, with a ``writes``
  header and the large values as parts, like a checkpoint.
- A ``values`` snapshot holds large values that kept checkpoints still use
  after the snapshots that first stored them were pruned.

Every one of these is an ordinary keepstone record: snapshots export and
import them, the doctor checks their parts, and each write is in the audit
chain (``run.snapshot``).

Value entries: ``{"s": serializer, "v": json}`` (JSON, inline),
``{"s": serializer, "b": base64}`` (bytes from another serializer, inline),
``{"s": serializer, "d": digest, "n": size}`` (stored as the part named
``digest``, whose content is the inline form).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

from keepstone.errors import StorageError

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

LabelKind = Literal["checkpoint", "writes", "values"]


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
    """What a snapshot's ``step`` label says about it."""

    kind: LabelKind
    checkpoint_id: str = ""
    checkpoint_ns: str = ""
    task_id: str = ""


def checkpoint_label(checkpoint_ns: str, checkpoint_id: str) -> str:
    text = f"checkpoint {quote(checkpoint_id, safe='')}"
    return text + (f" {quote(checkpoint_ns, safe='')}" if checkpoint_ns else "")


def writes_label(checkpoint_ns: str, checkpoint_id: str, task_id: str) -> str:
    text = f"writes {quote(checkpoint_id, safe='')} {quote(task_id, safe='')}"
    return text + (f" {quote(checkpoint_ns, safe='')}" if checkpoint_ns else "")


VALUES_LABEL: Final = "values"


def parse_label(step: str | None) -> Label | None:
    """The label of a thread snapshot, or ``None`` for anything else."""
    if not step:
        return None
    words = step.split(" ")
    try:
        if words[0] == "checkpoint" and len(words) in (2, 3):
            ns = unquote(words[2]) if len(words) == 3 else ""
            return Label("checkpoint", unquote(words[1]), ns)
        if words[0] == "writes" and len(words) in (3, 4):
            ns = unquote(words[3]) if len(words) == 4 else ""
            return Label("writes", unquote(words[1]), ns, unquote(words[2]))
    except (ValueError, UnicodeDecodeError):
        return None
    if step == VALUES_LABEL:
        return Label("values")
    return None


def entry_digest(entry: Any) -> str | None:
    """The digest a value entry refers to, or ``None`` for an inline entry."""
    if isinstance(entry, dict):
        digest = entry.get("d")
        return digest if isinstance(digest, str) else None
    return None


def header_digests(header: dict[str, Any]) -> set[str]:
    """Every digest a checkpoint or writes header refers to."""
    found: set[str] = set()
    for entry in (header.get("values") or {}).values():
        if (d := entry_digest(entry)) is not None:
            found.add(d)
    for write in header.get("writes") or []:
        if isinstance(write, list) and len(write) == 3 and (d := entry_digest(write[2])):
            found.add(d)
    for key in ("checkpoint", "metadata"):
        if (d := entry_digest(header.get(key))) is not None:
            found.add(d)
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
