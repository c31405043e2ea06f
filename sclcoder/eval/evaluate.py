"""`sclcoder eval`: every metric of `metrics` over gold and predictions (read by `gold`) in one report
(`report.EvalReport`: report.json, report.md, per_code.csv), plus faithfulness through the vLLM engine when
asked."""

from __future__ import annotations

import time
from os import PathLike
from pathlib import Path

from sclcoder import __version__, defaults
from sclcoder.artifacts import Adapter
from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.errors import SclError
from sclcoder.eval.calibration import calibration
from sclcoder.eval.faithfulness import Faithfulness
from sclcoder.eval.gold import Gold, MdaceLocation, gold_demo, gold_jsonl, gold_mdace, load_predictions
from sclcoder.eval.metrics import Prediction, code_metrics, match_types, mdace_evidence_metrics, plausibility
from sclcoder.eval.report import EvalReport, GoldSummary, NegatedMentions, PredictionsSummary, write_report
from sclcoder.files import check_writable
from sclcoder.recipe import MdaceFilters

# ---------------------------------------------------------------------------------------------- report


def evaluate(
    gold: Gold,
    predictions: list[Prediction],
    prediction_info: PredictionsSummary,
    *,
    seen_codes: set[str] | None = None,
    faithfulness: Faithfulness | None = None,
) -> EvalReport:
    started = time.perf_counter()
    system = gold.docs[0].code_system if gold.docs else CodeSystem.ICD10CM

    def describe(code: str) -> str | None:
        return codes_mod.describe(code, system)

    negated = None
    if gold.negated:
        preds = {p.id: p for p in predictions}
        coded = [
            (d.id, c)
            for d in gold.docs
            for c in gold.negated.get(d.id, set()) - d.codes
            if c in (preds.get(d.id) or Prediction(d.id, set())).codes
        ]
        total = sum(len(gold.negated.get(d.id, set()) - d.codes) for d in gold.docs)
        negated = NegatedMentions(conditions_mentioned_only_negated=total, coded_anyway=len(coded))
    report = EvalReport(
        sclcoder_version=__version__,
        benchmark=gold.benchmark,
        settings=gold.settings,
        gold=GoldSummary(
            notes=len(gold.docs),
            codes=sum(len(d.codes) for d in gold.docs),
            evidence_spans=sum(len(d.evidence) for d in gold.docs),
            evidence_spans_trimmed_to_nothing=sum(1 for d in gold.docs for e in d.evidence if e.begin == e.end),
            distinct_codes=len({c for d in gold.docs for c in d.codes}),
        ),
        predictions=prediction_info.model_copy(
            update={
                "notes": len(predictions),
                "evidence_spans_trimmed_to_nothing": sum(
                    1 for p in predictions for e in p.evidence if e.begin == e.end
                ),
            }
        ),
        codes=code_metrics(gold.docs, predictions, seen_codes=seen_codes, describe=describe),
        evidence_mdace=mdace_evidence_metrics(gold.docs, predictions, group=gold.group),
        plausibility=plausibility(gold.docs, predictions),
        evidence_match_types=match_types(gold.docs, predictions),
        negated_mentions=negated,
        calibration=calibration(gold.docs, predictions),
        support=calibration(gold.docs, predictions, score="support"),
        faithfulness=faithfulness,
    )
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def run_eval(
    benchmark: str,
    *,
    gold: str | PathLike[str] | None = None,
    predictions: str | PathLike[str] | None = None,
    adapter: Adapter | None = None,
    output: str | PathLike[str] = defaults.EVAL_DIR,
    mdace: MdaceLocation | None = None,
    filters: MdaceFilters | None = None,
    corpus: str | PathLike[str] = defaults.DEMO_CORPUS,
    demo_split: str = "test",
    faithfulness_pairs: int | None = None,
) -> EvalReport:
    """The whole `sclcoder eval`: gold, predictions (made first with `adapter`), metrics, report files.
    `filters` (categories, codes, clean-ups) apply to gold and predictions alike; faithfulness is scored
    on at most `faithfulness_pairs` (note, code) pairs when given."""
    filters = filters or MdaceFilters()
    check_writable(output, kind="dir")
    if benchmark == "mdace":
        if mdace is None:
            raise SclError("--benchmark mdace needs the MDACE checkout and NOTEEVENTS.csv")
        g = gold_mdace(mdace, filters)
    elif benchmark in ("rdiv10", "jsonl"):
        if gold is None:
            raise SclError(f"--benchmark {benchmark} needs --gold GOLD.jsonl")
        g = gold_jsonl(gold, benchmark, filters)
    elif benchmark == "demo":
        g = gold_demo(corpus, filters, split=demo_split)
    else:
        raise SclError(f"unknown benchmark {benchmark!r}")
    if not g.docs:
        raise SclError(
            "the gold standard holds no notes to score (with the split and filters given)",
            path=gold if benchmark in ("rdiv10", "jsonl") else None,
        )
    out = Path(output)
    seen = set(adapter.record.codes) if adapter is not None else None
    if predictions is None:
        if adapter is None:
            raise SclError("give --predictions, or --adapter to predict first")
        from sclcoder.data.documents import write_documents
        from sclcoder.infer.predict import predict

        notes = out / "gold-notes.jsonl"
        write_documents(notes, g.docs)
        predictions = out / "predictions.jsonl"
        predict(notes, predictions, adapter=adapter, overwrite=True)
    preds, info = load_predictions(predictions, g)
    faith = None
    if faithfulness_pairs is not None:
        if adapter is None:
            raise SclError("--faithfulness needs --adapter")
        faith = score_faithfulness(adapter, predictions, g, faithfulness_pairs)
    report = evaluate(g, preds, info, seen_codes=seen, faithfulness=faith)
    write_report(report, out)
    return report


def score_faithfulness(adapter: Adapter, predictions: str | PathLike[str], gold: Gold, limit: int) -> Faithfulness:
    from transformers import AutoTokenizer

    from sclcoder.eval.faithfulness import faithfulness, pairs_from_predictions
    from sclcoder.infer.coder import adapter_prompt
    from sclcoder.infer.predictions import read_predictions
    from sclcoder.infer.settings import engine_for, predict_settings
    from sclcoder.sft.prompts import Renderer

    if Path(predictions).is_dir():
        raise SclError("faithfulness needs our predictions JSONL (quotes and windows), not an MDACE directory")
    ad = adapter
    rows = [line for _, line in read_predictions(predictions)]
    pairs = pairs_from_predictions(rows, {d.id: d.text for d in gold.docs}, limit)
    renderer = Renderer(AutoTokenizer.from_pretrained(ad.path), adapter_prompt(ad, None, False), ad.record.code_system)
    # log-probabilities are scored without a LoRA request: the adapter merged into the weights
    engine = engine_for(ad, predict_settings(ad).model_copy(update={"merge_adapter": "always"}))
    try:
        return faithfulness(pairs, renderer, engine, None)
    finally:
        engine.close()
