"""Metrics for codes and for evidence, as pure functions over gold Documents and predictions.

* **Codes**: micro P/R/F1 over (note, code) pairs; macro P/R/F1 two ways, labelled, because published
  numbers differ by up to 2x on this choice: averaged over the codes in the gold standard, and over the
  codes in gold or predicted; a per-code table; micro scores on codes seen and unseen in training.
* **MDACE evidence metrics** (definitions of the MDACE authors, implemented here): exact span match
  (note, begin, end, code), position-independent span match (lower-cased text, code), exact token match
  (note, token start, code) and position-independent token match (lower-cased token, code). Each is a
  micro P/R/F1 over *sets* of such items, collected per group (an admission for MDACE: all its notes pool
  their items, as the authors' evaluate-predictions.py pools them; a note otherwise) and summed over
  groups. A span trimmed to nothing still counts in the span metrics, as there. Tokens are lower-cased
  `\\w+` matches; numbers above 10 are dropped.
* **Plausibility** (rationale evaluation): token-level P/R/F1 of the predicted evidence of each (note,
  code) pair that has gold evidence, averaged over pairs, reported over correctly predicted codes and over
  all gold codes; and evidence-span recall, the share of gold spans overlapped by predicted evidence of
  the same code.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from sclcoder.data.documents import Document, Evidence
from sclcoder.eval.scores import (
    Averages,
    CodeMetrics,
    CodeRow,
    EvidenceMetrics,
    MatchCount,
    MatchRow,
    MatchTypes,
    Plausibility,
    Scores,
    SubsetScores,
    TokenAgreement,
)

TOKEN = re.compile(r"\w+", flags=re.UNICODE)


@dataclass
class Prediction:
    """What the metrics need from one predicted note. `text` and `group` are only needed for a note the
    gold standard does not hold (MDACE baselines also mark notes of an admission that coders left empty)."""

    id: str
    codes: set[str]
    evidence: list[Evidence] = field(default_factory=list)
    text: str | None = None
    group: str | None = None
    confidences: dict[str, float | None] = field(default_factory=dict)
    """Every code the model wrote (those withheld by a threshold too) -> its confidence, where known."""
    supports: dict[str, float | None] = field(default_factory=dict)
    """The same codes -> the support of their evidence (sclcoder.infer.support), where predict computed it."""

    def written(self, score: Literal["confidence", "support"] = "confidence") -> dict[str, float | None]:
        """The codes the model wrote, predicted or withheld, with their confidence or support (None: unknown)."""
        values = self.confidences if score == "confidence" else self.supports
        return {code: values.get(code) for code in [*self.codes, *self.confidences, *self.supports]}


@dataclass
class PRF:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: PRF) -> PRF:
        return PRF(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def scores(self) -> Scores:
        return Scores(
            precision=self.precision,
            recall=self.recall,
            f1=self.f1,
            tp=self.tp,
            fp=self.fp,
            fn=self.fn,
            predicted=self.tp + self.fp,
            actual=self.tp + self.fn,
        )


def set_prf(gold: set, pred: set) -> PRF:
    return PRF(len(gold & pred), len(pred - gold), len(gold - pred))


# ----------------------------------------------------------------------------------------------- codes


def _pairs(gold: list[Document], preds: dict[str, Prediction]) -> tuple[list[tuple[str, set, set]], list[str]]:
    rows, missing = [], []
    for doc in gold:
        pred = preds.get(doc.id)
        if pred is None:
            missing.append(doc.id)
        rows.append((doc.id, set(doc.codes), set(pred.codes) if pred else set()))
    return rows, missing


def code_metrics(
    gold: list[Document],
    predictions: Iterable[Prediction],
    *,
    seen_codes: set[str] | None = None,
    describe: Callable[[str], str | None] | None = None,
) -> CodeMetrics:
    preds = {p.id: p for p in predictions}
    rows, missing = _pairs(gold, preds)
    micro = PRF()
    per_code: dict[str, PRF] = defaultdict(PRF)
    for _, g, p in rows:
        micro += set_prf(g, p)
        for code in g | p:
            per_code[code] += set_prf({code} & g, {code} & p)
    gold_codes = {c for _, g, _ in rows for c in g}
    all_codes = set(per_code)

    def macro(codes: set[str]) -> Averages:
        n = len(codes)
        return Averages(
            precision=sum(per_code[c].precision for c in codes) / n if n else 0.0,
            recall=sum(per_code[c].recall for c in codes) / n if n else 0.0,
            f1=sum(per_code[c].f1 for c in codes) / n if n else 0.0,
            codes=n,
        )

    out = CodeMetrics(
        notes=len(rows),
        notes_without_prediction=missing,
        micro=micro.scores(),
        macro_over_gold_codes=macro(gold_codes),
        macro_over_gold_and_predicted_codes=macro(all_codes),
        per_code=[
            CodeRow(
                code=c,
                description=describe(c) if describe else None,
                support=per_code[c].tp + per_code[c].fn,
                seen_in_training=None if seen_codes is None else c in seen_codes,
                **per_code[c].scores().model_dump(),
            )
            for c in sorted(all_codes, key=lambda c: (-(per_code[c].tp + per_code[c].fn), c))
        ],
    )
    if seen_codes is not None:
        for name, keep in (("seen", lambda c: c in seen_codes), ("unseen", lambda c: c not in seen_codes)):
            part = PRF()
            for _, g, p in rows:
                part += set_prf({c for c in g if keep(c)}, {c for c in p if keep(c)})
            subset = SubsetScores(**part.scores().model_dump(), codes=sum(1 for c in all_codes if keep(c)))
            setattr(out, f"micro_{name}_codes", subset)
    return out


# ---------------------------------------------------------------------------------------- evidence (MDACE)


def tokens(text: str, offset: int = 0) -> list[tuple[int, str]]:
    """(start offset, lower-cased token) for `\\w+` tokens; numbers above 10 are dropped (MDACE)."""
    out = []
    for m in TOKEN.finditer(text.lower()):
        tok = m.group()
        if tok.isdigit() and int(tok) > 10:
            continue
        out.append((offset + m.start(), tok))
    return out


def _items(doc: Document, evidence: Iterable[Evidence]) -> dict[str, set]:
    spans, pi_spans, toks, pi_toks = set(), set(), set(), set()
    for ev in evidence:
        covered = doc.text[ev.begin : ev.end]
        spans.add((doc.id, ev.begin, ev.end, ev.code))
        pi_spans.add((covered.lower(), ev.code))
        for start, tok in tokens(covered, ev.begin):
            toks.add((doc.id, start, ev.code))
            pi_toks.add((tok, ev.code))
    return {
        "span_exact": spans,
        "span_position_independent": pi_spans,
        "token_exact": toks,
        "token_position_independent": pi_toks,
    }


MDACE_METRICS = ("span_exact", "span_position_independent", "token_exact", "token_position_independent")


def mdace_evidence_metrics(
    gold: list[Document], predictions: Iterable[Prediction], *, group: Callable[[Document], str] | None = None
) -> EvidenceMetrics:
    """The four MDACE evidence metrics; `group` pools notes (default: each note on its own)."""
    preds = {p.id: p for p in predictions}
    group = group or (lambda d: d.id)
    gold_sets: dict[str, dict[str, set]] = defaultdict(lambda: {m: set() for m in MDACE_METRICS})
    pred_sets: dict[str, dict[str, set]] = defaultdict(lambda: {m: set() for m in MDACE_METRICS})
    for doc in gold:
        key = group(doc)
        for metric, items in _items(doc, doc.evidence).items():
            gold_sets[key][metric] |= items
        pred = preds.get(doc.id)
        for metric, items in _items(doc, pred.evidence if pred else []).items():
            pred_sets[key][metric] |= items
    gold_ids = {doc.id for doc in gold}
    for pred in preds.values():
        # a predicted note outside the gold notes still counts, in its admission, when it belongs to one
        if pred.id in gold_ids or pred.text is None or pred.group not in gold_sets:
            continue
        note = Document(pred.id, pred.text, set(pred.codes))
        for metric, items in _items(note, pred.evidence).items():
            pred_sets[pred.group][metric] |= items
    totals = {m: PRF() for m in MDACE_METRICS}
    for key in gold_sets:
        for m in MDACE_METRICS:
            totals[m] += set_prf(gold_sets[key][m], pred_sets[key][m])
    return EvidenceMetrics(**{m: totals[m].scores() for m in MDACE_METRICS}, groups=len(gold_sets))


# --------------------------------------------------------------------------------------------- plausibility


def _covered_tokens(doc: Document, spans: Iterable[Evidence]) -> set[int]:
    out: set[int] = set()
    for ev in spans:
        out |= {start for start, _ in tokens(doc.text[ev.begin : ev.end], ev.begin)}
    return out


def _by_code(evidence: Iterable[Evidence]) -> dict[str, list[Evidence]]:
    out: dict[str, list[Evidence]] = defaultdict(list)
    for ev in evidence:
        out[ev.code].append(ev)
    return out


def plausibility(gold: list[Document], predictions: Iterable[Prediction]) -> Plausibility:
    """Token P/R/F1 per (note, code) with gold evidence, averaged; and evidence-span recall."""
    preds = {p.id: p for p in predictions}
    settings: dict[str, dict[str, list[float]]] = {
        "correct_codes": {"precision": [], "recall": [], "f1": []},
        "all_gold_codes": {"precision": [], "recall": [], "f1": []},
    }
    spans_hit: Counter = Counter()
    spans_total: Counter = Counter()
    for doc in gold:
        pred = preds.get(doc.id) or Prediction(doc.id, set())
        pred_by_code = _by_code(pred.evidence)
        for code, spans in doc.evidence_by_code().items():
            gold_spans = [gs for gs in spans if gs.begin < gs.end]  # a span trimmed to nothing has no tokens
            if not gold_spans:
                continue
            g = _covered_tokens(doc, gold_spans)
            p = _covered_tokens(doc, pred_by_code.get(code, []))
            prf = set_prf(g, p)
            correct = code in pred.codes
            targets = ["all_gold_codes", "correct_codes"] if correct else ["all_gold_codes"]
            hits = sum(
                1
                for gs in gold_spans
                if any(ps.begin < gs.end and gs.begin < ps.end for ps in pred_by_code.get(code, []))
            )
            for name in targets:
                settings[name]["precision"].append(prf.precision)
                settings[name]["recall"].append(prf.recall)
                settings[name]["f1"].append(prf.f1)
                spans_hit[name] += hits
                spans_total[name] += len(gold_spans)
    out = {}
    for name, values in settings.items():
        n = len(values["f1"])
        out[name] = TokenAgreement(
            **{k: (sum(v) / n if n else 0.0) for k, v in values.items()},
            pairs=n,
            span_recall=spans_hit[name] / spans_total[name] if spans_total[name] else 0.0,
            gold_spans=spans_total[name],
        )
    return Plausibility(**out)


# ------------------------------------------------------------------------------------------ match types

MATCH_TYPES = ("empty", "exact", "proximate", "partial", "no_match")
PROXIMITY_TOKENS = 10
"""How near (in tokens) a predicted token must be to a gold span for a proximate match."""


def _token_index(text: str) -> tuple[list[int], list[int]]:
    """Start and end offsets of every `\\w+` token of a note, in order (numbers kept: this counts distance)."""
    found = [(m.start(), m.end()) for m in TOKEN.finditer(text)]
    return [b for b, _ in found], [e for _, e in found]


def match_type(doc: Document, gold: list[Evidence], predicted: list[Evidence]) -> str:
    """How the predicted evidence of one (note, code) meets its gold evidence, in the categories of "The
    Anatomy of Evidence" (ACL 2025), first that applies: `empty` (nothing predicted), `exact` (the same
    spans), `proximate` (every gold span hit and every predicted token within 10 tokens of a gold span),
    `partial` (some overlap), `no_match` (evidence, none of it on a gold span)."""
    if not predicted:
        return "empty"
    if {(e.begin, e.end) for e in gold} == {(e.begin, e.end) for e in predicted}:
        return "exact"

    def hits(a: Evidence, b: Evidence) -> bool:
        return a.begin < b.end and b.begin < a.end

    if not any(hits(g, p) for g in gold for p in predicted):
        return "no_match"
    starts, ends = _token_index(doc.text)

    def token_range(ev: Evidence) -> tuple[int, int]:
        first = bisect.bisect_right(ends, ev.begin)  # first token ending after the span starts
        last = bisect.bisect_left(starts, ev.end) - 1  # last token starting before the span ends
        return first, max(first, last)

    near = [token_range(g) for g in gold]
    predicted_tokens = {i for p in predicted for i in range(token_range(p)[0], token_range(p)[1] + 1)}
    every_gold_hit = all(any(hits(g, p) for p in predicted) for g in gold)
    all_near = all(any(a - PROXIMITY_TOKENS <= i <= b + PROXIMITY_TOKENS for a, b in near) for i in predicted_tokens)
    return "proximate" if every_gold_hit and all_near else "partial"


def match_types(gold: list[Document], predictions: Iterable[Prediction]) -> MatchTypes:
    """Counts and shares of each match type over the (note, code) pairs with gold evidence, overall and
    per code; pairs whose code was not predicted count too (their evidence is `empty` unless the model
    quoted for a code it did not assign)."""
    preds = {p.id: p for p in predictions}
    overall: Counter = Counter()
    per_code: dict[str, Counter] = defaultdict(Counter)
    for doc in gold:
        by_code = _by_code((preds.get(doc.id) or Prediction(doc.id, set())).evidence)
        for code, spans in doc.evidence_by_code().items():
            kind = match_type(doc, spans, by_code.get(code, []))
            overall[kind] += 1
            per_code[code][kind] += 1

    def table(counts: Counter) -> MatchRow:
        n = sum(counts.values())
        return MatchRow(
            pairs=n, **{k: MatchCount(count=counts[k], share=counts[k] / n if n else 0.0) for k in MATCH_TYPES}
        )

    return MatchTypes(overall=table(overall), per_code={c: table(k) for c, k in sorted(per_code.items())})
