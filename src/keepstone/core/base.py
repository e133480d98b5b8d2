"""What every record-backed store shares: clock, ids, actor, paging, audit drafts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from keepstone.core.paging import Listing, fetch_page
from keepstone.engine.spi import (
    BatchResult,
    RecordEngine,
    Table,
    WriteBatch,
)
from keepstone.errors import StorageError
from keepstone.schemas._base import (
    SCHEMA_VERSION,
    TRUSTED,
    Clock,
    IdSource,
    Limits,
    Model,
    _check_id,
    current_actor,
    format_timestamp,
    invalid_from,
)
from keepstone.schemas.audit import ApprovalMarker, AuditOutcome, LifecycleAction, requires_review
from keepstone.schemas.common import Page
from keepstone.schemas.memory import LifecycleKind

M = TypeVar("M", bound=BaseModel)


@dataclass
class RecordContext:
    """Shared dependencies of the record-backed stores."""

    engine: RecordEngine
    clock: Clock
    ids: IdSource
    actor: str = "keepstone"
    limits: Limits = field(default_factory=Limits)

    def now(self) -> Any:
        return self.clock.now()

    async def apply(self, batch: WriteBatch) -> BatchResult:
        """Apply ``batch`` with this store's record size limit.

        The engine's stager refuses (``invalid``) a row that is not JSON text
        (a lone surrogate, say) or longer than ``Limits.max_record_bytes``,
        while it serialises the row once for storing it.
        """
        batch.max_record_bytes = self.limits.max_record_bytes
        return await self.engine.apply(batch)

    def new_id(self, prefix: str, given: str | None = None) -> str:
        if given is None:
            return self.ids.new_id(prefix)
        return check_id(given)

    def who(self) -> str:
        return current_actor.get() or self.actor

    def audit(
        self,
        batch: WriteBatch,
        action: str,
        target: str,
        details: dict[str, Any] | None = None,
        *,
        outcome: AuditOutcome = "applied",
        approval: ApprovalMarker | None = None,
    ) -> None:
        """Add an audit draft describing this batch's change."""
        batch.audit.append(
            {
                "schema_version": SCHEMA_VERSION,
                "at": format_timestamp(self.now()),
                "actor": self.who(),
                "action": action,
                "target": target,
                "outcome": outcome,
                "approval": None if approval is None else approval.model_dump(mode="json"),
                "details": details,
            }
        )

    async def load(self, model: type[M], table: Table, key: str, what: str) -> M:
        raw = await self.engine.get(table, key)
        if raw is None:
            raise StorageError("not_found", f"{what} {key!r} does not exist", {what: key})
        return parse(model, raw)

    async def load_optional(self, model: type[M], table: Table, key: str) -> M | None:
        raw = await self.engine.get(table, key)
        return None if raw is None else parse(model, raw)

    async def page(
        self,
        model: type[M],
        table: Table,
        *,
        where: Mapping[str, Any] | None = None,
        order: tuple[str, ...] = (),
        cursor: str | None = None,
        limit: int = 100,
        tags: Mapping[str, Any] | None = None,
        text: str | None = None,
        listing: Listing | None = None,
    ) -> Page[M]:
        """One page of ``table`` in ``order`` (then key), with a keyset cursor
        bound to ``listing`` (see :func:`keepstone.core.paging.fetch_page`)."""
        rows, next_cursor = await fetch_page(
            self.engine,
            table,
            where=where,
            order=order,
            cursor=cursor,
            limit=limit,
            tags=tags,
            text=text,
            listing=listing,
        )
        items = [parse(model, raw) for raw in rows]
        return Page[model](items=items, next_cursor=next_cursor)  # type: ignore[valid-type]


async def create_once(
    given: str | None,
    write: Callable[[], Awaitable[M]],
    stored: Callable[[], Awaitable[M | None]],
) -> M:
    """Create a record, idempotently when the caller chose its id.

    ``stored()`` reads the record already kept under the caller's id: it
    returns it when it holds the same caller-given content, returns ``None``
    when there is none, and raises ``conflict`` when it holds other content.
    Without a caller id, ``write()`` runs alone.

    With one, a record already stored is returned without writing (so
    without an audit record). A ``write()`` refused with ``conflict`` (the
    id, or a unique name, was taken between the read and the write) reads
    again: if the holder is this id with this content, a concurrent
    identical create won the race and its record is returned, whoever won;
    otherwise the conflict stands. Checking the id after any conflict, not
    only an id conflict, matters: two identical creates usually collide on
    the unique name they both claim, which the batch checks first.
    """
    if given is not None:
        found = await stored()
        if found is not None:
            return found
    try:
        return await write()
    except StorageError as exc:
        if given is None or exc.code != "conflict":
            raise
        found = await stored()
        if found is None:
            raise
        return found


