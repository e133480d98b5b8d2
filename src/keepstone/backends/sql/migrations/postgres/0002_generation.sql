-- keepstone PostgreSQL schema, version 2.
--
-- `generation` counts committed write transactions. Every write bumps it in
-- the statement that writes its rows, on the condition that it still holds
-- the value read before staging: a writer that staged against rows another
-- writer has since changed writes nothing and stages again. This lets an
-- uncontended write commit in two round trips (read, then one statement in
-- its own implicit transaction) instead of BEGIN/LOCK/read/write/COMMIT; the
-- locked path remains for contended writes and blob chunks.
INSERT INTO keepstone_counters (name, seq, hash) VALUES ('generation', 0, NULL)
    ON CONFLICT (name) DO NOTHING;
