"""Schemas: immutability, unknown fields, canonical JSON, ids, digests, None vs empty."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from keepstone import FixedClock, SequentialIds, StorageError, UlidIds
from keepstone.schemas import (
    SCHEMA_VERSION,
    MemoryEvent,
    Run,
    canonical_json,
    sha256_digest,
)
from keepstone.schemas.replay import fold

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_run(**kw: object) -> Run:
    fields: dict[str, object] = {"id": "run_1", "name": "x", "created_at": T0, "updated_at": T0}
    fields.update(kw)
    return Run.model_validate(fields)


def test_records_are_immutable_and_refuse_unknown_fields() -> None:
    run = make_run()
    with pytest.raises(ValidationError):
        run.name = "y"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        make_run(colour="blue")


def test_records_carry_the_schema_version() -> None:
    assert make_run().schema_version == SCHEMA_VERSION
    assert f'"schema_version":{SCHEMA_VERSION}'.encode() in make_run().canonical_json()


def test_canonical_json_sorts_keys_and_fixes_timestamps() -> None:
    run = make_run(created_at=datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))))
    data = run.canonical_json()
    keys = re.findall(rb'"(\w+)":', data)
    top = [k for k in keys if k in {b"created_at", b"id", b"name", b"updated_at"}]
    assert top == sorted(top)
    assert b'"created_at":"2026-01-02T03:04:05.000000Z"' in data
    assert Run.model_validate_json(data) == run


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        make_run(created_at=datetime(2026, 1, 1))


def test_nan_and_infinity_are_refused_everywhere() -> None:
    with pytest.raises(ValidationError, match="NaN"):
        make_run(params={"x": [1.0, float("nan")]})
    with pytest.raises(StorageError) as info:
        canonical_json({"x": float("inf")})
    assert info.value.code == "invalid"


def test_deep_json_is_refused() -> None:
    value: dict[str, object] = {}
    deep = value
    for _ in range(100):
        deep["d"] = {}
        deep = deep["d"]  # type: ignore[assignment]
    with pytest.raises(ValidationError, match="nested deeper"):
        make_run(params=value)


def test_none_and_empty_stay_different() -> None:
    none = make_run(params=None, labels=None)
    empty = make_run(params={}, labels={})
    assert Run.model_validate_json(none.canonical_json()).params is None
    assert Run.model_validate_json(empty.canonical_json()).params == {}
    assert none.canonical_json() != empty.canonical_json()


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a\x00b", "-x", "x" * 201, "é"])
def test_malformed_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        make_run(id=bad)


def test_digest_format() -> None:
    digest = sha256_digest(b"abc")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    from keepstone.schemas import ArtifactRef

    with pytest.raises(ValidationError):
        ArtifactRef(artifact_id="a", digest="sha256:XYZ")


def test_ulid_ids_are_prefixed_and_sortable_in_creation_order() -> None:
    ids = UlidIds()
    made = [ids.new_id("run") for _ in range(2000)]
    assert all(i.startswith("run_") and len(i) == 30 for i in made)
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_sequential_ids_and_fixed_clock_are_deterministic() -> None:
    a, b = SequentialIds(), SequentialIds()
    assert [a.new_id("evt") for _ in range(3)] == [b.new_id("evt") for _ in range(3)]
    c1, c2 = FixedClock(), FixedClock()
    assert [c1.now() for _ in range(3)] == [c2.now() for _ in range(3)]
    c = FixedClock()
    assert c.now() < c.now()


def test_event_payload_is_typed_per_kind() -> None:
    event = MemoryEvent.model_validate(
        {
            "id": "evt_1",
            "profile_id": "p",
            "at": T0,
            "payload": {"kind": "node.put", "node_id": "n1", "node_kind": "fact"},
        }
    )
    assert event.kind == "node.put"
    with pytest.raises(ValidationError):
        MemoryEvent.model_validate(
            {"id": "evt_1", "profile_id": "p", "at": T0, "payload": {"kind": "node.put"}}
        )
    with pytest.raises(ValidationError):
        MemoryEvent.model_validate(
            {"id": "evt_1", "profile_id": "p", "at": T0, "payload": {"kind": "no.such"}}
        )


def test_fold_is_deterministic_and_order_independent_of_dict_order() -> None:
    def ev(i: int, payload: dict[str, object]) -> MemoryEvent:
        return MemoryEvent.model_validate(
            {"id": f"evt_{i}", "seq": i, "profile_id": "p", "at": T0, "payload": payload}
        )

    events = [
        ev(1, {"kind": "profile.created", "name": "agent"}),
        ev(2, {"kind": "node.put", "node_id": "b", "node_kind": "fact"}),
        ev(3, {"kind": "node.put", "node_id": "a", "node_kind": "fact"}),
        ev(
            4,
            {
                "kind": "edge.put",
                "edge_id": "e",
                "source_id": "a",
                "target_id": "b",
                "edge_kind": "k",
            },
        ),
        ev(5, {"kind": "node.forgotten", "node_id": "b"}),
    ]
    g1, g2 = fold("p", events), fold("p", list(events))
    assert g1.model_dump_json() == g2.model_dump_json()
    assert [n.id for n in g1.nodes] == ["a"]
    assert g1.edges == []
    assert g1.through_seq == 5
