"""`sclcoder eval`: gold from a benchmark (MDACE, RD-IV-10 JSONL, the demo corpus, or any gold JSONL),
predictions from our JSONL or from MDACE-layout directories, every metric of `metrics` in one report.

Both prediction formats become the same `Prediction` objects read against the gold notes' text, so the
MDACE authors' baselines and our models are scored by the same code.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder import __version__, defaults
from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document, Evidence, clean_evidence, read_documents
from sclcoder.data.readers import DISCHARGE, read_mdace
from sclcoder.errors import SclError, Skips
from sclcoder.eval.metrics import Prediction, code_metrics, mdace_evidence_metrics, plausibility
from sclcoder.files import read_jsonl

CODEABLE = ("Discharge summary", "Radiology", "Physician")
"""The MDACE authors' "all codeable notes" setting."""


@dataclass
class Gold:
    benchmark: str
    docs: list[Document]
    group: Callable[[Document], str] | None
    settings: dict[str, Any]
    negated: dict[str, set[str]] = field(default_factory=dict)
    """Demo corpus only: note id -> codes mentioned there only in negated or family context."""


# ------------------------------------------------------------------------------------------------ gold


def _cleanups(docs: list[Document], trim: bool, merge_adjacent: bool) -> list[Document]:
    return [clean_evidence(doc, trim=trim, merge_adjacent=merge_adjacent) for doc in docs]


def diagnoses_only(docs: list[Document]) -> list[Document]:
    out = []
    for d in docs:
        keep = d.diagnosis_codes
        out.append(Document(d.id, d.text, keep, d.code_system, [e for e in d.evidence if e.code in keep], d.meta))
    return out


def gold_mdace(
    mdace_dir: str | PathLike[str],
    noteevents: str | PathLike[str],
    *,
    split: str = defaults.MDACE_TEST_SPLIT,
    icd: int = 10,
    setting: str = "Inpatient",
    all_codeable: bool = False,
    with_procedures: bool = False,
    trim: bool = False,
    merge_adjacent: bool = False,
) -> Gold:
    root = Path(mdace_dir)
    annotations = root / "data" / setting / f"ICD-{icd}"
    split_file = Path(split) if Path(split).suffix == ".csv" else root / "splits" / setting / f"{split}.csv"
    categories = CODEABLE if all_codeable else (DISCHARGE,)
    docs = read_mdace(
        annotations,
        noteevents,
        split=split_file,
        categories=categories,
        with_procedures=with_procedures,
        trim=trim,
        merge_adjacent=merge_adjacent,
        code_system="icd10cm" if icd == 10 else "icd9cm",
    )
    settings = {
        "mdace_dir": str(root),
        "split": split_file.stem,
        "icd": icd,
        "setting": setting,
        "categories": list(categories),
        "with_procedures": with_procedures,
        "trim": trim,
        "merge_adjacent": merge_adjacent,
        "grouping": "admission",
    }
    return Gold("mdace", docs, lambda d: str(d.meta["hadm_id"]), settings)


def gold_jsonl(
    path: str | PathLike[str],
    benchmark: str = "jsonl",
    *,
    trim: bool = False,
    merge_adjacent: bool = False,
    with_procedures: bool = False,
) -> Gold:
    docs = list(read_documents(path))
    if not with_procedures:
        docs = diagnoses_only(docs)
    docs = _cleanups(docs, trim, merge_adjacent)
    settings = {
        "gold": str(path),
        "trim": trim,
        "merge_adjacent": merge_adjacent,
        "with_procedures": with_procedures,
        "grouping": "note",
    }
    return Gold(benchmark, docs, None, settings)


def gold_demo(
    corpus: str | PathLike[str] = defaults.DEMO_CORPUS, *, trim: bool = False, merge_adjacent: bool = False
) -> Gold:
    from sclcoder.data.demo import read_demo

    docs = _cleanups(read_demo(corpus, split="test"), trim, merge_adjacent)
    negated: dict[str, set[str]] = {}
    path = Path(corpus) / "negated_mentions.jsonl"
    if path.exists():
        for _, row in read_jsonl(path):
            negated.setdefault(str(row["note_id"]), set()).add(row["code"])
    settings = {
        "corpus": str(corpus),
        "split": "test",
        "trim": trim,
        "merge_adjacent": merge_adjacent,
        "grouping": "note",
    }
    return Gold("demo", docs, None, settings, negated)


# ----------------------------------------------------------------------------------------- predictions


def _clean_prediction(doc: Document, pred: Prediction, trim: bool, merge_adjacent: bool) -> Prediction:
    if not (trim or merge_adjacent) or not pred.evidence:
        return pred
    tmp = Document(
        doc.id, doc.text, set(pred.codes) | {e.code for e in pred.evidence}, doc.code_system, list(pred.evidence)
    )
    tmp = _cleanups([tmp], trim, merge_adjacent)[0]
    return Prediction(pred.id, pred.codes, tmp.evidence)


