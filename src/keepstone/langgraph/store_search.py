"""Search helpers of :class:`~keepstone.langgraph.KeepstoneMemoryStore`:
filters as LangGraph defines them, namespace matching, full-text scoring and
vector similarity.

``query`` without an embedding function is served by keepstone's full-text
index: each word of the query (common English words left out) is looked
up, and an item's score is the share of the query's words its indexed text
holds, so "what does Ada like" finds items about Ada that mention liking.
With an ``IndexConfig`` whose ``embed`` is set, the query is embedded and
items are ranked by cosine similarity to their vectors (the best of an
item's fields), computed exactly over every candidate: a brute-force scan,
fine for the thousands of memories an agent keeps, not for millions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from langgraph.store.base import MatchCondition, get_text_at_path

from keepstone.schemas.fulltext import words as text_words

STOPWORDS: Final = frozenset(
    (
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "not",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
    )
)
"""Common English words a full-text query leaves out."""


def query_words(query: str) -> list[str]:
    """The words of a full-text query worth looking up."""
    words = text_words(query)
    kept = [w for w in dict.fromkeys(words) if w not in STOPWORDS]
    return kept or list(dict.fromkeys(words))


def text_score(
    value: Mapping[str, Any], fields: Sequence[tuple[str, Any]], words: list[str]
) -> float:
    """The share of ``words`` found in the indexed text of ``value``."""
    texts: list[str] = []
    for path, tokens in fields:
        if path == "$":
            texts.append(_all_text(value))
        else:
            texts += get_text_at_path(value, tokens)
    found = {w for t in texts for w in text_words(t)}
    if not words:
        return 0.0
    return sum(1 for w in words if w in found) / len(words)


def _all_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return " ".join(_all_text(v) for v in value.values())
    if isinstance(value, list | tuple):
        return " ".join(_all_text(v) for v in value)
    return "" if value is None or isinstance(value, bool) else str(value)


def matches(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """Whether ``value`` passes a LangGraph search filter (exact values,
    nested objects, ``$eq $ne $gt $gte $lt $lte``)."""
    if not filter:
        return True
    return all(_compare(value.get(k), v) for k, v in filter.items())


def _compare(item: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        if any(str(k).startswith("$") for k in wanted):
            return all(_operator(item, op, arg) for op, arg in wanted.items())
        if not isinstance(item, Mapping):
            return False
        return all(_compare(item.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list | tuple):
        return (
            isinstance(item, list | tuple)
            and len(item) == len(wanted)
            and all(_compare(i, w) for i, w in zip(item, wanted, strict=True))
        )
    return bool(item == wanted)


def _operator(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(value == arg)
    if op == "$ne":
        return bool(value != arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        try:
            left, right = float(value), float(arg)
        except (TypeError, ValueError):
            return False
        return {
            "$gt": left > right,
            "$gte": left >= right,
            "$lt": left < right,
            "$lte": left <= right,
        }[op]
    raise ValueError(f"Unsupported operator: {op}")


def namespace_matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    """LangGraph's prefix/suffix matching, ``*`` matching any one label."""
    path = condition.path
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise ValueError(f"Unsupported match type: {condition.match_type}")
    return all(p == "*" or n == p for n, p in pairs)


def cosine(query: Sequence[float], vectors: Sequence[Sequence[float]]) -> float | None:
    """The best cosine similarity between ``query`` and any of ``vectors``."""
    qn = math.sqrt(sum(x * x for x in query))
    best: float | None = None
    for v in vectors:
        vn = math.sqrt(sum(x * x for x in v))
        score = (
            0.0
            if qn == 0 or vn == 0
            else sum(a * b for a, b in zip(query, v, strict=False)) / (qn * vn)
        )
        best = score if best is None else max(best, score)
    return best
