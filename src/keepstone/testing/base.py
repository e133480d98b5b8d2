"""Shared machinery of the conformance suite: the factory hook, fixtures, helpers.

A backend's test module subclasses :class:`keepstone.testing.StoreConformance`
(or one domain class) and implements only :meth:`ConformanceBase.make_store`.
What runs follows the store's ``capabilities``: the close-and-reopen tests
need ``"durable"``. The ``damage_blob`` and ``tamper_audit`` hooks are
test-side: a backend's test class implements them by editing its files or
tables the way an outsider would; without them those tests are skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from keepstone.errors import ErrorCode, StorageError
from keepstone.schemas import ApprovalMarker, AuditRecord, FixedClock, Page, SequentialIds, UlidIds

if TYPE_CHECKING:
    from keepstone import Store

T = TypeVar("T")

T0 = datetime(2026, 1, 1, tzinfo=UTC)
"""Where the suite's :class:`FixedClock` starts."""

BAD_IDS = ("../x", "", "a/b", "a\x00b", "x" * 201)
"""Ids every ``id=`` argument must refuse with ``invalid``."""

BAD_CURSOR = "%%not-a-cursor%%"
"""A cursor string no backend hands out."""

BAD_LIMITS = (0, -1)
"""Page sizes every listing must refuse with ``invalid``."""

APPROVAL = ApprovalMarker(approved_by="reviewer", reason="conformance suite approval")
"""The approval marker the suite passes to review-gated actions."""

ALL = 10_000
"""A page size large enough to list everything a test creates in one page."""


class ConformanceBase:
    """Fixtures and the factory hook shared by every domain's conformance class."""

    location: pathlib.Path
    clock: FixedClock
    _opened: list[Store]
    _scratch: itertools.count[int]

    async def make_store(self, location: pathlib.Path, **options: Any) -> Store:
        """Open a store of the backend under test.

        Args:
            location: a per-test directory for a durable backend's files;
                opening the same location again must reopen the same data.
            options: ``clock=``, ``ids=`` (and possibly ``actor=``), to pass
                on to :func:`keepstone.open`.
        """
        raise NotImplementedError("a backend's conformance test class implements make_store()")

    @pytest.fixture
    async def store(self, tmp_path: pathlib.Path) -> AsyncIterator[Store]:
        """A fresh store with a fixed clock and sequential ids, closed after the test."""
        self.location = tmp_path
        self.clock = FixedClock(T0)
        self._opened = []
        self._scratch = itertools.count(1)
        opened = await self.make_store(tmp_path, clock=self.clock, ids=SequentialIds())
        self._opened.append(opened)
        try:
            yield opened
        finally:
            while self._opened:
                await self._opened.pop().close()

    async def reopen(self, store: Store) -> Store:
        """Close ``store`` and open its location again; the calling test is
        skipped unless the store declares the ``"durable"`` capability."""
        if "durable" not in store.capabilities:
            pytest.skip(
                f"the {store.backend.name} store does not declare the 'durable' capability "
                "(nothing survives close())"
            )
        await store.close()
        self._opened = [s for s in self._opened if s is not store]
        reopened = await self.make_store(
            self.location, clock=FixedClock(datetime(2027, 1, 1, tzinfo=UTC)), ids=UlidIds()
        )
        self._opened.append(reopened)
        return reopened

    async def another_handle(self, store: Store) -> Store:
        """A second store open on ``store``'s location at the same time, as
        another process would open it (closed when the test ends); ``store``
        itself unless it declares the ``"multi_process"`` capability."""
        if "multi_process" not in store.capabilities:
            return store
        opened = await self.make_store(self.location, clock=FixedClock(T0), ids=UlidIds())
        self._opened.append(opened)
        return opened

    async def damage_blob(self, store: Store, digest: str, data: bytes) -> None:
        """Capability hook: replace the bytes stored under ``digest`` with ``data``
        behind keepstone's back. Backends that can implement it to run the
        ``corrupt`` tests; by default those tests are skipped."""
        pytest.skip("the backend's test class has no damage_blob() hook")

    async def tamper_row(self, store: Store, table: str, key: str, body: bytes | None) -> None:
        """Capability hook: behind keepstone's back, make the stored row ``key``
        of ``table`` hold exactly ``body`` (inserting it if absent), or remove
        it when ``body`` is ``None`` — an SQL ``UPDATE``/``INSERT``/``DELETE``,
        an edited file. Backends that can implement it to run the tamper
        evidence tests; by default those tests are skipped."""
        pytest.skip("the backend's test class has no tamper_row() hook")

    async def tamper_audit(self, store: Store, record: AuditRecord) -> None:
        """Capability hook: overwrite the stored audit record with ``record.seq``
        by ``record`` as given (hash not recomputed). Backends that can implement
        it to run the broken-chain tests; by default those tests are skipped."""
        pytest.skip("the backend's test class has no tamper_audit() hook")

    @contextlib.asynccontextmanager
    async def scratch_store(self, **options: Any) -> AsyncIterator[Store]:
        """Another empty store in its own directory (for property tests and options)."""
        location = self.location / f"scratch-{next(self._scratch)}"
        location.mkdir()
        options.setdefault("clock", FixedClock(T0))
        options.setdefault("ids", SequentialIds())
        opened = await self.make_store(location, **options)
        try:
            yield opened
        finally:
            await opened.close()


