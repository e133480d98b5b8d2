"""SQL backends: SQLite (stdlib ``sqlite3``) and PostgreSQL.

Both store every :class:`~keepstone.engine.spi.Table` as a real table with
real columns for its key, seq and filterable columns, plus a ``body`` column
holding the record's canonical JSON. Their schemas are created and upgraded by
versioned migrations shipped in ``migrations/<dialect>/NNNN_name.sql``.
"""
