-- keepstone SQLite schema, version 1.
--
-- One table per keepstone Table (keepstone.engine.tables.ALL_TABLES):
-- its key column, its filterable columns (declared without a type so values keep
-- their JSON type; dotted names use underscores) and `body`, the canonical JSON
-- bytes of the record. Tables with `text` fields have an explicit `rid` so their
-- contentless FTS5 index has a stable rowid; tables with a `tags` field have a
-- `<name>_tags` side table. Every index below backs a query the stores make.
-- Applied by keepstone.backends.sql.sqlite_writer inside BEGIN IMMEDIATE.

CREATE TABLE keepstone_meta (
    name TEXT PRIMARY KEY NOT NULL,
    value NOT NULL
) WITHOUT ROWID;

-- The last seq assigned per seq table, and the audit chain head.
CREATE TABLE keepstone_counters (
    name TEXT PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT
) WITHOUT ROWID;

-- Content-addressed bytes. `data` is NULL when the bytes are the file
-- <db>.blobs/<hex[0:2]>/<hex[2:4]>/<hex> (blobs larger than blob_threshold).
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY NOT NULL,
    size INTEGER NOT NULL,
    data BLOB
);

-- runs: key id; columns name, status, created_at
CREATE TABLE runs (
    id TEXT PRIMARY KEY NOT NULL,
    name,
    status,
    created_at,
    body BLOB NOT NULL
);
CREATE INDEX ix_runs_created_at_id ON runs (created_at, id);
CREATE INDEX ix_runs_name_created_at_id ON runs (name, created_at, id);
CREATE INDEX ix_runs_status_created_at_id ON runs (status, created_at, id);
CREATE TABLE runs_tags (
    key TEXT NOT NULL,
    tag TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (key, tag)
) WITHOUT ROWID;
CREATE INDEX ix_runs_tags_tag_value ON runs_tags (tag, value, key);

-- snapshots: key run_id+number; columns run_id, number
CREATE TABLE snapshots (
    pk TEXT PRIMARY KEY NOT NULL,
    run_id,
    number,
    body BLOB NOT NULL
);
CREATE INDEX ix_snapshots_run_id_number_pk ON snapshots (run_id, number, pk);

-- manifests: key run_id
CREATE TABLE manifests (
    run_id TEXT PRIMARY KEY NOT NULL,
    body BLOB NOT NULL
);

-- collections: key id; columns name
CREATE TABLE collections (
    id TEXT PRIMARY KEY NOT NULL,
    name,
    body BLOB NOT NULL
);
CREATE INDEX ix_collections_name_id ON collections (name, id);

-- artifacts: key id; columns collection_id, name, type, digest, run_id, deleted_at
CREATE TABLE artifacts (
    id TEXT PRIMARY KEY NOT NULL,
    collection_id,
    name,
    type,
    digest,
    run_id,
    deleted_at,
    body BLOB NOT NULL
);
CREATE INDEX ix_artifacts_collection_id_name_deleted_at ON artifacts (collection_id, name, deleted_at);
CREATE INDEX ix_artifacts_collection_id_id ON artifacts (collection_id, id);
CREATE INDEX ix_artifacts_name_id ON artifacts (name, id);
CREATE INDEX ix_artifacts_type_id ON artifacts (type, id);
CREATE INDEX ix_artifacts_digest_id ON artifacts (digest, id);
CREATE INDEX ix_artifacts_run_id_id ON artifacts (run_id, id);
CREATE INDEX ix_artifacts_deleted_at_id ON artifacts (deleted_at, id);
CREATE TABLE artifacts_tags (
    key TEXT NOT NULL,
    tag TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (key, tag)
) WITHOUT ROWID;
CREATE INDEX ix_artifacts_tags_tag_value ON artifacts_tags (tag, value, key);

-- artifact_text: key id
CREATE TABLE artifact_text (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL
);
CREATE VIRTUAL TABLE artifact_text_fts USING fts5(
    text,
    content = '',
    tokenize = 'unicode61 remove_diacritics 0 tokenchars ''_'''
);

-- revisions: key artifact_id+number; columns artifact_id, number, digest
CREATE TABLE revisions (
    pk TEXT PRIMARY KEY NOT NULL,
    artifact_id,
    number,
    digest,
    body BLOB NOT NULL
);
CREATE INDEX ix_revisions_artifact_id_number_pk ON revisions (artifact_id, number, pk);

-- relationships: key id; columns source_id, target_id, kind
CREATE TABLE relationships (
    id TEXT PRIMARY KEY NOT NULL,
    source_id,
    target_id,
    kind,
    body BLOB NOT NULL
);
CREATE INDEX ix_relationships_source_id_id ON relationships (source_id, id);
CREATE INDEX ix_relationships_target_id_id ON relationships (target_id, id);
CREATE INDEX ix_relationships_source_id_target_id_kind ON relationships (source_id, target_id, kind);

