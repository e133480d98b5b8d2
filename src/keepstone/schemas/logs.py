"""Logs: JSONL lines per run, log references, retention policies."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field

from keepstone.schemas._base import Digest, Id, JsonObject, Model, Name, Record, UtcDatetime

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error", "critical")


class LogLine(Record):
    """One log line: a JSON object in a run's append-only stream.

    The store assigns ``seq`` and ``line``; leave them ``None`` when writing.
    ``seq`` is store-wide and strictly increasing (followers resume after a
    seq), so a run's lines in ``seq`` order are its stream. ``line`` numbers
    the run's own lines from 1, without gaps, in the same order, whichever
    process wrote them.
    """

    run_id: Id
    seq: int | None = None
    line: int | None = Field(default=None, ge=1)
    at: UtcDatetime
    level: LogLevel = "info"
    event: Name
    step: str | None = None
    message: str | None = None
    data: JsonObject | None = None


class LogReference(Record):
    """Where a sealed log stream lives and what it holds."""

    run_id: Id
    location: str
    lines: int = Field(ge=0)
    bytes: int = Field(ge=0)
    digest: Digest
    sealed_at: UtcDatetime


class LogQuery(Model):
    """Filters for reading a run's log stream."""

    after_seq: int | None = Field(default=None, ge=0)
    min_level: LogLevel | None = None
    event: str | None = None
    step: str | None = None


class RetentionPolicy(Model):
    """What to keep: by age, by count of most recent runs, or both."""

    applies_to: Literal["logs", "snapshots"]
    max_age: timedelta | None = None
    keep_last: int | None = Field(default=None, ge=0)