def same_or_conflict(existing: M, new: object, fields: tuple[str, ...], what: str, ident: str) -> M:
    """``existing`` if it holds ``new``'s value for every caller-given field in
    ``fields``, else ``conflict`` (the id is taken by other content)."""
    differ = [f for f in fields if getattr(existing, f) != getattr(new, f)]
    if not differ:
        return existing
    raise StorageError(
        "conflict",
        f"{what} {ident} already exists with different content ({', '.join(differ)})",
        {"id": ident, "fields": differ},
    )


def check_id(value: str, what: str = "id") -> str:
    """Validate a caller-supplied id (``invalid`` when malformed)."""
    if not isinstance(value, str):
        raise StorageError("invalid", f"{what} must be a string", {what: repr(value)})
    try:
        return _check_id(value)
    except ValueError as exc:
        raise StorageError("invalid", f"invalid {what} {value!r}: {exc}", {what: value}) from exc


def parse(model: type[M], raw: bytes, *, trusted: bool = True) -> M:
    """Validate stored bytes into ``model``; newer schemas are refused.

    Rows keepstone stored passed every check on the way in, so by default the
    Python-level checks (JSON depth and NaN, id and digest syntax) are skipped;
    the doctor passes ``trusted=False`` to re-check everything.
    """
    try:
        obj = model.model_validate_json(raw, context=TRUSTED if trusted else None)
    except ValidationError as exc:
        version = _schema_version(raw)
        if version is not None and version > SCHEMA_VERSION:
            raise StorageError(
                "unsupported_schema",
                f"a {model.__name__} was written with schema version {version}; "
                f"this keepstone reads up to {SCHEMA_VERSION}: upgrade keepstone",
                {"schema_version": version, "supported": SCHEMA_VERSION},
            ) from exc
        raise StorageError(
            "corrupt",
            f"a stored {model.__name__} does not match its schema",
            {"errors": [e["msg"] for e in exc.errors(include_url=False)][:5]},
        ) from exc
    version = getattr(obj, "schema_version", SCHEMA_VERSION)
    if version > SCHEMA_VERSION:
        raise StorageError(
            "unsupported_schema",
            f"a {model.__name__} was written with schema version {version}; "
            f"this keepstone reads up to {SCHEMA_VERSION}: upgrade keepstone",
            {"schema_version": version, "supported": SCHEMA_VERSION},
        )
    return obj


def _schema_version(raw: bytes) -> int | None:
    try:
        value = orjson.loads(raw).get("schema_version")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def build(model: type[M], what: str, **fields: Any) -> M:
    """Construct a model from caller input, mapping errors to ``invalid``."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise invalid_from(exc, what) from exc


def row(record: Model) -> dict[str, Any]:
    """The JSON form of a record, as engines store it."""
    return record.model_dump(mode="json")


async def review_gate(
    ctx: RecordContext,
    action: LifecycleAction,
    approval: ApprovalMarker | None,
    review_required: list[LifecycleKind] | None,
) -> None:
    """Refuse (and audit the refusal of) an unapproved lifecycle action.

    Raises:
        StorageError: ``review_required`` when the policy needs review and no
            approval marker was given; a *denied* audit record is written first.
    """
    if approval is not None or not requires_review(action.kind, review_required):
        return
    batch = WriteBatch()
    ctx.audit(
        batch,
        f"lifecycle.{action.kind}",
        action.target,
        {"params": action.params, "reason": "no approval marker"},
        outcome="denied",
    )
    await ctx.apply(batch)
    raise StorageError(
        "review_required",
        f"{action.kind.replace('_', ' ')} of {action.target} needs review: pass an approval "
        "marker (ApprovalMarker(approved_by=..., reason=...), or --approve 'who: why')",
        {"action": action.kind, "target": action.target},
    )


def stamp(record: M, **values: Any) -> M:
    """Set fields of ``record`` in place and return it.

    Only for a model this store built itself and no caller holds yet (what
    :func:`revalidate` returns): ``model_copy`` would copy every field to set
    the seq the engine assigned.
    """
    record.__dict__.update(values)
    record.__pydantic_fields_set__.update(values)
    return record


def revalidate(model: type[M], value: Any, what: str) -> M:
    """Re-check a caller-supplied model (it may have been ``model_construct``-ed,
    ``model_copy``-ed with updates, or be a dict), so bad values cannot slip in.

    One Python-mode dump and one validation: NaN survives a Python dump (a JSON
    dump would turn it into null) and the field validators refuse it.
    """
    try:
        data = value.model_dump() if isinstance(value, BaseModel) else value
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc, what) from exc
    except StorageError:
        raise
    except Exception as exc:  # serialisation of a broken object
        raise StorageError("invalid", f"invalid {what}: {exc}", {}) from exc
