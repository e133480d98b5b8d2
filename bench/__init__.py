"""keepstone's benchmark harness: ``python -m bench`` (or ``make bench``).

Runs keepstone beside its peers (eventsourcing, langgraph's SQLite
checkpointers) and the physical limit (stdlib sqlite3, a JSONL file, plain
files with an fsync each) on the same machine, in one process, and prints a
table of figures, ratios and PASS/MISS against the goals of issue #3.
"""
