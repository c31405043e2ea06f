"""SCL against document-only SFT in miniature (SmolLM2-135M, the demo corpus, CPU), measured as a paper would.

Both arms: the same base model, notes, windows, prompt, optimiser, step budget and example order (random:
length grouping gathers "no codes" answers into batches of their own and starves the document-only arm).
Each arm gets its own learning rate from one small grid, chosen on the validation notes by the task's own
metric (`task_eval`: codes micro F1, scored every EVAL_EVERY steps); the adapter kept is the run's best
validation step. The chosen setting then trains with more seeds, and only those final runs are scored on
test, once each, on two test splits: `test` (held-out admissions, phrasing shared with training) and
`test-unseen` (phrase-disjoint: every condition named only with forms no training note uses).

A third arm, SCL without synthesised spans, measures the synthesis component: both SCL arms target the codes
with fewer than RARE evidence spans in the training notes (the demo's tail), which the full SCL arm gets offline
synthesised spans for (code titles and inclusion terms, no LLM) and the other does not. Synthesis draws from
its own random stream, so both datasets hold the same other examples (a sampler over a set of another size
draws them in another order). The ablation trains at the learning rate chosen for SCL (it is an ablation of
that setting, not a tuned method), and its effect is read on those rare codes as well as on all codes.

Reported: mean and standard deviation over seeds; bootstrap 95% intervals of the difference in codes
micro F1 (seeds averaged inside each resample), resampling test notes, and test notes and seeds; validation
learning curves on one x-axis (optimizer tokens: prompt + answer, padding excluded); cost as optimizer tokens
and training time.
A run whose test predictions hold no code is flagged as failed, not averaged as a result.

It is a toy: 128-token windows, tens of steps, a 135M model. It says nothing on its own about the paper's
setting (full notes, Llama-3.1-8B), only whether the mechanism shows at this scale.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import RUNS, table

from sclcoder.artifacts import open_adapter
from sclcoder.backbones import resolve_model
from sclcoder.data.corpus_folder import UNSEEN_SPLIT, read_demo
from sclcoder.data.documents import write_documents
from sclcoder.defaults import DEMO_TEST_NOTES
from sclcoder.demo.conditions import CONDITIONS, says
from sclcoder.demo.corpus import ensure_demo
from sclcoder.eval.evaluate import evaluate
from sclcoder.eval.gold import gold_demo, load_predictions
from sclcoder.files import write_json_atomic
from sclcoder.infer.engine import VllmEngine
from sclcoder.infer.merge import merged_weights, peft_model
from sclcoder.infer.predict import predict
from sclcoder.infer.settings import base_engine, predict_settings
from sclcoder.recipe import PredictSection, load_recipe
from sclcoder.sft.build import build_dataset
from sclcoder.task_eval import train_and_select

ARMS = {"SCL": "recipes/smollm2_cpu.yaml", "document-only": "recipes/smollm2_cpu_docsft.yaml"}
ABLATION = "SCL without synthesis"  # trained at SCL's chosen learning rate
RECIPES = {**ARMS, ABLATION: ARMS["SCL"]}
RARE = 20  # data.synthesis.rare_threshold of both SCL arms: the demo's tail of codes, 8 of 47
ARM_OVERRIDES = {
    "SCL": [f"data.synthesis.rare_threshold={RARE}"],
    "document-only": [],
    ABLATION: [f"data.synthesis.rare_threshold={RARE}", "data.synthesis.offline_fallback=false"],
}
SLUG = {"SCL": "scl", "document-only": "document-only", ABLATION: "scl-nosynth"}
STEPS = 40
EVAL_EVERY = 10
VAL_NOTES = 8
GRID = (1e-3, 3e-3)  # learning rates, the same for both arms
SEEDS = (13, 14, 15)  # the first also serves the grid
BOOTSTRAP = 1000
SPLITS = ("test", UNSEEN_SPLIT)
TEST_NOTES = {"test": DEMO_TEST_NOTES}  # the demo's own test slice; every phrase-disjoint note
ROOT = RUNS / "scl"


class SharedEngine:
    """The experiment's one vLLM engine, started at its first use: every run's validation scorings and every
    test scoring take merged weights in turn (a start per run would cost ~20 s each)."""

    def __init__(self) -> None:
        self.engine: VllmEngine | None = None

    def get(self, model: str, settings: PredictSection) -> VllmEngine:
        if self.engine is None:
            self.engine = base_engine(model, settings)
        return self.engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def fit(arm: str, lr: float, seed: int, shared: SharedEngine) -> dict[str, Any]:
    """Build the arm's dataset and train it with task_eval; the run's record (kept on disk, reused)."""
    out = ROOT / f"{SLUG[arm]}-lr{lr:g}-seed{seed}"
    done = out / "fit.json"
    if done.exists():
        return json.loads(done.read_text())
    corpus = ensure_demo(ROOT / "corpus")
    recipe = load_recipe(
        RECIPES[arm],
        [
            *ARM_OVERRIDES[arm],
            f"train.output_dir={out / 'run'}",
            f"train.seed={seed}",
            f"data.seed={seed}",
            f"data.train=[{{demo: {{split: train, corpus: {corpus}}}}}]",
            f"data.validation=[{{demo: {{split: val, corpus: {corpus}}}}}]",
            "train.train_sampling_strategy=random",
            f"train.max_steps={STEPS}",
            f"train.learning_rate={lr}",
            f"train.save_steps={STEPS}",
            "train.logging_steps=5",
            f"task_eval.eval_steps={EVAL_EVERY}",
            f"task_eval.max_notes={VAL_NOTES}",
        ],
    )
    built = time.perf_counter()
    build_dataset(recipe, out / "run" / "dataset")
    synthesis = synthesis_record(out / "run" / "dataset")
    started = time.perf_counter()
    engine = shared.get(resolve_model(recipe.model.model_name_or_path), recipe.predict)
    result = train_and_select(recipe, overwrite=True, engine=engine)
    seconds = time.perf_counter() - started
    record = result.adapter.record
    history = record.task_eval["history"]
    selected = next(h for h in history if h["step"] == record.task_eval["selected_step"])
    row = {
        "arm": arm,
        "lr": lr,
        "seed": seed,
        "adapter": str(result.adapter_dir),
        "history": history,
        "selected_step": selected["step"],
        "validation_micro_f1": selected["codes_micro_f1"],
        "tokens_to_selected": selected["tokens"],
        "tokens_whole_run": history[-1]["tokens"],
        # the trainer's clock runs through the scorings too; they are not training
        "train_seconds_whole_run": record.metrics.get("train_runtime", seconds) - sum(h["seconds"] for h in history),
        "task_eval_seconds": sum(h["seconds"] for h in history),
        "fit_seconds": round(time.perf_counter() - built, 1),
        "examples": record.train_examples,
        "epochs_whole_run": STEPS * 4 / record.train_examples,
        "all_empty_batch_share": record.all_empty_batch_share,
        "empty_answer_share": record.empty_answer_share,
        "pad_share": record.pad_share,
        **synthesis,
    }
    write_json_atomic(done, row)
    return row


def synthesis_record(dataset_dir: Path) -> dict[str, Any]:
    """The codes synthesis targeted, the synthesised training examples, and how many of those quote a form
    held out for the phrase-disjoint test (code-system wording the test also uses: knowledge the component
    brings, not a leak from test notes, but it must be stated)."""
    from datasets import load_from_disk

    stats = json.loads((dataset_dir / "stats.json").read_text())
    rows = load_from_disk(str(dataset_dir / "hf"))["train"]
    texts = [r["text"] for r in rows if r["kind"] == "synthetic"]
    held_out = [n for c in CONDITIONS for n in c.unseen_names]
    quoting = sum(any(says(t, h) for h in held_out) for t in texts)
    return {"rare_codes": stats["synthesis"].get("targets", []), "synthetic": len(texts), "synthetic_held_out": quoting}


def score(runs: list[dict[str, Any]], shared: SharedEngine) -> list[dict[str, Any]]:
    """Test predictions of each run on both splits (vLLM, constrained as `predict` runs) and their scores.
    Kept on disk per run, reused."""
    corpus = ROOT / "corpus"
    results = []
    for run in runs:
        adapter = Path(run["adapter"])
        done = adapter.parent.parent / "test.json"
        if done.exists():
            results.append(json.loads(done.read_text()))
            continue
        ad = open_adapter(adapter)
        settings = predict_settings(ad)
        started = time.perf_counter()  # a start-up of the engine counts with the run that needed it
        engine = shared.get(ad.base_model, settings)
        engine.load_weights(merged_weights(peft_model(ad)))
        result: dict[str, Any] = {}
        for split in SPLITS:
            notes = ROOT / f"{split}-notes.jsonl"
            docs = read_demo(corpus, split=split)[: TEST_NOTES.get(split)]
            if not notes.exists():
                write_documents(notes, docs)
            preds_path = adapter.parent.parent / f"{split}.predictions.jsonl"
            predict(notes, preds_path, adapter=ad, settings=settings, engine=engine, overwrite=True)
            gold = gold_demo(corpus, split=split)
            gold = replace(gold, docs=gold.docs[: len(docs)])  # the notes predicted, in the split's order
            preds, info = load_predictions(preds_path, gold)
            report = evaluate(gold, preds, info, seen_codes=set(ad.record.codes))
            predicted = {p.id: sorted(p.codes) for p in preds}
            result[split] = {
                "notes": len(docs),
                "micro_f1": report.codes_micro_f1,
                "macro_f1": report.codes_macro_f1,
                "pi_token_f1": report.evidence_token_f1,
                "codes_predicted": sum(len(c) for c in predicted.values()),
                "per_note": {d.id: [sorted(d.codes), predicted.get(d.id, [])] for d in gold.docs},
            }
        result["seconds"] = round(time.perf_counter() - started, 1)
        write_json_atomic(done, result)
        results.append(result)
    return results


def micro_f1(per_note: list[tuple[list[str], list[str]]], codes: set[str] | None = None) -> float:
    """Codes micro F1 over notes, counting only `codes` when given (predictions of other codes are not
    false positives then)."""
    tp = fp = fn = 0
    for gold, pred in per_note:
        g, p = set(gold), set(pred)
        if codes is not None:
            g, p = g & codes, p & codes
        tp, fp, fn = tp + len(g & p), fp + len(p - g), fn + len(g - p)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def run_f1(test: dict[str, Any], split: str, codes: set[str] | None = None) -> float:
    """One scored run's codes micro F1 on a split, from its per-note codes (over `codes`, if given)."""
    return micro_f1(list(test[split]["per_note"].values()), codes)


