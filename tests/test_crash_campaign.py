"""A bounded crash campaign on every durable backend (``make reliability`` runs 200
trials each): no acknowledged write lost, nothing corrupt visible, a clean doctor."""

from __future__ import annotations

import pytest

from tests.conftest import DURABLE_BACKENDS
from tests.reliability.campaign import campaign


@pytest.mark.parametrize("backend", DURABLE_BACKENDS)
def test_bounded_crash_campaign(backend: str) -> None:
    figures = campaign(backend, trials=6, seed=7, doctor_every=1)
    assert figures.trials == 6
    assert figures.acknowledged > 0
    assert (figures.lost, figures.corrupt, figures.doctor_errors) == (0, 0, 0), figures.problems
