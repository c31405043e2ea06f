"""What each metric returns: typed results that report.json holds and that the demo, validation during
training and the benchmarks read by name (sclcoder.eval.metrics computes them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Result(BaseModel):
    """A metric's typed result: what report.json holds and what the demo, task_eval and the benchmarks read."""

    model_config = ConfigDict(extra="forbid")


class Scores(Result):
    """Micro precision, recall and F1 with the counts behind them."""

    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    predicted: int
    actual: int


class Averages(Result):
    """Per-code scores averaged over `codes` codes (macro)."""

    precision: float
    recall: float
    f1: float
    codes: int


class SubsetScores(Scores):
    codes: int


class CodeRow(Scores):
    code: str
    description: str | None
    support: int
    seen_in_training: bool | None = None


class CodeMetrics(Result):
    notes: int
    notes_without_prediction: list[str]
    micro: Scores
    macro_over_gold_codes: Averages
    macro_over_gold_and_predicted_codes: Averages
    per_code: list[CodeRow]
    micro_seen_codes: SubsetScores | None = None
    micro_unseen_codes: SubsetScores | None = None


class EvidenceMetrics(Result):
    """The four MDACE evidence metrics, pooled over `groups` groups (admissions, or notes)."""

    span_exact: Scores
    span_position_independent: Scores
    token_exact: Scores
    token_position_independent: Scores
    groups: int


class TokenAgreement(Result):
    precision: float
    recall: float
    f1: float
    pairs: int
    span_recall: float
    gold_spans: int


class Plausibility(Result):
    correct_codes: TokenAgreement
    all_gold_codes: TokenAgreement


class MatchCount(Result):
    count: int
    share: float


class MatchRow(Result):
    pairs: int
    empty: MatchCount
    exact: MatchCount
    proximate: MatchCount
    partial: MatchCount
    no_match: MatchCount


class MatchTypes(Result):
    overall: MatchRow
    per_code: dict[str, MatchRow]
