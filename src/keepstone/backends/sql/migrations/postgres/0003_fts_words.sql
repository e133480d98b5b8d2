-- keepstone PostgreSQL schema, version 3.
--
-- Full text indexes the words of keepstone.schemas.fulltext (NFKD, case
-- folded, diacritics dropped) instead of lowercased \w+ words. The columns do
-- not change; the Python step of this version
-- (keepstone.backends.sql.postgres_migrate.rebuild_words) recomputes `tsv` and
-- `words` of every stored row in the same transaction.
SELECT 1;
