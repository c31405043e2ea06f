"""The evaluation report: one typed record (`EvalReport`) that `sclcoder eval` writes as report.json and that
the demo, validation during training and the benchmarks read by name; report.md and per_code.csv are views of it.
"""

from __future__ import annotations

import csv
import io
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from sclcoder.errors import SclError, validation_error
from sclcoder.eval.calibration import Calibration
from sclcoder.eval.faithfulness import Faithfulness
from sclcoder.eval.metrics import MATCH_TYPES, MDACE_METRICS
from sclcoder.eval.scores import CodeMetrics, EvidenceMetrics, MatchTypes, Plausibility, Result
from sclcoder.files import parse_json, write_json_atomic, write_text_atomic

REPORT_FILE = "report.json"


class GoldSummary(Result):
    notes: int
    codes: int
    evidence_spans: int
    evidence_spans_trimmed_to_nothing: int
    distinct_codes: int


class PredictionsSummary(Result):
    format: Literal["jsonl", "mdace"]
    path: str
    notes: int = 0
    evidence_spans_trimmed_to_nothing: int = 0
    evidence_alignment: dict[str, int] = {}
    """How the quotes of a predictions JSONL were placed in their notes (exact, normalized, fuzzy, unaligned)."""
    notes_without_text: int | None = None
    """MDACE-layout predictions: notes whose text was found nowhere (not scored)."""
    notes_not_in_gold: int = 0
    """Predicted notes the gold standard does not hold: not scored (and said in a warning)."""


class NegatedMentions(Result):
    """Demo corpus only: conditions a note mentions only negated or in the family history."""

    conditions_mentioned_only_negated: int
    coded_anyway: int


class EvalReport(Result):
    sclcoder_version: str
    benchmark: str
    settings: dict[str, Any]
    gold: GoldSummary
    predictions: PredictionsSummary
    codes: CodeMetrics
    evidence_mdace: EvidenceMetrics
    plausibility: Plausibility
    evidence_match_types: MatchTypes
    negated_mentions: NegatedMentions | None = None
    calibration: Calibration | None = None
    """Of the codes' confidences, when the predictions carry them (sclcoder.eval.calibration)."""
    support: Calibration | None = None
    """The same table for the support of the codes' evidence, when predict computed it (`--support`)."""
    faithfulness: Faithfulness | None = None
    seconds: float = 0.0

    # the three numbers every summary quotes, under the names task_eval selects by
    @property
    def codes_micro_f1(self) -> float:
        return self.codes.micro.f1

    @property
    def codes_macro_f1(self) -> float:
        """Macro F1 over the codes of the gold standard."""
        return self.codes.macro_over_gold_codes.f1

    @property
    def evidence_token_f1(self) -> float:
        """MDACE's position-independent token F1 of the evidence."""
        return self.evidence_mdace.token_position_independent.f1


def read_report(path: str | PathLike[str]) -> EvalReport:
    """A report.json written by `sclcoder eval` (or the demo), checked."""
    p = Path(path)
    if not p.is_file():
        raise SclError("evaluation report not found", path=p)
    try:
        return EvalReport.model_validate(parse_json(p.read_bytes(), path=p))
    except ValidationError as exc:
        raise validation_error(exc, path=p) from None


def write_report(report: EvalReport, out_dir: str | PathLike[str]) -> Path:
    """report.json (every number and the settings), report.md and per_code.csv, each written atomically."""
    out = Path(out_dir)
    write_json_atomic(out / REPORT_FILE, report.model_dump(mode="json"))
    write_text_atomic(out / "report.md", markdown(report))
    buf = io.StringIO()
    fields = ["code", "description", "support", "predicted", "tp", "fp", "fn", "precision", "recall", "f1"]
    rows = [row.model_dump() for row in report.codes.per_code]
    if rows and rows[0]["seen_in_training"] is not None:
        fields.append("seen_in_training")
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "per_code.csv", buf.getvalue())
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


EVIDENCE_LABELS = {
    "span_exact": "exact span",
    "span_position_independent": "position-independent span",
    "token_exact": "exact token",
    "token_position_independent": "position-independent token",
}


