-- Full text indexes keepstone's words (keepstone.schemas.fulltext), the same on
-- every backend. Version 1 gave FTS5 the raw text and let its unicode61
-- tokenizer split and fold it, which disagreed with the reference (NFD accents,
-- final sigma, dotted capital I). Each FTS table now holds, per row, the words
-- of each text field joined by spaces; the ascii tokenizer (with `_` as a
-- token character) splits exactly at those spaces and changes nothing else.
-- The tables are recreated empty here; the Python step of this version
-- (keepstone.backends.sql.sqlite_fts.rebuild_fts) fills them from the stored
-- rows in the same transaction.
DROP TABLE artifact_text_fts;
CREATE VIRTUAL TABLE artifact_text_fts USING fts5(
    text,
    content = '',
    tokenize = 'ascii tokenchars ''_'''
);
DROP TABLE nodes_fts;
CREATE VIRTUAL TABLE nodes_fts USING fts5(
    content,
    content = '',
    tokenize = 'ascii tokenchars ''_'''
);
