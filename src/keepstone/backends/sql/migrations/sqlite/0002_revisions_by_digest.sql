-- Revisions by digest: purging a revision's bytes and the doctor ask which
-- other revisions still use a digest; without this index that scanned the table.
CREATE INDEX ix_revisions_digest_pk ON revisions (digest, pk);