# --------------------------------------------------------------------------- helpers


def dump(value: Any) -> Any:
    """JSON form of a model, a list of models, or a plain value (for comparisons)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    return value


async def collect(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
    """Every item of a cursor-paginated listing."""
    items: list[T] = []
    cursor: str | None = None
    for _ in range(100_000):
        page = await fetch(cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor
    raise AssertionError("pagination did not end")


async def drain(stream: AsyncIterator[T]) -> list[T]:
    """Every item of an async iterator."""
    return [item async for item in stream]


async def assert_paginates(
    fetch: Callable[[str | None, int], Awaitable[Page[T]]],
    *,
    key: Callable[[T], Hashable],
    expected: Sequence[T] | None = None,
) -> list[T]:
    """Check cursor pagination of a listing and return its full, ordered content.

    Walks the listing with page sizes 2 and 3 and asserts that the pages
    concatenate to the one-page listing (or ``expected``), with no duplicate,
    no page over its limit, and ``next_cursor`` ``None`` at the end.
    """
    whole = await fetch(None, ALL)
    assert whole.next_cursor is None, "a page holding everything must have next_cursor None"
    if expected is not None:
        assert dump(whole.items) == dump(list(expected))
    for limit in (2, 3):
        walked: list[T] = []
        cursor: str | None = None
        for _ in range(len(whole.items) + 2):
            page = await fetch(cursor, limit)
            assert len(page.items) <= limit, f"page of {len(page.items)} over limit {limit}"
            walked.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert cursor is None, "pagination did not reach next_cursor None"
        keys = [key(item) for item in walked]
        assert len(keys) == len(set(keys)), f"duplicates across pages: {keys}"
        assert dump(walked) == dump(whole.items), f"pages of {limit} differ from one page"
    return list(whole.items)


async def assert_listing_refuses_bad_paging(
    fetch: Callable[[str | None, int], Awaitable[Page[Any]]],
) -> None:
    """A listing refuses a cursor it never handed out and a bad limit (``invalid``)."""
    await expect_error("invalid", fetch(BAD_CURSOR, 10))
    for limit in BAD_LIMITS:
        await expect_error("invalid", fetch(None, limit))


async def expect_error(code: ErrorCode, call: Awaitable[Any]) -> StorageError:
    """Await ``call`` and assert it raises a :class:`StorageError` with ``code``."""
    with pytest.raises(StorageError) as info:
        await call
    assert info.value.code == code, f"expected {code!r}, got {info.value!r}"
    return info.value


async def audit_seq(store: Store) -> int:
    """The audit chain's head seq (0 when empty)."""
    head = await store.audit.head()
    return 0 if head is None else head.seq


async def audit_since(store: Store, seq: int) -> list[AuditRecord]:
    """Audit records after ``seq``."""
    from keepstone.schemas import AuditQuery

    return await collect(lambda c: store.audit.list(AuditQuery(after_seq=seq), cursor=c, limit=ALL))


