"""How far the confidence of each predicted code (sclcoder.infer.confidence) can be trusted on a gold standard:
a reliability table (confidence bins against the share of their codes that are right), the expected calibration
error, and codes micro precision, recall and F1 at confidence thresholds, with the threshold that maximises
micro F1 on these notes. Choose that threshold on validation notes and predict the test notes with it
(`predict.min_confidence`): chosen on test, it would flatter the test score.

The same table is made of the support of the codes' evidence (sclcoder.infer.support), when predict computed
it: the threshold then says below which support a code is better dropped.

Every code a model wrote counts here, those a threshold already withheld included; a code without a confidence
(an engine that reported none) is left out of the table and kept at every threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from sclcoder.data.documents import Document
from sclcoder.eval.metrics import PRF, Prediction, set_prf
from sclcoder.eval.scores import Result

BINS = 10
GRID = tuple(round(0.1 * i, 1) for i in range(10))
"""Thresholds reported in the table, besides the best one."""


class ReliabilityBin(Result):
    low: float
    high: float
    codes: int
    mean_confidence: float
    precision: float
    """Share of the bin's codes that are in the gold standard."""


class AtThreshold(Result):
    threshold: float
    codes_kept: int
    precision: float
    recall: float
    f1: float


class Calibration(Result):
    codes: int
    """Predicted codes with a confidence."""
    expected_calibration_error: float
    bins: list[ReliabilityBin]
    thresholds: list[AtThreshold]
    best_threshold: float
    """The lowest threshold with the highest micro F1 on these notes."""
    best_f1: float


Score = Literal["confidence", "support"]


def _at(threshold: float, gold: list[Document], preds: dict[str, Prediction], score: Score) -> AtThreshold:
    total, kept = PRF(), 0
    for doc in gold:
        pred = preds.get(doc.id)
        written = pred.written(score) if pred else {}
        chosen = {c for c, p in written.items() if p is None or p >= threshold}
        kept += len(chosen)
        total += set_prf(set(doc.codes), chosen)
    return AtThreshold(
        threshold=threshold, codes_kept=kept, precision=total.precision, recall=total.recall, f1=total.f1
    )


def calibration(
    gold: list[Document], predictions: Iterable[Prediction], score: Score = "confidence"
) -> Calibration | None:
    """The calibration of the predictions' confidences (or supports) against `gold`; None when none has one."""
    preds = {p.id: p for p in predictions}
    pairs = [
        (confidence, code in doc.codes)
        for doc in gold
        if doc.id in preds
        for code, confidence in preds[doc.id].written(score).items()
        if confidence is not None
    ]
    if not pairs:
        return None
    bins = []
    error = 0.0
    for i in range(BINS):
        low, high = i / BINS, (i + 1) / BINS
        inside = [(c, right) for c, right in pairs if low <= c < high or (i == BINS - 1 and c == 1.0)]
        if not inside:
            continue
        mean = sum(c for c, _ in inside) / len(inside)
        precision = sum(right for _, right in inside) / len(inside)
        error += len(inside) / len(pairs) * abs(precision - mean)
        bins.append(ReliabilityBin(low=low, high=high, codes=len(inside), mean_confidence=mean, precision=precision))
    candidates = sorted({0.0, *(c for c, _ in pairs)})
    scored = [_at(t, gold, preds, score) for t in candidates]
    best = max(scored, key=lambda row: (row.f1, -row.threshold))
    return Calibration(
        codes=len(pairs),
        expected_calibration_error=error,
        bins=bins,
        thresholds=[_at(t, gold, preds, score) for t in GRID],
        best_threshold=best.threshold,
        best_f1=best.f1,
    )
