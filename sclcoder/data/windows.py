"""Splitting notes into windows that fit the model, shared by `data build` (document examples) and
`predict`, so that training sees notes cut exactly the way inference will cut them.

A note is first cut into segments: lines and sentences, whitespace kept with the segment before it, so
the segments tile the text. Windows are runs of whole segments whose token count fits the budget; the
next window starts far enough back to overlap the previous one by at least `overlap_tokens`. Only a
single segment longer than the budget is cut inside, at whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_BREAK = re.compile(r"\n+\s*|(?<=[.!?;])\s+(?=[A-Z0-9#\[(*-])")


@dataclass(frozen=True)
class Window:
    begin: int
    end: int


def segments(text: str) -> list[tuple[int, int]]:
    """[begin, end) character ranges of lines/sentences that tile `text` (trailing space included)."""
    out, start = [], 0
    for m in _BREAK.finditer(text):
        if m.end() > start:
            out.append((start, m.end()))
            start = m.end()
    if start < len(text):
        out.append((start, len(text)))
    return out


def _cut_long(text: str, begin: int, end: int, count: Callable[[str], int], budget: int) -> list[tuple[int, int]]:
    """Cut one over-long segment at whitespace into pieces of at most `budget` tokens."""
    pieces, start = [], begin
    while start < end:
        lo, hi = start + 1, end
        # largest end whose piece fits, by bisection on characters
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        stop = lo
        if stop < end:
            space = text.rfind(" ", start + 1, stop)
            if space > start:
                stop = space + 1
        pieces.append((start, stop))
        start = stop
    return pieces


def split_windows(
    text: str, count_tokens: Callable[[str], int], max_tokens: int, overlap_tokens: int = 0
) -> list[Window]:
    """Windows of whole segments with at most `max_tokens` tokens each, overlapping by about
    `overlap_tokens`. A text that fits is one window."""
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    if not text or count_tokens(text) <= max_tokens:
        return [Window(0, len(text))]
    segs: list[tuple[int, int, int]] = []
    for b, e in segments(text):
        n = count_tokens(text[b:e])
        if n <= max_tokens:
            segs.append((b, e, n))
        else:
            segs.extend(
                (pb, pe, count_tokens(text[pb:pe])) for pb, pe in _cut_long(text, b, e, count_tokens, max_tokens)
            )
    windows: list[Window] = []
    i = 0
    while i < len(segs):
        j, total = i, 0
        while j < len(segs) and total + segs[j][2] <= max_tokens:
            total += segs[j][2]
            j += 1
        j = max(j, i + 1)
        windows.append(Window(segs[i][0], segs[j - 1][1]))
        if j >= len(segs):
            break
        # step back from j while the overlap is below target, keeping at least one new segment
        k, back = j, 0
        while k - 1 > i and back < overlap_tokens:
            k -= 1
            back += segs[k][2]
        i = k
    return windows
