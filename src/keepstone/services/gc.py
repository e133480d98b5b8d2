"""Blob garbage collection: plan over the public ports, delete under review.

A blob is *referenced* by an artifact revision whose bytes are not purged
(live or deleted artifacts alike: a tombstone keeps its history readable), by
a part of a run snapshot, or by a sealed log stream. Blobs nothing refers to
are left behind by pruned snapshots, purged logs and revisions, failed
writes, or :meth:`~keepstone.ports.BlobStore.put` calls that were never
linked to a record.

``plan()`` lists the unreferenced blobs and changes nothing; ``apply(plan,
approval)`` deletes them through the review gate (``gc_blobs``) with
:meth:`~keepstone.ports.BlobStore.delete_unreferenced`, which re-checks every
reference, so a stale plan never deletes bytes that gained a reference.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from pydantic import Field

from keepstone.ports.artifacts import ArtifactStore
from keepstone.ports.blobs import BlobStore
from keepstone.ports.logs import LogStore
from keepstone.ports.runs import RunStore
from keepstone.schemas._base import Clock, Model, UtcDatetime
from keepstone.schemas.artifacts import ArtifactQuery, BlobInfo
from keepstone.schemas.audit import ApprovalMarker
from keepstone.schemas.common import Page
from keepstone.services.paging import PAGE_SIZE, every


class GcPlan(Model):
    """What a collection would delete, as of ``planned_at``."""

    planned_at: UtcDatetime
    unreferenced: list[BlobInfo] = Field(default_factory=list)
    referenced: int = 0
    """How many stored blobs are referenced (and stay)."""

    @property
    def bytes(self) -> int:
        """The bytes deleting the unreferenced blobs would free."""
        return sum(b.size for b in self.unreferenced)


class GcReport(Model):
    """What ``apply`` deleted, and what it skipped because a reference appeared
    or the blob was already gone."""

    deleted: list[BlobInfo] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)


class BlobCollector:
    """``store.gc``: find and delete blobs nothing refers to."""

    def __init__(
        self,
        blobs: BlobStore,
        artifacts: ArtifactStore,
        runs: RunStore,
        logs: LogStore,
        clock: Clock,
    ) -> None:
        self._blobs = blobs
        self._artifacts = artifacts
        self._runs = runs
        self._logs = logs
        self._clock = clock

    async def references(self) -> set[str]:
        """Every digest a revision, snapshot part or sealed log refers to."""
        found: set[str] = set()
        everything = ArtifactQuery(include_deleted=True)

        def artifacts(cursor: str | None) -> Awaitable[Page[Any]]:
            return self._artifacts.query(everything, cursor=cursor, limit=PAGE_SIZE)

        async for art in every(artifacts):

            def revisions(cursor: str | None, art_id: str = art.id) -> Awaitable[Page[Any]]:
                return self._artifacts.revisions(art_id, cursor=cursor, limit=PAGE_SIZE)

            async for rev in every(revisions):
                if not rev.purged:
                    found.add(rev.digest)

        def runs(cursor: str | None) -> Awaitable[Page[Any]]:
            return self._runs.list(cursor=cursor, limit=PAGE_SIZE)

        async for run in every(runs):

            def snapshots(cursor: str | None, run_id: str = run.id) -> Awaitable[Page[Any]]:
                return self._runs.list_snapshots(run_id, cursor=cursor, limit=PAGE_SIZE)

            async for snap in every(snapshots):
                found.update(snap.parts.values())
            ref = await self._logs.reference(run.id)
            if ref is not None:
                found.add(ref.digest)
        return found

    async def plan(self) -> GcPlan:
        """List the stored blobs nothing refers to. Changes nothing."""
        now = self._clock.now()
        referenced = await self.references()
        unreferenced: list[BlobInfo] = []
        kept = 0

        def blobs(cursor: str | None) -> Awaitable[Page[BlobInfo]]:
            return self._blobs.list(cursor=cursor, limit=PAGE_SIZE)

        async for blob in every(blobs):
            if blob.digest in referenced:
                kept += 1
            else:
                unreferenced.append(blob)
        return GcPlan(planned_at=now, unreferenced=unreferenced, referenced=kept)

    async def apply(self, plan: GcPlan, approval: ApprovalMarker | None = None) -> GcReport:
        """Delete the plan's blobs that are still unreferenced.

        Raises:
            StorageError: ``review_required`` (audited as denied) without an
                approval; ``corrupt`` if a record that may hold a reference
                cannot be read (nothing is deleted).
        """
        digests = [b.digest for b in plan.unreferenced]
        deleted = await self._blobs.delete_unreferenced(digests, approval=approval)
        gone = {b.digest for b in deleted}
        return GcReport(deleted=deleted, skipped=[d for d in digests if d not in gone])
