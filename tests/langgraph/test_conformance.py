"""LangGraph's own checkpointer conformance suite, every capability, on every
backend: the base ones (put, put_writes, get_tuple, list, delete_thread) and
the extended ones (delete_for_runs, copy_thread, prune)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from keepstone.langgraph import KeepstoneSaver


async def test_every_capability_passes(lg_url: str) -> None:
    @checkpointer_test(name="KeepstoneSaver")
    async def factory() -> AsyncIterator[KeepstoneSaver]:
        async with KeepstoneSaver.from_url(lg_url) as saver:
            yield saver

    report = await validate(factory)
    failures = {name: r.failures for name, r in report.results.items() if r.failures}
    assert not failures, failures
    assert {name for name, r in report.results.items() if r.detected} == {
        c.value for c in ALL_CAPABILITIES
    }
    assert report.conformance_level() == "FULL"
    assert all(r.passed and r.tests_passed > 0 for r in report.results.values())
