"""The words of a text: what full-text search indexes and matches, on every backend.

This module is the one definition. Every engine indexes ``words(text)`` of a
record's text fields and looks up ``words(query)``; a row matches when every
word of the query is one of its words (whole words, in any order). The CLI
uses :func:`fold` to match names the same way.

The rule, applied to ``text``:

1. **Compatibility decomposition** (Unicode NFKD): ligatures and presentation
   forms become their letters (``ﬁ`` -> ``fi``, full-width ``Ａ`` -> ``A``,
   half-width katakana -> katakana, ``²`` -> ``2``, ``①`` -> ``1``), and
   accented letters become a base letter plus combining marks, whether the
   text came composed (NFC ``é``) or decomposed (NFD ``e`` + U+0301).
2. **Case folding** (``str.casefold``, then NFKD again): ``ß`` and ``ẞ`` ->
   ``ss``, final sigma ``ς`` -> ``σ``, ``İ`` -> ``i`` + a dot mark.
3. **Diacritics dropped**: the marks of the five *Combining Diacritical Marks*
   blocks (U+0300-036F, U+1AB0-1AFF, U+1DC0-1DFF, U+20D0-20FF, U+FE20-FE2F)
   are removed: accents, cedillas, umlauts, the dot of ``İ``, Greek tonos.
   Marks of a script's own block stay, as part of the word: Indic vowel signs
   and viramas, Thai vowels, the kana voicing marks (``が`` is not ``か``),
   Hebrew points and Arabic harakat.
4. **Split** into maximal runs of letters, digits, ``_`` and the marks left
   (Python's ``\\w`` plus Unicode category M). Everything else separates
   words: spaces, punctuation, symbols, emoji.

So ``café``, ``CAFE`` and NFD ``cafe\\u0301`` are one word ``cafe``;
``İstanbul`` and ``ISTANBUL`` are ``istanbul``; ``οδος`` and ``ΟΔΟΣ`` are
``οδοσ``; ``Straße`` is ``strasse``; ``don't`` is ``don`` and ``t``. Letters
that do not decompose keep their identity (``ø``, ``ł``, ``æ``, ``œ``,
dotless ``ı``). Scripts written without spaces (Chinese, Japanese, Thai) are
not segmented: a run of such letters is one word, so ``東京`` does not find
``東京都``.

The rule depends on the Unicode database of the Python that runs it
(``unicodedata.unidata_version``). Unicode keeps normalisation and case
folding of assigned characters stable, so only characters assigned in a newer
version can give different words; indexes that store words say which rule
and which Unicode version built them (:data:`WORDS_RULE`) and are rebuilt
when that changes.
"""

from __future__ import annotations

import functools
import re
import unicodedata

RULE_VERSION = 2
"""Bumped whenever the rule above changes (1 was lowercased ``\\w+``)."""

WORDS_RULE = f"{RULE_VERSION}/unicode-{unicodedata.unidata_version}"
"""What a stored index of words was built with (rule version and Unicode version)."""

_ASCII_WORD = re.compile(r"[A-Za-z0-9_]+")
_DIACRITICS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")


def fold(text: str) -> str:
    """``text`` normalised for matching: steps 1-3 of the module's rule
    (``Café`` -> ``cafe``, ``Straße`` -> ``strasse``), separators kept."""
    if text.isascii():
        return text.lower()
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return _DIACRITICS.sub("", folded)


def words(text: str) -> list[str]:
    """The words of ``text``, in order, repeats kept (see the module's rule)."""
    folded = fold(text)
    if folded.isascii():
        return _ASCII_WORD.findall(folded)
    marks = "".join(
        sorted(c for c in set(folded) if not c.isascii() and unicodedata.category(c)[0] == "M")
    )
    return _word_pattern(marks).findall(folded)


@functools.lru_cache(maxsize=256)
def _word_pattern(marks: str) -> re.Pattern[str]:
    """Runs of ``\\w`` and of the combining ``marks`` (which ``\\w`` does not match)."""
    return re.compile(r"[\w" + marks + "]+") if marks else re.compile(r"\w+")


__all__ = ["RULE_VERSION", "WORDS_RULE", "fold", "words"]