def headline(report: EvalReport) -> list[tuple[str, str]]:
    """(label, value) rows of the numbers a reader looks at first (the terminal table, report.md)."""
    c, e, pl = report.codes, report.evidence_mdace, report.plausibility
    rows = [
        ("codes micro P / R / F1", f"{_pct(c.micro.precision)} / {_pct(c.micro.recall)} / {_pct(c.micro.f1)}"),
        ("codes macro F1 (over gold codes)", _pct(c.macro_over_gold_codes.f1)),
        ("codes macro F1 (over gold ∪ predicted codes)", _pct(c.macro_over_gold_and_predicted_codes.f1)),
    ]
    rows += [(f"evidence F1, {label} (MDACE)", _pct(getattr(e, m).f1)) for m, label in EVIDENCE_LABELS.items()]
    rows.append(("plausibility token F1, correct codes", _pct(pl.correct_codes.f1)))
    rows.append(("plausibility token F1, all gold codes", _pct(pl.all_gold_codes.f1)))
    rows.append(("evidence-span recall, all gold codes", _pct(pl.all_gold_codes.span_recall)))
    t = report.evidence_match_types.overall
    rows.append(
        ("evidence match exact / proximate / partial / none / empty", " / ".join(_pct(getattr(t, k).share) for k in
         ("exact", "proximate", "partial", "no_match", "empty")))
    )  # fmt: skip
    if report.calibration is not None:
        cal = report.calibration
        rows.append(
            (
                "confidence: calibration error / best threshold (micro F1 there)",
                f"{_pct(cal.expected_calibration_error)} / {cal.best_threshold:.3f} ({_pct(cal.best_f1)})",
            )
        )
    if report.support is not None:
        sup = report.support
        rows.append(
            (
                "support: best threshold (micro F1 there)",
                f"{sup.best_threshold:.3f} ({_pct(sup.best_f1)})",
            )
        )
    if report.faithfulness is not None:
        f = report.faithfulness
        rows.append(
            ("faithfulness: sufficiency / comprehensiveness", f"{f.sufficiency:.3f} / {f.comprehensiveness:.3f}")
        )
    if report.negated_mentions is not None:
        n = report.negated_mentions
        rows.append(
            ("negated-only conditions coded anyway", f"{n.coded_anyway} of {n.conditions_mentioned_only_negated}")
        )
    return rows


def markdown(report: EvalReport) -> str:
    g, p = report.gold, report.predictions
    settings = ", ".join(f"{k}={v}" for k, v in report.settings.items())
    lines = [
        f"# sclcoder evaluation: {report.benchmark}",
        "",
        f"Settings: {settings}.",
        "",
        f"Gold: {g.notes} notes, {g.codes} codes, {g.evidence_spans} evidence spans "
        f"({g.evidence_spans_trimmed_to_nothing} trimmed to nothing, kept as the MDACE script keeps them). "
        f"Predictions: {p.path} ({p.notes} notes, {p.evidence_spans_trimmed_to_nothing} spans trimmed to nothing).",
        "",
        "| metric | value (%) |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in headline(report)]
    lines += [
        "",
        "## MDACE evidence metrics",
        "",
        "| metric | #pred | #gold | TP | FP | FN | P | R | F1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in MDACE_METRICS:
        r = getattr(report.evidence_mdace, m)
        lines.append(
            f"| {m} | {r.predicted} | {r.actual} | {r.tp} | {r.fp} | {r.fn} | "
            f"{_pct(r.precision)} | {_pct(r.recall)} | {_pct(r.f1)} |"
        )
    types = report.evidence_match_types
    lines += [
        "",
        "## Evidence match types per (note, code) with gold evidence",
        "",
        "Empty: nothing quoted; exact: the gold spans; proximate: every gold span hit and every quoted token",
        "within 10 tokens of one; partial: some overlap; no match: quoted, but nowhere on gold evidence.",
        "",
        "| code | pairs | " + " | ".join(MATCH_TYPES) + " |",
        "|---|---|" + "---|" * len(MATCH_TYPES),
    ]
    for code, row in [("all", types.overall), *types.per_code.items()]:
        cells = " | ".join(f"{getattr(row, k).count} ({_pct(getattr(row, k).share)}%)" for k in MATCH_TYPES)
        lines.append(f"| {code} | {row.pairs} | {cells} |")
    lines.append("")
    return "\n".join(lines)