def bootstrap_difference(
    a: list[dict],
    b: list[dict],
    split: str,
    rounds: int = BOOTSTRAP,
    codes: set[str] | None = None,
    seeds: bool = False,
) -> tuple[float, float]:
    """95% interval of mean-over-seeds micro F1 (over `codes`, if given) of arm a minus b, resampling test
    notes; with `seeds`, each arm's runs too, so that the interval also holds how much a run depends on its
    seed (which examples it draws, in which order), not only on which notes are scored."""
    notes = sorted(a[0][split]["per_note"])
    rng = random.Random(0)
    diffs = []

    def arm_f1(runs: list[dict], sample: list[str]) -> float:
        if seeds:
            runs = [rng.choice(runs) for _ in runs]
        return statistics.mean(micro_f1([r[split]["per_note"][n] for n in sample], codes) for r in runs)

    for _ in range(rounds):
        sample = [rng.choice(notes) for _ in notes]
        diffs.append(arm_f1(a, sample) - arm_f1(b, sample))
    diffs.sort()
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


def mean_sd(values: list[float]) -> str:
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, runs in curves.items():
        steps = [h["step"] for h in runs[0]["history"]]
        xs = [statistics.mean(next(h["tokens"] for h in r["history"] if h["step"] == s) for r in runs) for s in steps]
        ys = [[next(h["codes_micro_f1"] for h in r["history"] if h["step"] == s) for r in runs] for s in steps]
        mean = [100 * statistics.mean(y) for y in ys]
        sd = [100 * (statistics.stdev(y) if len(y) > 1 else 0.0) for y in ys]
        ax.plot(xs, mean, marker="o", label=f"{arm} (lr {runs[0]['lr']:g})")
        low = [m - s for m, s in zip(mean, sd, strict=True)]
        high = [m + s for m, s in zip(mean, sd, strict=True)]
        ax.fill_between(xs, low, high, alpha=0.2)
    ax.set_xlabel("optimizer tokens (prompt + answer, no padding)")
    ax.set_ylabel("validation codes micro F1")
    ax.set_title(f"mean ± sd over {len(SEEDS)} seeds, {VAL_NOTES} validation notes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compute_minutes() -> float:
    """What the whole experiment costs from scratch, from the records of its runs (they are kept on disk and
    reused, so an invocation may take much less)."""
    fits = [json.loads(p.read_text()) for p in ROOT.glob("*/fit.json")]
    tests = [json.loads(p.read_text()) for p in ROOT.glob("*/test.json")]
    return (sum(r["fit_seconds"] for r in fits) + sum(t["seconds"] for t in tests)) / 60


def run() -> tuple[str, dict[str, Any]]:
    started = time.perf_counter()
    shared = SharedEngine()
    try:
        grid = {arm: {lr: fit(arm, lr, SEEDS[0], shared) for lr in GRID} for arm in ARMS}
        chosen = {arm: max(GRID, key=lambda lr: (grid[arm][lr]["validation_micro_f1"], -lr)) for arm in ARMS}
        finals = {arm: [grid[arm][chosen[arm]], *(fit(arm, chosen[arm], s, shared) for s in SEEDS[1:])] for arm in ARMS}
        chosen[ABLATION] = chosen["SCL"]
        finals[ABLATION] = [fit(ABLATION, chosen["SCL"], s, shared) for s in SEEDS]
        scored = score([r for runs in finals.values() for r in runs], shared)
    finally:
        shared.close()
    tests = {arm: scored[i * len(SEEDS) : (i + 1) * len(SEEDS)] for i, arm in enumerate(finals)}
    failed = {arm: [t[s]["codes_predicted"] == 0 for t in tests[arm] for s in SPLITS] for arm in finals}
    rare = set(finals["SCL"][0]["rare_codes"])
    minutes = (time.perf_counter() - started) / 60
    compute = compute_minutes()

    grid_rows = [
        [
            arm,
            f"{lr:g}",
            r["selected_step"],
            f"{100 * r['validation_micro_f1']:.1f}",
            "chosen" if lr == chosen[arm] else "",
        ]
        for arm in ARMS
        for lr, r in grid[arm].items()
    ]
    score_rows = []
    for arm in finals:
        for split in SPLITS:
            ok = [t[split] for t in tests[arm] if t[split]["codes_predicted"]]
            score_rows.append(
                [
                    arm,
                    split,
                    f"{len(ok)} of {len(tests[arm])}",
                    mean_sd([t["micro_f1"] for t in ok]),
                    mean_sd([t["macro_f1"] for t in ok]),
                    mean_sd([t["pi_token_f1"] for t in ok]),
                ]
            )
    ci_rows = []
    for a, b, codes in (("SCL", "document-only", None), ("SCL", ABLATION, None), ("SCL", ABLATION, rare)):
        for split in SPLITS:
            low, high = bootstrap_difference(tests[a], tests[b], split, codes=codes)
            low2, high2 = bootstrap_difference(tests[a], tests[b], split, codes=codes, seeds=True)
            diff = statistics.mean(run_f1(t, split, codes) for t in tests[a]) - statistics.mean(
                run_f1(t, split, codes) for t in tests[b]
            )
            which = "all codes" if codes is None else f"the {len(codes)} rare codes"
            ci_rows.append(
                [
                    f"{a} − {b}",
                    which,
                    split,
                    f"{100 * diff:+.1f}",
                    f"[{100 * low:+.1f}, {100 * high:+.1f}]",
                    f"[{100 * low2:+.1f}, {100 * high2:+.1f}]",
                ]
            )
    rare_rows = [
        [
            arm,
            split,
            sum(len(set(g) & rare) for g, _ in tests[arm][0][split]["per_note"].values()),
            mean_sd([run_f1(t, split, rare) for t in tests[arm]]),
        ]
        for arm in finals
        for split in SPLITS
    ]
    cost_rows = [
        [
            arm,
            f"{statistics.mean(r['tokens_to_selected'] for r in runs):,.0f}",
            f"{statistics.mean(r['tokens_whole_run'] for r in runs):,.0f}",
            f"{statistics.mean(r['train_seconds_whole_run'] for r in runs):.0f}",
            f"{statistics.mean(r['epochs_whole_run'] for r in runs):.2f}",
            f"{100 * statistics.mean(r['all_empty_batch_share'] for r in runs):.1f}%",
            f"{100 * statistics.mean(r['empty_answer_share'] for r in runs):.1f}%",
            f"{100 * statistics.mean(r['pad_share'] for r in runs):.0f}%",
        ]
        for arm, runs in finals.items()
    ]
    curve_rows = []
    for arm, runs in finals.items():
        for h0 in runs[0]["history"]:
            same = [next(h for h in r["history"] if h["step"] == h0["step"]) for r in runs]
            curve_rows.append(
                [
                    arm,
                    h0["step"],
                    f"{statistics.mean(h['tokens'] for h in same):,.0f}",
                    mean_sd([h["codes_micro_f1"] for h in same]),
                    mean_sd([h["evidence_token_f1"] for h in same]),
                ]
            )
    synth = finals["SCL"][0]
    # the other benchmarks reuse one SCL adapter (the chosen setting, first seed) and the test notes
    link = ROOT / "run"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(finals["SCL"][0]["adapter"]).parent.resolve())
    png = Path(__file__).with_name("scl_learning_curves.png")
    plot(finals, png)
    summary = {"grid": grid, "chosen": chosen, "finals": finals, "tests": tests, "failed": failed}
    write_json_atomic(ROOT / "summary.json", summary)
    text = "\n".join(
        [
            "## SCL vs document-only SFT (miniature: SmolLM2-135M, demo corpus, CPU)",
            "",
            f"{STEPS} optimizer steps of 4 examples in random order for every run; validation every {EVAL_EVERY} "
            f"steps on {VAL_NOTES} validation notes (codes micro F1) picks the learning rate of each arm from "
            f"{', '.join(f'{x:g}' for x in GRID)} (seed {SEEDS[0]}) and the step kept in every run; the chosen "
            f"setting trains with seeds {', '.join(map(str, SEEDS))} and each of those adapters is scored on test "
            f"once. {compute:.0f} min of compute from scratch ({minutes:.0f} min in this invocation, which reuses "
            "the runs kept on disk).",
            "",
            "Choice on validation (seed 13):",
            "",
            table(["arm", "learning rate", "best step", "validation micro F1", ""], grid_rows),
            "",
            "Test, mean ± sd over seeds (runs whose predictions hold no code are failed runs, left out and counted):",
            "",
            table(
                ["arm", "test split", "runs not failed", "codes micro F1", "codes macro F1", "evidence PI token F1"],
                score_rows,
            ),
            "",
            f"Difference in codes micro F1 between arms and its bootstrap 95% interval ({BOOTSTRAP} resamples, "
            "seeds averaged inside each): resampling the test notes only, and resampling each arm's seeds as "
            "well (with 3 seeds a coarse estimate, but the runs' own variation is in it):",
            "",
            table(
                ["arms", "codes", "test split", "difference", "95% interval, notes", "95% interval, notes and seeds"],
                ci_rows,
            ),
            "",
            "Cost, mean over seeds (tokens: prompt + answer the optimizer saw, padding excluded):",
            "",
            table(
                [
                    "arm",
                    "tokens to the kept step",
                    "tokens, whole run",
                    "train seconds, whole run",
                    "epochs, whole run",
                    'all-"no codes" batches',
                    '"no codes" answers',
                    "padding",
                ],
                cost_rows,
            ),
            "",
            f"Synthesis: `rare_threshold={RARE}` makes {len(rare)} codes rare in the training notes "
            f"({', '.join(sorted(rare))}); the SCL arm trains on {synth['synthetic']} offline synthesised spans for "
            f"them, {synth['synthetic_held_out']} of which quote a form the phrase-disjoint split holds out (the "
            "code system's own wording, which that split also uses). Codes micro F1 on those rare codes only "
            "(gold: their mentions in the scored test notes):",
            "",
            table(["arm", "test split", "gold rare codes", "rare-code micro F1"], rare_rows),
            "",
            "Codes never seen in training (the component's other use, `data.synthesis.codes`) are not measured: "
            "every demo code occurs in the training notes.",
            "",
            f"Validation learning curves (![curves]({png.name})), mean ± sd over seeds at each scored step; "
            "equal optimizer tokens are read across arms on this x-axis, equal steps down the rows:",
            "",
            table(
                ["arm", "step", "optimizer tokens", "validation micro F1", "validation evidence token F1"], curve_rows
            ),
        ]
    )
    return text, summary


if __name__ == "__main__":
    sys.stdout.write(run()[0] + "\n")
