"""Mapping quoted evidence back to `[begin, end)` character offsets in the note.

Models copy text far better than they count characters, so answers carry quotes and this module places
them: first an exact match, then a match after case folding and whitespace collapsing (mapped back to the
original offsets), then a fuzzy match (rapidfuzz) above a threshold. The kind of match is recorded; a
quote that cannot be placed is reported as such, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from rapidfuzz import fuzz

from sclcoder import defaults

MatchKind = Literal["exact", "normalized", "fuzzy"]


PERFECT = 100.0
"""rapidfuzz's score of a quote found as it is (exactly, or once case and spaces are set aside)."""


@dataclass(frozen=True)
class Alignment:
    begin: int
    end: int
    match: MatchKind
    score: float = PERFECT


class NormalizedText:
    """Case-folded, whitespace-collapsed view of a text with a map back to original offsets."""

    def __init__(self, text: str) -> None:
        chars: list[str] = []
        origin: list[int] = []
        in_space = False
        for i, ch in enumerate(text):
            if ch.isspace():
                if not in_space and chars:
                    chars.append(" ")
                    origin.append(i)
                in_space = True
                continue
            in_space = False
            for folded in ch.casefold():
                chars.append(folded)
                origin.append(i)
        if chars and chars[-1] == " ":
            chars.pop()
            origin.pop()
        self.text = "".join(chars)
        self.origin = origin

    def span(self, begin: int, end: int) -> tuple[int, int]:
        """Original [begin, end) of the normalized range [begin, end)."""
        return self.origin[begin], self.origin[end - 1] + 1


def normalize(text: str) -> str:
    return NormalizedText(text).text


class Aligner:
    """Aligns many quotes against one note (the normalised view is built once)."""

    def __init__(self, text: str, fuzzy_threshold: float = defaults.FUZZY_THRESHOLD) -> None:
        self.text = text
        self.fuzzy_threshold = fuzzy_threshold
        self._norm: NormalizedText | None = None

    @property
    def norm(self) -> NormalizedText:
        if self._norm is None:
            self._norm = NormalizedText(self.text)
        return self._norm

    def align(self, quote: str, taken: Iterable[tuple[int, int]] = ()) -> Alignment | None:
        """Place one quote; among several exact or normalised occurrences, the first not in `taken`
        (so a code quoting "HTN" twice gets two places, not one twice)."""
        if not quote.strip():
            return None
        used = set(taken)
        first: Alignment | None = None
        start = self.text.find(quote)
        while start != -1:
            hit = Alignment(start, start + len(quote), "exact")
            if (hit.begin, hit.end) not in used:
                return hit
            first = first or hit
            start = self.text.find(quote, start + 1)
        if first is not None:
            return first
        nq = normalize(quote)
        if not nq:
            return None
        norm = self.norm
        start = norm.text.find(nq)
        while start != -1:
            b, e = norm.span(start, start + len(nq))
            hit = Alignment(b, e, "normalized")
            if (b, e) not in used:
                return hit
            first = first or hit
            start = norm.text.find(nq, start + 1)
        if first is not None:
            return first
        return self._fuzzy(nq)

    def _fuzzy(self, nq: str) -> Alignment | None:
        if len(nq) < 4 or not self.norm.text:
            return None
        res = fuzz.partial_ratio_alignment(nq, self.norm.text, score_cutoff=self.fuzzy_threshold)
        if res is None or res.dest_end <= res.dest_start:
            return None
        b, e = self.norm.span(res.dest_start, res.dest_end)
        # trim whitespace the match may have swallowed at its edges, then grow to whole words: the window
        # rapidfuzz returns has the quote's length, which can clip a word the quote misspelt
        while b < e and self.text[b].isspace():
            b += 1
        while e > b and self.text[e - 1].isspace():
            e -= 1
        while b > 0 and self.text[b - 1].isalnum() and self.text[b].isalnum():
            b -= 1
        while e < len(self.text) and self.text[e].isalnum() and self.text[e - 1].isalnum():
            e += 1
        return Alignment(b, e, "fuzzy", round(res.score, 1)) if b < e else None


def align_quote(quote: str, text: str, fuzzy_threshold: float = defaults.FUZZY_THRESHOLD) -> Alignment | None:
    return Aligner(text, fuzzy_threshold).align(quote)
