"""The backend SPI: what an engine provides and the rules every engine follows.

* :mod:`keepstone.engine.spi` — :class:`RecordEngine`, the write-batch ops,
  :class:`Table` and filters;
* :mod:`keepstone.engine.tables` — the table catalogue every engine stores;
* :mod:`keepstone.engine.match` — filter, order and full-text matching, for
  engines that evaluate filters in Python;
* :mod:`keepstone.engine.stager` — the one implementation of the batch rules
  (overlay, idempotent re-put, conflicts, seq assignment, audit chaining) that
  turns a group of batches into its net effect against committed state.

Layering: this package imports only :mod:`keepstone.errors` and
:mod:`keepstone.schemas`; the domain (:mod:`keepstone.core`) and the backends
import it, never the other way round.
"""

from keepstone.engine.spi import (
    Append,
    BatchResult,
    BlobPut,
    Check,
    CheckNone,
    Cmp,
    Delete,
    EngineFactory,
    In,
    Op,
    Put,
    RecordEngine,
    Restore,
    SetCounter,
    Table,
    Where,
    WriteBatch,
)

__all__ = [
    "Append",
    "BatchResult",
    "BlobPut",
    "Check",
    "CheckNone",
    "Cmp",
    "Delete",
    "EngineFactory",
    "In",
    "Op",
    "Put",
    "RecordEngine",
    "Restore",
    "SetCounter",
    "Table",
    "Where",
    "WriteBatch",
]
