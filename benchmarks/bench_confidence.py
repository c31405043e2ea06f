"""Per-code confidence and evidence support, measured: the demo adapter predicts validation notes, `eval` chooses
on them the confidence threshold and the support threshold that maximise codes micro F1, and the test splits are
scored without a threshold and with each. Both thresholds are applied to the same predictions (greedy decoding:
predicting again with `--min-confidence` writes the same codes and withholds those below it), so the rows of a
split differ by the threshold alone.

Time: confidences come with the decoding (the token log-probabilities vLLM returns), so they cost nothing
separable. Support is a second engine call after the decoding (one prefill per code); it is timed apart, on the
same engine and the same lines, against the predict that made them."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from common import DEMO, DEMO_ADAPTER, RUNS, table

from sclcoder.artifacts import open_adapter
from sclcoder.data.corpus_folder import UNSEEN_SPLIT, read_demo
from sclcoder.data.documents import read_documents, write_documents
from sclcoder.eval.evaluate import run_eval
from sclcoder.files import write_text_atomic
from sclcoder.infer.coder import NoteCoder
from sclcoder.infer.predict import predict
from sclcoder.infer.predictions import CodePrediction, PredictionLine, read_predictions
from sclcoder.infer.settings import engine_for, predict_settings
from sclcoder.infer.support import with_support

NOTES = {"val": 12, "test": 12, UNSEEN_SPLIT: 8}
"""Notes predicted per split: a corpus v5 note costs ~20 s to predict on 2 AVX2 cores."""


def _write(lines: list[PredictionLine], target: Path) -> None:
    target.write_text("".join(json.dumps(x.to_json()) + "\n" for x in lines), encoding="utf-8")


def _withhold(lines: list[PredictionLine], target: Path, score: str, threshold: float) -> None:
    """The same predictions with codes whose `score` is below `threshold` withheld."""

    def keeps(code: CodePrediction) -> bool:
        value = getattr(code, score)
        return value is None or value >= threshold

    out = []
    for line in lines:
        keep = [c for c in line.codes if keeps(c)]
        update = {"codes": keep, "withheld": [*line.withheld, *(c for c in line.codes if not keeps(c))]}
        if score == "confidence":
            update["min_confidence"] = threshold
        out.append(line.model_copy(update=update))
    _write(out, target)


def _caught(lines: list[PredictionLine], gold: dict[str, set[str]], threshold: float) -> tuple[int, int, int, int]:
    """Predicted codes not in the gold (spurious) and in it (correct), and how many of each support < threshold."""
    spurious = correct = caught = dropped = 0
    for line in lines:
        for code in line.codes:
            low = (code.support or 0.0) < threshold
            if code.code in gold[line.id]:
                correct, dropped = correct + 1, dropped + low
            else:
                spurious, caught = spurious + 1, caught + low
    return spurious, caught, correct, dropped


def _auc(pairs: list[tuple[float, bool]]) -> float:
    """Probability that a correct code scores above a spurious one (ties count half): how well a score ranks."""
    right = [s for s, ok in pairs if ok]
    wrong = [s for s, ok in pairs if not ok]
    if not right or not wrong:
        return float("nan")
    return sum((r > w) + 0.5 * (r == w) for r in right for w in wrong) / (len(right) * len(wrong))


def _flag_threshold(pairs: list[tuple[float, bool]]) -> float:
    """The support below which codes are flagged, chosen to catch the largest share of spurious codes net of
    the share of correct codes flagged with them (Youden's J); ties go to the lower threshold."""
    right = [s for s, ok in pairs if ok]
    wrong = [s for s, ok in pairs if not ok]

    def net(t: float) -> float:
        return sum(s < t for s in wrong) / max(1, len(wrong)) - sum(s < t for s in right) / max(1, len(right))

    return max(sorted({s for s, _ in pairs}), key=lambda t: (net(t), -t))


def _pairs(lines: list[PredictionLine], gold: dict[str, set[str]], score: str) -> list[tuple[float, bool]]:
    return [(getattr(c, score) or 0.0, c.code in gold[line.id]) for line in lines for c in line.codes]


def _predict(adapter_dir: Path, corpus: Path, out: Path) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Predict each split, then score the support of its codes; seconds of each. A split already predicted
    with this adapter (its support file and timing on disk) is kept: the bench resumes split by split."""
    adapter = open_adapter(adapter_dir)
    identity = hashlib.sha256((adapter.path / "sclcoder.json").read_bytes()).hexdigest()
    timing_file = out / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    if timing.get("adapter") != identity:
        timing = {"adapter": identity}
    todo = [s for s in NOTES if s not in timing or not (out / f"{s}-support.jsonl").exists()]
    if todo:
        settings = predict_settings(adapter)
        renderer = NoteCoder(adapter, settings).renderer
        engine = engine_for(adapter, settings)
        try:
            for split in todo:
                notes = out / f"{split}-notes.jsonl"
                write_documents(notes, read_demo(corpus, split=split)[: NOTES[split]])  # gold travels with them
                started = time.perf_counter()
                predict(
                    notes, out / f"{split}.jsonl", adapter=adapter, settings=settings, engine=engine, overwrite=True
                )
                predicted = time.perf_counter() - started
                lines = [line for _, line in read_predictions(out / f"{split}.jsonl")]
                started = time.perf_counter()
                _write(with_support(lines, renderer, engine, None), out / f"{split}-support.jsonl")
                timing[split] = [predicted, time.perf_counter() - started]
                write_text_atomic(timing_file, json.dumps(timing, indent=1))
        finally:
            engine.close()
    return {s: timing[s][0] for s in NOTES}, {s: timing[s][1] for s in NOTES}, [s for s in NOTES if s not in todo]


def run(adapter_dir: Path = DEMO_ADAPTER, corpus: Path = DEMO / "corpus") -> str:
    out = RUNS / "confidence"
    out.mkdir(parents=True, exist_ok=True)
    seconds, support_seconds, kept = _predict(adapter_dir, corpus, out)
    paths = {s: out / f"{s}-notes.jsonl" for s in NOTES}
    scored = {s: [line for _, line in read_predictions(out / f"{s}-support.jsonl")] for s in NOTES}
    golds = {s: {d.id: set(d.codes) for d in read_documents(paths[s])} for s in NOTES}
    validation = run_eval("jsonl", gold=paths["val"], predictions=out / "val-support.jsonl", output=out / "eval-val")
    assert validation.calibration is not None, "the predictions carry no confidence"
    assert validation.support is not None, "the predictions carry no support"
    threshold, support_threshold = validation.calibration.best_threshold, validation.support.best_threshold
    flag = _flag_threshold(_pairs(scored["val"], golds["val"], "support"))
    rows, bins, catches, ranks = [], [], [], []
    for split in NOTES:
        ranks.append(
            [split] + [f"{_auc(_pairs(scored[split], golds[split], score)):.2f}" for score in ("confidence", "support")]
        )
    for split in ("test", UNSEEN_SPLIT):
        gold = golds[split]
        _withhold(scored[split], out / f"{split}-confident.jsonl", "confidence", threshold)
        _withhold(scored[split], out / f"{split}-supported.jsonl", "support", support_threshold)
        variants = (
            ("none", out / f"{split}-support.jsonl"),
            (f"confidence >= {threshold:.3f}", out / f"{split}-confident.jsonl"),
            (f"support >= {support_threshold:.3f}", out / f"{split}-supported.jsonl"),
        )
        for label, preds in variants:
            report = run_eval("jsonl", gold=paths[split], predictions=preds, output=out / f"eval-{split}-{label[:4]}")
            micro, cal = report.codes.micro, report.calibration
            rows.append(
                [
                    split,
                    NOTES[split],
                    label,
                    f"{100 * micro.precision:.1f}",
                    f"{100 * micro.recall:.1f}",
                    f"{100 * micro.f1:.1f}",
                    micro.predicted,
                    f"{100 * cal.expected_calibration_error:.1f}" if cal else "n/a",
                    f"{100 * report.support.expected_calibration_error:.1f}" if report.support else "n/a",
                ]
            )
            if label == "none" and cal:
                bins += [
                    [split, f"{b.low:.1f}-{b.high:.1f}", b.codes, f"{b.mean_confidence:.2f}", f"{b.precision:.2f}"]
                    for b in cal.bins
                ]
        for label, t in ((f"{support_threshold:.3f} (best micro F1)", support_threshold), (f"{flag:.4f} (flag)", flag)):
            spurious, caught, correct, dropped = _caught(scored[split], gold, t)
            catches.append([split, label, spurious, caught, correct, dropped])
    cal, sup = validation.calibration, validation.support
    timing = ", ".join(
        f"{k} {seconds[k]:.0f} s + support {support_seconds[k]:.1f} s ({support_seconds[k] / seconds[k]:.2f}x)"
        for k in NOTES
    )
    return "\n".join(
        [
            "## Confidence and evidence support per code: calibration and thresholds chosen on validation",
            "",
            f"Adapter {adapter_dir} (the demo's), merged into its weights (vLLM in process). Notes predicted: "
            f"{NOTES} (the first of each split). Predict, then the support pass on the same engine and lines: "
            f"{timing}"
            + (f" (splits {', '.join(kept)} predicted by an earlier invocation, kept in {out})" if kept else "")
            + ". One run; small samples: read the direction, not the decimals.",
            "",
            f"Validation ({NOTES['val']} notes): confidence calibration error "
            f"{100 * cal.expected_calibration_error:.1f}, threshold maximising codes micro F1 **{threshold:.3f}** "
            f"(micro F1 {100 * cal.best_f1:.1f} there, "
            f"{100 * validation.codes_micro_f1:.1f} without); support calibration error "
            f"{100 * sup.expected_calibration_error:.1f}, best support threshold **{support_threshold:.3f}** "
            f"(micro F1 {100 * sup.best_f1:.1f}).",
            "",
            table(
                [
                    "split",
                    "notes",
                    "threshold",
                    "precision",
                    "recall",
                    "micro F1",
                    "codes predicted",
                    "confidence calibration error",
                    "support calibration error",
                ],
                rows,
            ),
            "",
            "How well each score ranks the codes the model wrote (AUC: the probability that a correct code scores "
            "above a spurious one; 0.5 is chance):",
            "",
            table(["split", "confidence AUC", "support AUC"], ranks),
            "",
            "Support as a flag for the coder: codes below a support threshold, chosen on validation either to "
            "maximise micro F1 or to catch the most spurious codes net of the correct ones flagged with them "
            "(Youden's J), on the test splits: spurious codes (not in the gold standard) caught, and correct codes "
            "flagged too:",
            "",
            table(["split", "support threshold", "spurious codes", "caught", "correct codes", "flagged"], catches),
            "",
            "Reliability of the confidences on the test splits (without a threshold): for each bin, how many codes "
            "the model wrote, their mean confidence and the share of them in the gold standard:",
            "",
            table(["split", "confidence", "codes", "mean confidence", "precision"], bins),
        ]
    )


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    print(run(*args))
