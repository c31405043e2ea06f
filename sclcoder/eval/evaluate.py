"""`sclcoder eval`: every metric of `metrics` over gold and predictions (read by `gold`) in one report
(report.json, report.md, per_code.csv), plus faithfulness through the vLLM engine when asked."""

from __future__ import annotations

import time
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder import __version__, defaults
from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.errors import SclError
from sclcoder.eval.gold import Gold, MdaceLocation, gold_demo, gold_jsonl, gold_mdace, load_predictions
from sclcoder.eval.metrics import (
    MATCH_TYPES,
    Prediction,
    code_metrics,
    match_types,
    mdace_evidence_metrics,
    plausibility,
)
from sclcoder.files import check_writable, read_jsonl
from sclcoder.recipe import MdaceFilters

# ---------------------------------------------------------------------------------------------- report


def evaluate(
    gold: Gold,
    predictions: list[Prediction],
    prediction_info: dict[str, Any],
    *,
    seen_codes: set[str] | None = None,
    faithfulness: dict[str, Any] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    system = gold.docs[0].code_system if gold.docs else CodeSystem.ICD10CM

    def describe(code: str) -> str | None:
        return codes_mod.describe(code, system)

    report: dict[str, Any] = {
        "sclcoder_version": __version__,
        "benchmark": gold.benchmark,
        "settings": gold.settings,
        "gold": {
            "notes": len(gold.docs),
            "codes": sum(len(d.codes) for d in gold.docs),
            "evidence_spans": sum(len(d.evidence) for d in gold.docs),
            "evidence_spans_trimmed_to_nothing": sum(1 for d in gold.docs for e in d.evidence if e.begin == e.end),
            "distinct_codes": len({c for d in gold.docs for c in d.codes}),
        },
        "predictions": prediction_info
        | {
            "notes": len(predictions),
            "evidence_spans_trimmed_to_nothing": sum(1 for p in predictions for e in p.evidence if e.begin == e.end),
        },
        "codes": code_metrics(gold.docs, predictions, seen_codes=seen_codes, describe=describe),
        "evidence_mdace": mdace_evidence_metrics(gold.docs, predictions, group=gold.group),
        "plausibility": plausibility(gold.docs, predictions),
        "evidence_match_types": match_types(gold.docs, predictions),
    }
    if gold.negated:
        preds = {p.id: p for p in predictions}
        coded = [
            (d.id, c)
            for d in gold.docs
            for c in gold.negated.get(d.id, set()) - d.codes
            if c in (preds.get(d.id) or Prediction(d.id, set())).codes
        ]
        total = sum(len(gold.negated.get(d.id, set()) - d.codes) for d in gold.docs)
        report["negated_mentions"] = {"conditions_mentioned_only_negated": total, "coded_anyway": len(coded)}
    if faithfulness is not None:
        report["faithfulness"] = faithfulness
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def write_report(report: dict[str, Any], out_dir: str | PathLike[str]) -> Path:
    """report.json (every number and the settings), report.md and per_code.csv, each written atomically."""
    import csv
    import io

    from sclcoder.files import write_json_atomic, write_text_atomic

    out = Path(out_dir)
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", markdown(report))
    buf = io.StringIO()
    rows = report["codes"]["per_code"]
    fields = ["code", "description", "support", "predicted", "tp", "fp", "fn", "precision", "recall", "f1"]
    if rows and "seen_in_training" in rows[0]:
        fields.append("seen_in_training")
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "per_code.csv", buf.getvalue())
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def headline(report: dict[str, Any]) -> list[tuple[str, str]]:
    c, e, pl = report["codes"], report["evidence_mdace"], report["plausibility"]
    rows = [
        (
            "codes micro P / R / F1",
            f"{_pct(c['micro']['precision'])} / {_pct(c['micro']['recall'])} / {_pct(c['micro']['f1'])}",
        ),
        ("codes macro F1 (over gold codes)", _pct(c["macro_over_gold_codes"]["f1"])),
        ("codes macro F1 (over gold ∪ predicted codes)", _pct(c["macro_over_gold_and_predicted_codes"]["f1"])),
    ]
    for m, label in (
        ("span_exact", "exact span"),
        ("span_position_independent", "position-independent span"),
        ("token_exact", "exact token"),
        ("token_position_independent", "position-independent token"),
    ):
        rows.append((f"evidence F1, {label} (MDACE)", _pct(e[m]["f1"])))
    rows.append(("plausibility token F1, correct codes", _pct(pl["correct_codes"]["f1"])))
    rows.append(("plausibility token F1, all gold codes", _pct(pl["all_gold_codes"]["f1"])))
    rows.append(("evidence-span recall, all gold codes", _pct(pl["all_gold_codes"]["span_recall"])))
    t = report["evidence_match_types"]["overall"]
    rows.append(
        ("evidence match exact / proximate / partial / none / empty", " / ".join(_pct(t[k]["share"]) for k in
         ("exact", "proximate", "partial", "no_match", "empty")))
    )  # fmt: skip
    if "faithfulness" in report:
        f = report["faithfulness"]
        rows.append(
            ("faithfulness: sufficiency / comprehensiveness", f"{f['sufficiency']:.3f} / {f['comprehensiveness']:.3f}")
        )
    if "negated_mentions" in report:
        n = report["negated_mentions"]
        rows.append(
            ("negated-only conditions coded anyway", f"{n['coded_anyway']} of {n['conditions_mentioned_only_negated']}")
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    g, p = report["gold"], report["predictions"]
    settings = ", ".join(f"{k}={v}" for k, v in report["settings"].items())
    lines = [
        f"# sclcoder evaluation: {report['benchmark']}",
        "",
        f"Settings: {settings}.",
        "",
        f"Gold: {g['notes']} notes, {g['codes']} codes, {g['evidence_spans']} evidence spans "
        f"({g['evidence_spans_trimmed_to_nothing']} trimmed to nothing, kept as the MDACE script keeps them). "
        f"Predictions: {p.get('path')} ({p['notes']} notes, {p['evidence_spans_trimmed_to_nothing']} spans "
        "trimmed to nothing).",
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
    for m in ("span_exact", "span_position_independent", "token_exact", "token_position_independent"):
        r = report["evidence_mdace"][m]
        lines.append(
            f"| {m} | {r['predicted']} | {r['actual']} | {r['tp']} | {r['fp']} | {r['fn']} | "
            f"{_pct(r['precision'])} | {_pct(r['recall'])} | {_pct(r['f1'])} |"
        )
    types = report["evidence_match_types"]
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
    for code, row in [("all", types["overall"]), *types["per_code"].items()]:
        cells = " | ".join(f"{row[k]['count']} ({_pct(row[k]['share'])}%)" for k in MATCH_TYPES)
        lines.append(f"| {code} | {row['pairs']} | {cells} |")
    lines.append("")
    return "\n".join(lines)


def run_eval(
    benchmark: str,
    *,
    gold: str | PathLike[str] | None = None,
    predictions: str | PathLike[str] | None = None,
    adapter: str | PathLike[str] | None = None,
    output: str | PathLike[str] = "runs/eval",
    mdace: MdaceLocation | None = None,
    filters: MdaceFilters | None = None,
    corpus: str | PathLike[str] = defaults.DEMO_CORPUS,
    demo_split: str = "test",
    faithfulness_pairs: int | None = None,
) -> dict[str, Any]:
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
    out = Path(output)
    seen = None
    if adapter is not None:
        from sclcoder.artifacts import open_adapter

        seen = set(open_adapter(adapter).record.codes)
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


def score_faithfulness(
    adapter: str | PathLike[str], predictions: str | PathLike[str], gold: Gold, limit: int
) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from sclcoder.artifacts import open_adapter
    from sclcoder.eval.faithfulness import faithfulness, pairs_from_predictions
    from sclcoder.infer.engine import engine_for, predict_settings
    from sclcoder.infer.predict import adapter_prompt
    from sclcoder.sft.prompts import Renderer

    if Path(predictions).is_dir():
        raise SclError("faithfulness needs our predictions JSONL (quotes and windows), not an MDACE directory")
    ad = open_adapter(adapter)
    rows = [row for _, row in read_jsonl(predictions)]
    pairs = pairs_from_predictions(rows, {d.id: d.text for d in gold.docs}, limit)
    renderer = Renderer(AutoTokenizer.from_pretrained(ad.path), adapter_prompt(ad, None, False), ad.record.code_system)
    # log-probabilities are scored without a LoRA request: the adapter merged into the weights
    engine = engine_for(ad, predict_settings(ad).model_copy(update={"merge_adapter": "always"}))
    try:
        return faithfulness(pairs, renderer, engine, None)
    finally:
        engine.close()