-- changes: key seq; columns seq, artifact_id
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY,
    artifact_id,
    body BLOB NOT NULL
);
CREATE INDEX ix_changes_artifact_id_seq ON changes (artifact_id, seq);

-- log_lines: key seq; columns seq, run_id, level, event, step
CREATE TABLE log_lines (
    seq INTEGER PRIMARY KEY,
    run_id,
    level,
    event,
    step,
    body BLOB NOT NULL
);
CREATE INDEX ix_log_lines_run_id_seq ON log_lines (run_id, seq);

-- log_refs: key run_id
CREATE TABLE log_refs (
    run_id TEXT PRIMARY KEY NOT NULL,
    body BLOB NOT NULL
);

-- events: key id; columns seq, profile_id, path_id, payload.kind
CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL,
    seq INTEGER,
    profile_id,
    path_id,
    payload_kind,
    body BLOB NOT NULL
);
CREATE INDEX ix_events_seq_id ON events (seq, id);
CREATE INDEX ix_events_profile_id_seq_id ON events (profile_id, seq, id);
CREATE INDEX ix_events_path_id_seq_id ON events (path_id, seq, id);
CREATE INDEX ix_events_payload_kind_seq_id ON events (payload_kind, seq, id);

-- profiles: key id
CREATE TABLE profiles (
    id TEXT PRIMARY KEY NOT NULL,
    body BLOB NOT NULL
);

-- nodes: key profile_id+id; columns profile_id, id, kind
CREATE TABLE nodes (
    rid INTEGER PRIMARY KEY,
    pk TEXT NOT NULL UNIQUE,
    profile_id,
    id,
    kind,
    body BLOB NOT NULL
);
CREATE INDEX ix_nodes_profile_id_id_pk ON nodes (profile_id, id, pk);
CREATE INDEX ix_nodes_profile_id_kind_id_pk ON nodes (profile_id, kind, id, pk);
CREATE VIRTUAL TABLE nodes_fts USING fts5(
    content,
    content = '',
    tokenize = 'unicode61 remove_diacritics 0 tokenchars ''_'''
);

-- edges: key profile_id+id; columns profile_id, id, source_id, target_id, kind
CREATE TABLE edges (
    pk TEXT PRIMARY KEY NOT NULL,
    profile_id,
    id,
    source_id,
    target_id,
    kind,
    body BLOB NOT NULL
);
CREATE INDEX ix_edges_profile_id_id_pk ON edges (profile_id, id, pk);
CREATE INDEX ix_edges_profile_id_source_id_id_pk ON edges (profile_id, source_id, id, pk);
CREATE INDEX ix_edges_profile_id_target_id_id_pk ON edges (profile_id, target_id, id, pk);
CREATE INDEX ix_edges_profile_id_kind_id_pk ON edges (profile_id, kind, id, pk);

-- paths: key profile_id+id; columns profile_id, id, status
CREATE TABLE paths (
    pk TEXT PRIMARY KEY NOT NULL,
    profile_id,
    id,
    status,
    body BLOB NOT NULL
);
CREATE INDEX ix_paths_profile_id_id_pk ON paths (profile_id, id, pk);
CREATE INDEX ix_paths_profile_id_status_id_pk ON paths (profile_id, status, id, pk);

-- activations: key id; columns profile_id, path_id
CREATE TABLE activations (
    id TEXT PRIMARY KEY NOT NULL,
    profile_id,
    path_id,
    body BLOB NOT NULL
);
CREATE INDEX ix_activations_profile_id_id ON activations (profile_id, id);
CREATE INDEX ix_activations_profile_id_path_id_id ON activations (profile_id, path_id, id);

-- memory_heads: key id
CREATE TABLE memory_heads (
    id TEXT PRIMARY KEY NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;

-- audit: key seq; columns seq, action, target, actor, outcome
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    action,
    target,
    actor,
    outcome,
    body BLOB NOT NULL
);
CREATE INDEX ix_audit_action_seq ON audit (action, seq);
CREATE INDEX ix_audit_target_seq ON audit (target, seq);
CREATE INDEX ix_audit_actor_seq ON audit (actor, seq);
CREATE INDEX ix_audit_outcome_seq ON audit (outcome, seq);

-- externals: key id; columns system
CREATE TABLE externals (
    id TEXT PRIMARY KEY NOT NULL,
    system,
    body BLOB NOT NULL
);
CREATE INDEX ix_externals_system_id ON externals (system, id);

-- packages: key id
CREATE TABLE packages (
    id TEXT PRIMARY KEY NOT NULL,
    body BLOB NOT NULL
);


