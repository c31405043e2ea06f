"""Training examples of Span-Centric Learning: evidence spans, negative windows, whole documents and
synthesised spans. Each example is a piece of text shown to the model plus the answer it should give.

* **span**: an evidence span with context around it (tokens or sentences, never cutting a quote); the
  target lists every code whose evidence lies wholly inside the window, so co-located codes are not
  taught as absent. A span already covered by an earlier window of the same note adds nothing.
* **negative**: a window with no evidence at all, answered with ``{"codes": []}``.
* **hard_negative**: where the model quoted a code that a coder rejected (`sclcoder review`), with the
  context a span example has, answered with the codes the coder kept there (often none).
* **document**: a whole note, split into windows exactly as `predict` splits it, each window with the
  codes evidenced inside it (recognise -> aggregate -> assign).
* **synthetic**: short made-up spans that widen the code space (teacher LLM, or the offline fallback
  from code descriptions and inclusion terms in this module).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document, Evidence
from sclcoder.data.windows import segments, split_windows
from sclcoder.sft.answer import make_answer

Kind = Literal["span", "negative", "hard_negative", "document", "synthetic"]
MAX_QUOTES = 8  # per code, as the answer schema allows


@dataclass
class Example:
    kind: Kind
    text: str
    targets: list[tuple[str, list[str]]]
    source: str
    begin: int = -1
    end: int = -1
    origin: str = "gold"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return [code for code, _ in self.targets]

    def answer(self) -> dict[str, Any]:
        return make_answer(self.targets)


def _usable_evidence(doc: Document) -> list[Evidence]:
    """Evidence of the note's diagnosis codes (procedures stay out of the coding task)."""
    return [ev for ev in sorted(doc.evidence) if doc.system_of(ev.code) is doc.code_system]


def window_targets(doc: Document, begin: int, end: int, evidence: Sequence[Evidence]) -> list[tuple[str, list[str]]]:
    """(code, quotes) for every code with evidence wholly inside [begin, end), in text order."""
    grouped: dict[str, list[str]] = {}
    for ev in evidence:
        if begin <= ev.begin and ev.end <= end:
            quotes = grouped.setdefault(ev.code, [])
            quote = doc.quote(ev)
            if quote not in quotes and len(quotes) < MAX_QUOTES:
                quotes.append(quote)
    return list(grouped.items())


def _cover(begin: int, end: int, evidence: Sequence[Evidence]) -> tuple[int, int]:
    """Grow [begin, end) until no evidence span is cut by its edges."""
    changed = True
    while changed:
        changed = False
        for ev in evidence:
            if ev.begin < end and ev.end > begin and (ev.begin < begin or ev.end > end):
                begin, end = min(begin, ev.begin), max(end, ev.end)
                changed = True
    return begin, end


SNAP_CHARS = 40
"""How far a span example's edge may move outward to reach whitespace (no half words at its ends)."""


def _tidy(text: str, begin: int, end: int, evidence: Sequence[Evidence]) -> tuple[int, int]:
    """Snap edges outward to whitespace (no half words), strip outer whitespace, never cut a quote."""
    # an edge already beside whitespace cuts no word (a sentence window ends after its trailing space: snapping
    # on from there took the next sentence's first word)
    for _ in range(SNAP_CHARS):
        if begin <= 0 or begin >= len(text) or text[begin - 1].isspace() or text[begin].isspace():
            break
        begin -= 1
    for _ in range(SNAP_CHARS):
        if end >= len(text) or end <= 0 or text[end].isspace() or text[end - 1].isspace():
            break
        end += 1
    begin, end = _cover(begin, end, evidence)
    while begin < end and text[begin].isspace():
        begin += 1
    while end > begin and text[end - 1].isspace():
        end -= 1
    return _cover(begin, end, evidence)


class TokenOffsets:
    """Character offsets of a text's tokens, to size context windows in tokens."""

    def __init__(self, tokenizer: Any, text: str) -> None:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        self.spans: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"] if o[1] > o[0]]
        self.starts = [s for s, _ in self.spans]

    def around(self, begin: int, end: int, k: int) -> tuple[int, int]:
        if not self.spans:
            return begin, end
        i = max(0, bisect.bisect_right(self.starts, begin) - 1)
        j = max(i, bisect.bisect_left(self.starts, end) - 1)
        lo, hi = max(0, i - k), min(len(self.spans) - 1, j + k)
        return min(begin, self.spans[lo][0]), max(end, self.spans[hi][1])


def span_examples(
    doc: Document,
    *,
    tokenizer: Any,
    context: Literal["tokens", "sentences"],
    context_size: int,
) -> list[Example]:
    """One example per evidence span not already inside an earlier window of the same note."""
    evidence = _usable_evidence(doc)
    if not evidence:
        return []
    text = doc.text
    around = ContextWindows(text, tokenizer, context, context_size).around
    out: list[Example] = []
    windows: list[tuple[int, int]] = []
    for ev in evidence:
        if any(b <= ev.begin and ev.end <= e for b, e in windows):
            continue
        b, e = around(ev.begin, ev.end, evidence)
        if (b, e) in windows:
            continue
        windows.append((b, e))
        out.append(Example("span", text[b:e], window_targets(doc, b, e, evidence), doc.id, b, e))
    return out