async def assert_audited(store: Store, before: int, target: str | None = None) -> list[AuditRecord]:
    """Assert a mutation since audit seq ``before`` wrote applied audit records
    (one naming ``target``, if given) and the chain still verifies."""
    records = await audit_since(store, before)
    assert records, "the mutation wrote no audit record"
    assert all(r.outcome == "applied" for r in records), dump(records)
    if target is not None:
        assert any(target in r.target for r in records), (target, dump(records))
    verification = await store.audit.verify()
    assert verification.ok, verification
    return records


async def fingerprint(store: Store) -> dict[str, Any]:
    """Everything a caller can list, in JSON form: equal before and after a
    refused call, or the refusal changed the store."""
    from keepstone.schemas import ArtifactQuery

    async def items(page: Awaitable[Page[Any]]) -> Any:
        got = await page
        assert got.next_cursor is None, "fingerprint expects every listing in one page"
        return got.items

    fp: dict[str, Any] = {}
    head = await store.audit.head()
    fp["audit"] = None if head is None else [head.seq, head.hash]
    fp["events"] = await store.events.last_seq()
    runs = await items(store.runs.list(limit=ALL))
    fp["runs"] = dump(runs)
    for run in runs:
        fp[f"snapshots:{run.id}"] = dump(await items(store.runs.list_snapshots(run.id, limit=ALL)))
        fp[f"manifest:{run.id}"] = dump(await store.runs.get_manifest(run.id))
        fp[f"log:{run.id}"] = dump(await items(store.logs.read(run.id, limit=ALL)))
        fp[f"logref:{run.id}"] = dump(await store.logs.reference(run.id))
    fp["collections"] = dump(await items(store.artifacts.list_collections(limit=ALL)))
    everything = ArtifactQuery(include_deleted=True)
    artifacts = await items(store.artifacts.query(everything, limit=ALL))
    fp["artifacts"] = dump(artifacts)
    for art in artifacts:
        fp[f"revisions:{art.id}"] = dump(await items(store.artifacts.revisions(art.id, limit=ALL)))
        fp[f"relationships:{art.id}"] = dump(
            await items(store.artifacts.relationships(art.id, limit=ALL))
        )
    fp["changes"] = dump(await items(store.artifacts.changes(limit=ALL)))
    fp["blobs"] = dump(await items(store.blobs.list(limit=ALL)))
    profiles = await items(store.memory.list_profiles(limit=ALL))
    fp["profiles"] = dump(profiles)
    for profile in profiles:
        fp[f"graph:{profile.id}"] = dump(await store.memory.graph(profile.id, view="all"))
        fp[f"activations:{profile.id}"] = dump(
            await items(store.memory.list_activations(profile.id, limit=ALL))
        )
    fp["external"] = dump(await items(store.context.list_external(limit=ALL)))
    fp["packages"] = dump(await items(store.context.list_packages(limit=ALL)))
    return fp


async def refused(
    store: Store, code: ErrorCode, call: Awaitable[Any], *, audited: bool = False
) -> StorageError:
    """Assert ``call`` raises ``code`` and leaves the store unchanged.

    With ``audited``, the refusal must have appended exactly one ``denied``
    audit record and changed nothing else.
    """
    before = await fingerprint(store)
    error = await expect_error(code, call)
    after = await fingerprint(store)
    if audited:
        before_seq = 0 if before["audit"] is None else before["audit"][0]
        denied = await audit_since(store, before_seq)
        assert [r.outcome for r in denied] == ["denied"], dump(denied)
        assert denied[0].approval is None
        before.pop("audit")
        after.pop("audit")
    assert after == before, "a refused call changed the store"
    return error


# --------------------------------------------------------------------------- strategies

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=20)
)
_json_keys = st.text(st.characters(codec="utf-8"), max_size=10)
json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_json_keys, inner, max_size=4),
    max_leaves=12,
)
"""Any JSON value keepstone must round-trip (no NaN/Infinity, 53-bit integers)."""

json_objects = st.dictionaries(_json_keys, json_values, max_size=5)
"""Any JSON object keepstone must round-trip."""

PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)
"""Hypothesis settings of the suite: few examples, no deadline. The store fixture is
shared by a test's examples (each example makes its own records), and every backend's
class runs the same inherited test (different executors by design)."""