def predictions_jsonl(path: str | PathLike[str], gold: Gold) -> tuple[list[Prediction], dict[str, Any]]:
    """Our predictions JSONL; every predicted code counts (invalid ones are simply wrong), evidence that
    could not be aligned has no offsets and so no place in span metrics."""
    by_id = {d.id: d for d in gold.docs}
    preds, matches = [], Counter()
    for lineno, row in read_jsonl(path, what="predictions file"):
        if "id" not in row or not isinstance(row.get("codes"), list):
            raise SclError("not a predictions line (needs id and codes)", path=path, line=lineno)
        doc = by_id.get(str(row["id"]))
        codes, evidence = set(), []
        for item in row["codes"]:
            code = item.get("code")
            codes.add(code)
            for ev in item.get("evidence", []):
                matches[ev.get("match") or "unaligned"] += 1
                if ev.get("begin") is not None and doc is not None and 0 <= ev["begin"] < ev["end"] <= len(doc.text):
                    evidence.append(Evidence(ev["begin"], ev["end"], code))
        pred = Prediction(str(row["id"]), codes, sorted(set(evidence)))
        preds.append(
            _clean_prediction(doc, pred, gold.settings.get("trim", False), gold.settings.get("merge_adjacent", False))
            if doc
            else pred
        )
    return preds, {"format": "jsonl", "path": str(path), "evidence_alignment": dict(matches)}


def predictions_mdace_dir(
    path: str | PathLike[str], gold: Gold, noteevents: str | PathLike[str] | None = None
) -> tuple[list[Prediction], dict[str, Any]]:
    """MDACE-layout prediction JSONs (the authors' baselines), read against the notes' text: the gold notes',
    and NOTEEVENTS.csv for notes the coders left without evidence."""
    from sclcoder.data.readers import mdace_annotation_files, stream_noteevents

    texts = {int(d.meta.get("note_id", d.id)): d.text for d in gold.docs}
    s = gold.settings
    categories = s.get("categories", [DISCHARGE])
    wanted_cats = {c.lower() for c in categories}
    needed = set()
    for file in mdace_annotation_files(path):
        for note in json.loads(file.read_text(encoding="utf-8")).get("notes", []):
            if str(note.get("category", "")).lower() in wanted_cats and int(note["note_id"]) not in texts:
                needed.add(int(note["note_id"]))
    if needed and noteevents is not None:
        texts.update({row_id: row["TEXT"] for row_id, row in stream_noteevents(noteevents, needed)})
    system = gold.docs[0].code_system if gold.docs else CodeSystem.ICD10CM
    skips = Skips(allowed=True)
    docs = read_mdace(
        path,
        None,
        texts=texts,
        categories=categories,
        with_procedures=s.get("with_procedures", False),
        trim=s.get("trim", False),
        merge_adjacent=s.get("merge_adjacent", False),
        code_system=system,
        skips=skips,
    )
    preds = [Prediction(d.id, set(d.codes), list(d.evidence), d.text, str(d.meta["hadm_id"])) for d in docs]
    return preds, {"format": "mdace", "path": str(path), "notes_without_text": skips.count}


def load_predictions(
    path: str | PathLike[str], gold: Gold, noteevents: str | PathLike[str] | None = None
) -> tuple[list[Prediction], dict[str, Any]]:
    p = Path(path)
    if p.is_dir():
        return predictions_mdace_dir(p, gold, noteevents)
    return predictions_jsonl(p, gold)


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
            "distinct_codes": len({c for d in gold.docs for c in d.codes}),
        },
        "predictions": prediction_info | {"notes": len(predictions)},
        "codes": code_metrics(gold.docs, predictions, seen_codes=seen_codes, describe=describe),
        "evidence_mdace": mdace_evidence_metrics(gold.docs, predictions, group=gold.group),
        "plausibility": plausibility(gold.docs, predictions),
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
    lines = [
        f"# sclcoder evaluation: {report['benchmark']}",
        "",
        f"Gold: {report['gold']['notes']} notes, {report['gold']['codes']} codes, "
        f"{report['gold']['evidence_spans']} evidence spans. Predictions: {report['predictions'].get('path')} "
        f"({report['predictions']['notes']} notes).",
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
    lines += ["", "## Settings", "", "```json", json.dumps(report["settings"], indent=2), "```", ""]
    return "\n".join(lines)


def run_eval(
    benchmark: str,
    *,
    gold: str | PathLike[str] | None = None,
    predictions: str | PathLike[str] | None = None,
    adapter: str | PathLike[str] | None = None,
    output: str | PathLike[str] = "runs/eval",
    mdace_dir: str | PathLike[str] | None = None,
    noteevents: str | PathLike[str] | None = None,
    split: str = defaults.MDACE_TEST_SPLIT,
    icd: int = 10,
    setting: str = "Inpatient",
    all_codeable: bool = False,
    with_procedures: bool = False,
    trim: bool = False,
    merge_adjacent: bool = False,
    corpus: str | PathLike[str] = defaults.DEMO_CORPUS,
    faithfulness: bool = False,
    faithfulness_pairs: int = 200,
) -> dict[str, Any]:
    """The whole `sclcoder eval`: gold, predictions (made first with --adapter), metrics, report files."""
    if benchmark == "mdace":
        if mdace_dir is None or noteevents is None:
            raise SclError("--benchmark mdace needs --mdace-dir (the MDACE checkout) and --noteevents")
        g = gold_mdace(
            mdace_dir,
            noteevents,
            split=split,
            icd=icd,
            setting=setting,
            all_codeable=all_codeable,
            with_procedures=with_procedures,
            trim=trim,
            merge_adjacent=merge_adjacent,
        )
    elif benchmark in ("rdiv10", "jsonl"):
        if gold is None:
            raise SclError(f"--benchmark {benchmark} needs --gold GOLD.jsonl")
        g = gold_jsonl(gold, benchmark, trim=trim, merge_adjacent=merge_adjacent, with_procedures=with_procedures)
    elif benchmark == "demo":
        g = gold_demo(corpus, trim=trim, merge_adjacent=merge_adjacent)
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
    preds, info = load_predictions(predictions, g, noteevents)
    faith = None
    if faithfulness:
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
