"""ArtifactStore over a RecordEngine: revisions, tombstones, relationships, changes.

One class, :class:`RecordArtifactStore`, assembled from a part per job:

- :mod:`.common` — dependencies, lookups by id and name, change records;
- :mod:`.collections` — collections;
- :mod:`.content` — checking and hashing the bytes, JSONL lines;
- :mod:`.writes` — create, update, delete, JSONL writes;
- :mod:`.revisions` — revision history, reading bytes, purging;
- :mod:`.relationships` — links between artifacts;
- :mod:`.queries` — queries and the change feed.
"""

from __future__ import annotations

from keepstone.core.artifacts.collections import Collections
from keepstone.core.artifacts.queries import ArtifactQueries
from keepstone.core.artifacts.relationships import Relationships
from keepstone.core.artifacts.revisions import ArtifactRevisions
from keepstone.core.artifacts.writes import ArtifactWrites

__all__ = ["RecordArtifactStore"]


class RecordArtifactStore(
    Collections, ArtifactWrites, ArtifactRevisions, Relationships, ArtifactQueries
):
    """Artifacts (see :class:`keepstone.ports.ArtifactStore`)."""
