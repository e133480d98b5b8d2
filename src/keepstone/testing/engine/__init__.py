"""The engine conformance suite: the rules of the record engine SPI, for any engine.

An engine's test module subclasses :class:`EngineConformance` and implements
the single factory hook::

    class TestMyEngine(EngineConformance):
        async def make_engine(self, location):
            return await MyEngine.open(location / "data")

Every test gets a fresh ``engine`` (the hook called on an empty per-test
directory) and checks one rule of :mod:`keepstone.engine.spi`:
preconditions see the earlier ops of their batch, refused batches leave
nothing, seqs and the audit chain follow commit order, ``find`` filters,
orders and pages the way the reference does. One test drives the engine and
:class:`~keepstone.backends.memory.engine.MemoryEngine` (the reference) with
the same random history and compares every query answer. The base class has
no ``Test`` prefix, so pytest collects only subclasses.

What runs is decided by the engine's ``capabilities``, never by flags on the
test class. A test that needs a capability the engine does not declare is
skipped with a reason naming it. The names (:data:`CAPABILITIES`):

``"durable"``
    What ``apply`` committed survives ``close()``: opening the same location
    again (``make_engine(location)`` a second time) reopens the same rows,
    seqs, counters, audit chain head and blobs. The reopen tests run.
``"multi_process"``
    Several engines (processes, machines) may have one location open at once
    and commit to it in turn, each seeing the others' commits. The suite opens
    a second engine on the location in the same process and interleaves
    commits of both.
``"fts"``
    ``find(text=...)`` answers full-text queries: every word of the query
    must occur, case-insensitively, as a whole word of a ``text`` field, as
    the reference engine matches them. The text tests run.
``"blob_files"``
    Large blobs are kept as files beside the records (a layout fact for
    people and tools); no test depends on it.

An engine that declares a name not listed here fails
``test_declares_only_known_capabilities``: a misspelt capability would
otherwise switch its tests off without a word.

Every engine must provide the rest of the SPI: atomic, ordered ``apply``
with group commit (concurrent callers, a refused batch failing alone), reads,
blobs and ``close``.

The suite is :class:`EngineConformance`; its parts can be subclassed alone
(an engine with two write paths may run :class:`EngineWriteConformance` on
the second): :class:`EngineWriteConformance` (``apply``: ops, preconditions,
seqs, audit chain, refused batches, group commit, the differential test),
:class:`EngineReadConformance` (``find``, ``count``, blobs) and
:class:`EngineLifecycleConformance` (declarations, close, reopen, two engines
on one location). The helpers beside them (:func:`audit_draft`,
:func:`event_row`, :func:`assert_audit_chain`, :func:`random_history`,
:func:`assert_same_answers`) serve an engine's own extra tests.
"""

from keepstone.testing.engine.base import (
    CAPABILITIES,
    EngineConformanceBase,
    assert_audit_chain,
    audit_draft,
    event_row,
    requires,
)
from keepstone.testing.engine.history import HISTORY_QUERIES, assert_same_answers, random_history
from keepstone.testing.engine.lifecycle import EngineLifecycleConformance
from keepstone.testing.engine.reads import EngineReadConformance
from keepstone.testing.engine.writes import EngineWriteConformance


class EngineConformance(EngineWriteConformance, EngineReadConformance, EngineLifecycleConformance):
    """The whole engine suite: every rule of the SPI against one engine."""


__all__ = [
    "CAPABILITIES",
    "HISTORY_QUERIES",
    "EngineConformance",
    "EngineConformanceBase",
    "EngineLifecycleConformance",
    "EngineReadConformance",
    "EngineWriteConformance",
    "assert_audit_chain",
    "assert_same_answers",
    "audit_draft",
    "event_row",
    "random_history",
    "requires",
]
