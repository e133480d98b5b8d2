-- keepstone PostgreSQL schema, version 1.
--
-- The same tables and columns as the SQLite schema (one table per keepstone
-- Table of keepstone.engine.tables.ALL_TABLES: its key column, its
-- filterable columns with dots turned into underscores, and `body`, the
-- canonical JSON bytes of the record), with PostgreSQL types:
--
-- * text columns use COLLATE "C" so that ORDER BY and keyset cursors compare
--   code points, exactly like the in-memory reference;
-- * `body` is bytea, not jsonb: reads must return the canonical bytes as
--   written, and jsonb can neither hold "\u0000" nor keep 1.0 apart from 1;
-- * tables with a `tags` field (run labels, artifact metadata) have a `tags`
--   jsonb column, {key: canonical JSON text of the value}, GIN-indexed, so
--   that `tags @> $1` is exact equality of top-level values;
-- * tables with `text` fields have `tsv` (a tsvector of the lowercased \w+
--   words, built by keepstone, GIN-indexed) and `words` (the same words as a
--   text[] when they do not fit a tsvector's 1 MB; NULL otherwise).
--
-- Every index below backs a query the stores make. Applied by
-- keepstone.backends.sql.postgres_migrate in one transaction, under
-- pg_advisory_lock, inside the store's schema (search_path).

CREATE TABLE keepstone_meta (
    name text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);

-- The last seq assigned per seq table, and the audit chain head. Every write
-- transaction locks this table (LOCK ... IN EXCLUSIVE MODE) before it reads
-- anything, so writers commit one after another and seq order is commit order.
CREATE TABLE keepstone_counters (
    name text COLLATE "C" PRIMARY KEY,
    seq bigint NOT NULL,
    hash text
);
INSERT INTO keepstone_counters (name, seq, hash) VALUES
    ('audit', 0, NULL),
    ('changes', 0, NULL),
    ('events', 0, NULL),
    ('log_lines', 0, NULL);

-- Content-addressed bytes. place = 'inline' (bytes in `data`), 'chunks'
-- (bytes in blob_chunks, in order of n) or 's3' (the object
-- <prefix>/sha256/<hex> of the store's bucket, written before this row).
CREATE TABLE blobs (
    digest text COLLATE "C" PRIMARY KEY,
    size bigint NOT NULL,
    place text NOT NULL CHECK (place IN ('inline', 'chunks', 's3')),
    data bytea
);
CREATE TABLE blob_chunks (
    digest text COLLATE "C" NOT NULL,
    n integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (digest, n)
);

-- runs: key id; columns name, status, created_at; tags labels
CREATE TABLE runs (
    id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C",
    status text COLLATE "C",
    created_at text COLLATE "C",
    tags jsonb NOT NULL DEFAULT '{}',
    body bytea NOT NULL
);
CREATE INDEX ix_runs_created_at_id ON runs (created_at, id);
CREATE INDEX ix_runs_name_created_at_id ON runs (name, created_at, id);
CREATE INDEX ix_runs_status_created_at_id ON runs (status, created_at, id);
CREATE INDEX ix_runs_tags ON runs USING gin (tags jsonb_path_ops);

-- snapshots: key run_id+number; columns run_id, number
CREATE TABLE snapshots (
    pk text COLLATE "C" PRIMARY KEY,
    run_id text COLLATE "C",
    number bigint,
    body bytea NOT NULL
);
CREATE INDEX ix_snapshots_run_id_number_pk ON snapshots (run_id, number, pk);

-- manifests: key run_id
CREATE TABLE manifests (
    run_id text COLLATE "C" PRIMARY KEY,
    body bytea NOT NULL
);

-- collections: key id; columns name
CREATE TABLE collections (
    id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_collections_name_id ON collections (name, id);

-- artifacts: key id; columns collection_id, name, type, digest, run_id, deleted_at; tags metadata
CREATE TABLE artifacts (
    id text COLLATE "C" PRIMARY KEY,
    collection_id text COLLATE "C",
    name text COLLATE "C",
    type text COLLATE "C",
    digest text COLLATE "C",
    run_id text COLLATE "C",
    deleted_at text COLLATE "C",
    tags jsonb NOT NULL DEFAULT '{}',
    body bytea NOT NULL
);
CREATE INDEX ix_artifacts_collection_id_name_deleted_at ON artifacts (collection_id, name, deleted_at);
CREATE INDEX ix_artifacts_collection_id_id ON artifacts (collection_id, id);
CREATE INDEX ix_artifacts_name_id ON artifacts (name, id);
CREATE INDEX ix_artifacts_type_id ON artifacts (type, id);
CREATE INDEX ix_artifacts_digest_id ON artifacts (digest, id);
CREATE INDEX ix_artifacts_run_id_id ON artifacts (run_id, id);
CREATE INDEX ix_artifacts_deleted_at_id ON artifacts (deleted_at, id);
CREATE INDEX ix_artifacts_tags ON artifacts USING gin (tags jsonb_path_ops);

-- artifact_text: key id; text text
CREATE TABLE artifact_text (
    id text COLLATE "C" PRIMARY KEY,
    tsv tsvector,
    words text[],
    body bytea NOT NULL
);
CREATE INDEX ix_artifact_text_tsv ON artifact_text USING gin (tsv);
CREATE INDEX ix_artifact_text_words ON artifact_text USING gin (words) WHERE words IS NOT NULL;

-- revisions: key artifact_id+number; columns artifact_id, number, digest
CREATE TABLE revisions (
    pk text COLLATE "C" PRIMARY KEY,
    artifact_id text COLLATE "C",
    number bigint,
    digest text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_revisions_artifact_id_number_pk ON revisions (artifact_id, number, pk);
CREATE INDEX ix_revisions_digest_pk ON revisions (digest, pk);

-- relationships: key id; columns source_id, target_id, kind
CREATE TABLE relationships (
    id text COLLATE "C" PRIMARY KEY,
    source_id text COLLATE "C",
    target_id text COLLATE "C",
    kind text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_relationships_source_id_id ON relationships (source_id, id);
CREATE INDEX ix_relationships_target_id_id ON relationships (target_id, id);
CREATE INDEX ix_relationships_source_id_target_id_kind ON relationships (source_id, target_id, kind);

-- changes: key seq; columns seq, artifact_id
CREATE TABLE changes (
    seq bigint PRIMARY KEY,
    artifact_id text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_changes_artifact_id_seq ON changes (artifact_id, seq);

-- log_lines: key seq; columns seq, run_id, level, event, step
CREATE TABLE log_lines (
    seq bigint PRIMARY KEY,
    run_id text COLLATE "C",
    level text COLLATE "C",
    event text COLLATE "C",
    step text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_log_lines_run_id_seq ON log_lines (run_id, seq);

-- log_refs: key run_id
CREATE TABLE log_refs (
    run_id text COLLATE "C" PRIMARY KEY,
    body bytea NOT NULL
);

-- events: key id; columns seq, profile_id, path_id, payload.kind
CREATE TABLE events (
    id text COLLATE "C" PRIMARY KEY,
    seq bigint NOT NULL,
    profile_id text COLLATE "C",
    path_id text COLLATE "C",
    payload_kind text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_events_seq_id ON events (seq, id);
CREATE INDEX ix_events_profile_id_seq_id ON events (profile_id, seq, id);
CREATE INDEX ix_events_path_id_seq_id ON events (path_id, seq, id);
CREATE INDEX ix_events_payload_kind_seq_id ON events (payload_kind, seq, id);

-- profiles: key id
CREATE TABLE profiles (
    id text COLLATE "C" PRIMARY KEY,
    body bytea NOT NULL
);

-- nodes: key profile_id+id; columns profile_id, id, kind; text content
CREATE TABLE nodes (
    pk text COLLATE "C" PRIMARY KEY,
    profile_id text COLLATE "C",
    id text COLLATE "C",
    kind text COLLATE "C",
    tsv tsvector,
    words text[],
    body bytea NOT NULL
);
CREATE INDEX ix_nodes_profile_id_id_pk ON nodes (profile_id, id, pk);
CREATE INDEX ix_nodes_profile_id_kind_id_pk ON nodes (profile_id, kind, id, pk);
CREATE INDEX ix_nodes_tsv ON nodes USING gin (tsv);
CREATE INDEX ix_nodes_words ON nodes USING gin (words) WHERE words IS NOT NULL;

-- edges: key profile_id+id; columns profile_id, id, source_id, target_id, kind
CREATE TABLE edges (
    pk text COLLATE "C" PRIMARY KEY,
    profile_id text COLLATE "C",
    id text COLLATE "C",
    source_id text COLLATE "C",
    target_id text COLLATE "C",
    kind text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_edges_profile_id_id_pk ON edges (profile_id, id, pk);
CREATE INDEX ix_edges_profile_id_source_id_id_pk ON edges (profile_id, source_id, id, pk);
CREATE INDEX ix_edges_profile_id_target_id_id_pk ON edges (profile_id, target_id, id, pk);
CREATE INDEX ix_edges_profile_id_kind_id_pk ON edges (profile_id, kind, id, pk);

-- paths: key profile_id+id; columns profile_id, id, status
CREATE TABLE paths (
    pk text COLLATE "C" PRIMARY KEY,
    profile_id text COLLATE "C",
    id text COLLATE "C",
    status text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_paths_profile_id_id_pk ON paths (profile_id, id, pk);
CREATE INDEX ix_paths_profile_id_status_id_pk ON paths (profile_id, status, id, pk);

-- activations: key id; columns profile_id, path_id
CREATE TABLE activations (
    id text COLLATE "C" PRIMARY KEY,
    profile_id text COLLATE "C",
    path_id text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_activations_profile_id_id ON activations (profile_id, id);
CREATE INDEX ix_activations_profile_id_path_id_id ON activations (profile_id, path_id, id);

-- memory_heads: key id
CREATE TABLE memory_heads (
    id text COLLATE "C" PRIMARY KEY,
    body bytea NOT NULL
);

-- audit: key seq; columns seq, action, target, actor, outcome
CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    action text COLLATE "C",
    target text COLLATE "C",
    actor text COLLATE "C",
    outcome text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_audit_action_seq ON audit (action, seq);
CREATE INDEX ix_audit_target_seq ON audit (target, seq);
CREATE INDEX ix_audit_actor_seq ON audit (actor, seq);
CREATE INDEX ix_audit_outcome_seq ON audit (outcome, seq);

-- externals: key id; columns system
CREATE TABLE externals (
    id text COLLATE "C" PRIMARY KEY,
    system text COLLATE "C",
    body bytea NOT NULL
);
CREATE INDEX ix_externals_system_id ON externals (system, id);

-- packages: key id
CREATE TABLE packages (
    id text COLLATE "C" PRIMARY KEY,
    body bytea NOT NULL
);