class ContextWindows:
    """Windows of one note around a span, with `context_size` tokens or sentences of context on each side,
    snapped to whole words and grown so that no evidence span is cut (the note is tokenised or segmented once)."""

    def __init__(self, text: str, tokenizer: Any, context: Literal["tokens", "sentences"], context_size: int) -> None:
        self.text, self.k = text, context_size
        self.offsets = TokenOffsets(tokenizer, text) if context == "tokens" else None
        self.segs = segments(text) if context == "sentences" else []
        self.starts = [b for b, _ in self.segs]

    def around(self, begin: int, end: int, evidence: Sequence[Evidence]) -> tuple[int, int]:
        if self.offsets is not None:
            b, e = self.offsets.around(begin, end, self.k)
        else:
            i = max(0, bisect.bisect_right(self.starts, begin) - 1)
            j = max(i, bisect.bisect_right(self.starts, end - 1) - 1)
            b, e = self.segs[max(0, i - self.k)][0], self.segs[min(len(self.segs) - 1, j + self.k)][1]
        return _tidy(self.text, b, e, evidence)


def hard_negative_examples(
    doc: Document, *, tokenizer: Any, context: Literal["tokens", "sentences"], context_size: int
) -> list[Example]:
    """One example per quote of a rejected code (`doc.meta["hard_negatives"]`: code -> [(begin, end)]), sized as a
    span example around it, whose answer lists only the codes the coder kept inside the window."""
    rejected: dict[str, list[tuple[int, int]]] = doc.meta.get("hard_negatives") or {}
    if not rejected:
        return []
    evidence = _usable_evidence(doc)
    around = ContextWindows(doc.text, tokenizer, context, context_size).around
    out, seen = [], set()
    for code, spans in sorted(rejected.items()):
        for begin, end in spans:
            b, e = around(begin, end, evidence)
            if (b, e) in seen:
                continue
            seen.add((b, e))
            targets = [t for t in window_targets(doc, b, e, evidence) if t[0] != code]
            out.append(Example("hard_negative", doc.text[b:e], targets, doc.id, b, e, origin="coder"))
    return out


def negative_examples(doc: Document, n: int, lengths: Sequence[int], rng: random.Random) -> list[Example]:
    """Up to `n` evidence-free windows with lengths drawn from `lengths` (characters)."""
    if n <= 0 or not lengths or not doc.text.strip():
        return []
    text, evidence = doc.text, sorted(doc.evidence)
    out: list[Example] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(n * 12):
        if len(out) >= n:
            break
        length = min(rng.choice(list(lengths)), len(text))
        start = rng.randint(0, max(0, len(text) - length))
        b, e = _tidy(text, start, start + length, [])
        if e - b < 8 or (b, e) in seen or any(ev.begin < e and ev.end > b for ev in evidence):
            continue
        seen.add((b, e))
        out.append(Example("negative", text[b:e], [], doc.id, b, e))
    return out


def document_examples(
    doc: Document, *, count_tokens: Callable[[str], int], max_tokens: int, overlap_tokens: int
) -> list[Example]:
    """The note cut into windows as `predict` cuts it, each with the codes evidenced inside it."""
    evidence = _usable_evidence(doc)
    out = []
    for w in split_windows(doc.text, count_tokens, max_tokens, overlap_tokens):
        out.append(
            Example(
                "document",
                doc.text[w.begin : w.end],
                window_targets(doc, w.begin, w.end, evidence),
                doc.id,
                w.begin,
                w.end,
            )
        )
    return out


# -------------------------------------------------------------------------------- offline synthesis

_TEMPLATES = (
    "Assessment: {t}.",
    "Past medical history notable for {t}.",
    "Discharge diagnosis: {t}.",
    "# {T}: will continue current management.",
    "Patient with known {t}, stable during this admission.",
    "Problem list reviewed; {t} addressed with the patient.",
    "Impression: {t}, follow up as outpatient.",
)


def offline_examples(code: str, system: CodeSystem, n: int, rng: random.Random) -> list[Example]:
    """Short spans written from the code's title and inclusion terms: no LLM, clearly weaker."""
    info = codes_mod.lookup(code, system)
    if info is None or not info.description:
        return []
    terms = [
        codes_mod.clean_term(info.description),
        *(codes_mod.clean_term(t) for t in codes_mod.inclusion_terms(code, system)),
    ]
    terms = list(dict.fromkeys(t for t in terms if len(t) >= 3))
    if not terms:
        return []
    out, seen = [], set()
    for i in range(n * 3):
        if len(out) >= n:
            break
        term = terms[i % len(terms)]
        template = rng.choice(_TEMPLATES)
        quote = term[:1].upper() + term[1:] if template.startswith("# ") else term
        text = template.format(t=term, T=quote)
        if text in seen:
            continue
        seen.add(text)
        out.append(Example("synthetic", text, [(code, [quote])], f"offline:{code}", origin="offline"))
    return out
