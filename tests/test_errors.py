"""StorageError: codes, str, to_dict, pickling."""

from __future__ import annotations

import pickle

import pytest

from keepstone import ERROR_CODES, StorageError


def test_codes_are_the_documented_set() -> None:
    import keepstone.errors as errors

    for code in ERROR_CODES:
        assert f"``{code}``" in (errors.__doc__ or ""), f"{code} is not documented"
    assert set(ERROR_CODES) >= {
        "not_found",
        "conflict",
        "invalid",
        "integrity",
        "corrupt",
        "unsupported_schema",
        "review_required",
        "unavailable",
        "config",
    }


def test_str_is_readable_and_to_dict_is_complete() -> None:
    err = StorageError("not_found", "run 'run_1' does not exist", {"run": "run_1"})
    assert str(err) == "[not_found] run 'run_1' does not exist"
    assert err.to_dict() == {
        "code": "not_found",
        "message": "run 'run_1' does not exist",
        "details": {"run": "run_1"},
    }


def test_details_default_to_empty_and_are_copied() -> None:
    details = {"a": 1}
    err = StorageError("invalid", "bad", details)
    details["a"] = 2
    assert err.details == {"a": 1}
    assert StorageError("invalid", "bad").details == {}


def test_pickles_round_trip() -> None:
    err = StorageError("conflict", "taken", {"name": "x"})
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, StorageError)
    assert back.to_dict() == err.to_dict()


def test_unknown_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown StorageError code"):
        StorageError("nope", "x")  # type: ignore[arg-type]
