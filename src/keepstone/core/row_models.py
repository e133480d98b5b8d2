"""Which schema model the rows of each table follow."""

from __future__ import annotations

from pydantic import BaseModel

from keepstone.engine.tables import (
    ACTIVATIONS,
    ARTIFACTS,
    AUDIT,
    CHANGES,
    COLLECTIONS,
    EDGES,
    EVENTS,
    EXTERNALS,
    LOG_LINES,
    LOG_REFS,
    MANIFESTS,
    NODES,
    PACKAGES,
    PATHS,
    PROFILES,
    RELATIONSHIPS,
    REVISIONS,
    RUNS,
    SNAPSHOTS,
)
from keepstone.schemas.artifacts import (
    Artifact,
    ArtifactRevision,
    ChangeRecord,
    Collection,
    Relationship,
)
from keepstone.schemas.audit import AuditRecord
from keepstone.schemas.context import ContextPackage, ExternalMemoryRef
from keepstone.schemas.logs import LogLine, LogReference
from keepstone.schemas.memory import (
    ActivationPlan,
    MemoryEdge,
    MemoryEvent,
    MemoryNode,
    MemoryPath,
    Profile,
)
from keepstone.schemas.runs import Run, RunManifest, RunSnapshotRecord

MODELS: dict[str, type[BaseModel]] = {
    RUNS.name: Run,
    SNAPSHOTS.name: RunSnapshotRecord,
    MANIFESTS.name: RunManifest,
    COLLECTIONS.name: Collection,
    ARTIFACTS.name: Artifact,
    REVISIONS.name: ArtifactRevision,
    RELATIONSHIPS.name: Relationship,
    CHANGES.name: ChangeRecord,
    LOG_LINES.name: LogLine,
    LOG_REFS.name: LogReference,
    EVENTS.name: MemoryEvent,
    PROFILES.name: Profile,
    NODES.name: MemoryNode,
    EDGES.name: MemoryEdge,
    PATHS.name: MemoryPath,
    ACTIVATIONS.name: ActivationPlan,
    AUDIT.name: AuditRecord,
    EXTERNALS.name: ExternalMemoryRef,
    PACKAGES.name: ContextPackage,
}
"""Tables whose rows are validated against a model (on snapshot import, by the
doctor); the others (``artifact_text``, ``memory_heads``) are keepstone's own
index rows."""
