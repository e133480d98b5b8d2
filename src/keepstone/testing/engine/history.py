"""A random history of write batches, and the queries that compare two
engines after it (the differential test against the reference engine)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from keepstone.engine.spi import (
    Append,
    BlobPut,
    Check,
    CheckNone,
    Cmp,
    Delete,
    In,
    Op,
    Put,
    RecordEngine,
    Table,
    WriteBatch,
)
from keepstone.engine.tables import AUDIT, EVENTS, LOG_LINES, NODES, RUNS
from keepstone.errors import StorageError
from keepstone.schemas._base import sha256_digest
from keepstone.testing.engine.base import audit_draft, event_row


async def random_history(
    rng: random.Random, engines: Sequence[RecordEngine], steps: int, start: int = 0
) -> None:
    """Apply the same ``steps`` random batches to every engine; each batch must
    have the same outcome (result or error) on all of them."""
    names, statuses, teams = ["etl", "train", "eval"], ["pending", "running", "failed"], "abc"
    for step in range(start, start + steps):
        ops: list[Op] = []
        for _ in range(rng.randint(1, 4)):
            rid = f"r{rng.randint(0, 30)}"
            choice = rng.random()
            if choice < 0.4:
                row = {
                    "id": rid,
                    "name": rng.choice(names),
                    "status": rng.choice([*statuses, None]),
                    "created_at": f"2026-01-{rng.randint(1, 28):02d}",
                    "labels": {"team": rng.choice(teams), "n": rng.choice([0, 1, 2, 1.5, [1]])},
                }
                ops.append(Put(RUNS, row, expect=rng.choice(["any", "any", "absent"])))
            elif choice < 0.5:
                ops.append(Delete(RUNS, rid))
            elif choice < 0.55:
                ops.append(Check(RUNS, rid, "not_found", "gone", equals={"name": "etl"}))
            elif choice < 0.7:
                event = event_row(step * 10 + len(ops), rng.choice(names))
                ops.append(Append(EVENTS, event, idempotent=rng.random() < 0.3))
            elif choice < 0.78:
                line = {"run_id": rid, "level": rng.choice(["info", "error"]), "event": "e"}
                ops.append(Append(LOG_LINES, line))
            elif choice < 0.82:
                ops.append(Delete(LOG_LINES, str(rng.randint(1, 40))))
            elif choice < 0.9:
                node = {"profile_id": "p", "id": rid, "kind": "k", "content": rng.choice(names)}
                ops.append(Put(NODES, node))
            elif choice < 0.95:
                data = f"blob {rng.randint(0, 5)}".encode()
                ops.append(BlobPut(sha256_digest(data), data))
            else:
                ops.append(CheckNone(RUNS, {"name": "etl", "status": "failed"}, "conflict", "m"))
        batch = WriteBatch(ops, [audit_draft(f"step{step}")])
        outcomes: list[Any] = []
        for eng in engines:
            try:
                outcomes.append(await eng.apply(batch))
            except StorageError as exc:
                outcomes.append(exc.to_dict())
        assert all(o == outcomes[0] for o in outcomes), (step, outcomes)


HISTORY_QUERIES: list[tuple[Table, dict[str, Any]]] = [
    (RUNS, {}),
    (RUNS, {"order": ("created_at",)}),
    (RUNS, {"order": ("created_at",), "desc": True, "limit": 7}),
    (RUNS, {"where": {"status": None}, "order": ("created_at",)}),
    (RUNS, {"where": {"name": "etl", "status": In(("failed", None))}}),
    (RUNS, {"where": {"created_at": (Cmp(">=", "2026-01-05"), Cmp("<", "2026-01-20"))}}),
    (RUNS, {"tags": {"team": "a"}, "order": ("created_at",)}),
    (RUNS, {"tags": {"team": "b", "n": 1}}),
    (RUNS, {"tags": {"n": 1.5}}),
    (RUNS, {"tags": {"n": [1]}}),
    (RUNS, {"order": ("name", "created_at"), "after": ("etl", "2026-01-10", "r5")}),
    (EVENTS, {}),
    (EVENTS, {"order": ("seq",), "where": {"payload.kind": "train"}}),
    (EVENTS, {"order": ("seq",), "desc": True, "after": (20, "x"), "limit": 5}),
    (LOG_LINES, {"where": {"run_id": "r3"}, "order": ("seq",)}),
    (LOG_LINES, {"where": {"level": "error", "seq": Cmp(">", 5)}, "order": ("seq",)}),
    (LOG_LINES, {"order": ("seq",), "desc": True, "limit": 3}),
    (NODES, {"where": {"profile_id": "p"}, "order": ("id",)}),
    (AUDIT, {"order": ("seq",), "where": {"seq": Cmp(">", 100)}}),
    (AUDIT, {"after": ("12",), "limit": 4}),
]
"""Queries over what :func:`random_history` writes (without full text)."""


async def assert_same_answers(
    reference: RecordEngine, engine: RecordEngine, *, text: bool = True
) -> None:
    """Assert ``engine`` answers every query of :data:`HISTORY_QUERIES` (and,
    with ``text``, full-text queries), counts, seqs and blob lists as
    ``reference`` does."""
    queries = list(HISTORY_QUERIES)
    if text:
        queries += [(NODES, {"text": "etl"}), (NODES, {"text": "ETL", "where": {"kind": "k"}})]
    for table, query in queries:
        kwargs = dict(query)
        where = kwargs.pop("where", None)
        expected = await reference.find(table, where, **kwargs)
        assert await engine.find(table, where, **kwargs) == expected, (table.name, query)
        assert await engine.count(table, where) == await reference.count(table, where)
    for seq_table in (RUNS, EVENTS, LOG_LINES, AUDIT):
        assert await engine.last_seq(seq_table) == await reference.last_seq(seq_table)
    assert await engine.blob_list(None, 100) == await reference.blob_list(None, 100)
