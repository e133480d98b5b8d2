"""The tables every engine stores, and how each is keyed and indexed."""

from __future__ import annotations

from keepstone.engine.spi import Table

RUNS = Table("runs", columns=("name", "status", "created_at"), tags="labels")
SNAPSHOTS = Table(
    "snapshots", key=("run_id", "number"), columns=("run_id", "number"), partition="run_id"
)
MANIFESTS = Table("manifests", key=("run_id",))

COLLECTIONS = Table("collections", columns=("name",))
ARTIFACTS = Table(
    "artifacts",
    columns=("collection_id", "name", "type", "digest", "run_id", "deleted_at"),
    tags="metadata",
)
ARTIFACT_TEXT = Table("artifact_text", text=("text",))
"""Full text of an artifact's head revision (text content only): ``{id, text}``."""
REVISIONS = Table(
    "revisions",
    key=("artifact_id", "number"),
    columns=("artifact_id", "number", "digest"),
    partition="artifact_id",
)
RELATIONSHIPS = Table("relationships", columns=("source_id", "target_id", "kind"))
CHANGES = Table("changes", key=("seq",), seq=True, columns=("seq", "artifact_id"))

LOG_LINES = Table(
    "log_lines",
    key=("seq",),
    seq=True,
    columns=("seq", "run_id", "level", "event", "step"),
    partition="run_id",
)
LOG_REFS = Table("log_refs", key=("run_id",))

EVENTS = Table(
    "events",
    seq=True,
    columns=("seq", "profile_id", "path_id", "payload.kind"),
)
PROFILES = Table("profiles")
NODES = Table(
    "nodes", key=("profile_id", "id"), columns=("profile_id", "id", "kind"), text=("content",)
)
EDGES = Table(
    "edges",
    key=("profile_id", "id"),
    columns=("profile_id", "id", "source_id", "target_id", "kind"),
)
PATHS = Table("paths", key=("profile_id", "id"), columns=("profile_id", "id", "status"))
ACTIVATIONS = Table("activations", columns=("profile_id", "path_id"))
MEMORY_HEADS = Table("memory_heads")
"""Per-profile write version ``{id, version}``: graph-changing event batches
check and bump it, so concurrent writers of one profile serialise."""

AUDIT = Table(
    "audit", key=("seq",), seq=True, columns=("seq", "action", "target", "actor", "outcome")
)
EXTERNALS = Table("externals", columns=("system",))
PACKAGES = Table("packages")

ALL_TABLES: tuple[Table, ...] = (
    RUNS,
    SNAPSHOTS,
    MANIFESTS,
    COLLECTIONS,
    ARTIFACTS,
    ARTIFACT_TEXT,
    REVISIONS,
    RELATIONSHIPS,
    CHANGES,
    LOG_LINES,
    LOG_REFS,
    EVENTS,
    PROFILES,
    NODES,
    EDGES,
    PATHS,
    ACTIVATIONS,
    MEMORY_HEADS,
    AUDIT,
    EXTERNALS,
    PACKAGES,
)
"""Every table, in a fixed order (schemas and exports follow it)."""
