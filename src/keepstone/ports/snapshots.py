"""SnapshotStore: move a whole store, or one profile's graph, in and out."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from keepstone.schemas.memory import Profile
from keepstone.schemas.snapshot import GraphEnvelope, SnapshotManifest

Progress = Callable[[str, int], None]
"""Called as ``progress(stage, items_done)`` while exporting or importing."""


class SnapshotStore(Protocol):
    """Deterministic, verifiable snapshots.

    A snapshot is a directory (or one ``.tar`` file holding it):
    ``manifest.json`` (format, schema version, keepstone version, creation
    time, record counts, the sequence counters and a sha256 per part),
    ``records/<table>.jsonl`` (one
    canonical JSON row per line, in key or seq order) and
    ``blobs/<sha256 hex>``. The same state and clock give byte-identical
    output.
    """

    async def export_to(
        self,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        created_at: datetime | None = None,
    ) -> SnapshotManifest:
        """Export the whole store, streaming (constant memory).

        Args:
            dest: a directory that does not exist or is empty, or a path
                ending in ``.tar``.
            created_at: the manifest's creation time (default: the store's
                clock); pin it for reproducible exports.

        Raises:
            StorageError: ``conflict`` if ``dest`` exists and is not empty;
                ``corrupt`` if a stored blob no longer matches its digest.
        """
        ...

    async def import_from(
        self, source: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> SnapshotManifest:
        """Import a snapshot into this store, which must be empty.

        Everything is checked before anything is written: the archive's
        shape (entries, their kinds, bounded by ``Limits.max_snapshot_bytes``
        and ``max_snapshot_entries``), every part's and blob's digest, every
        record's schema, no key twice, the audit chain and every row against
        the digest its audit record wrote, the counters against the rows.
        The import is all-or-nothing: a failure after the first write removes
        what was written and puts the counters back. Ids, digests, sequence
        numbers (counters included) and the audit chain survive.

        Raises:
            StorageError: ``conflict`` if the store is not empty; ``corrupt``
                for a tampered, forged, truncated or malformed snapshot (the
                message names the entry and what is wrong); ``invalid`` for an
                archive entry with an absolute path, ``..``, a link, a FIFO or a
                device, or past the bounds; ``unsupported_schema`` for a newer
                snapshot format.
        """
        ...

    async def export_graph(self, profile_id: str) -> GraphEnvelope:
        """One profile's graph as an envelope.

        Raises:
            StorageError: ``not_found``.
        """
        ...

    async def import_graph(self, envelope: GraphEnvelope) -> Profile:
        """Recreate a profile's graph from an envelope, as events.

        Raises:
            StorageError: ``conflict`` if the profile exists;
                ``unsupported_schema`` for a newer envelope; ``integrity`` if
                an edge's endpoint is missing from the envelope.
        """
        ...
