"""The coder's loop, measured (#27): what a coder's corrections buy, against the same notes given as fully
annotated documents, at equal optimizer tokens.

A simulated coder (the gold standard as oracle) reviews the demo adapter's predictions on rounds of notes from
a pool the adapter never trained on (validation notes past the first 12, which chose the thresholds elsewhere):
it accepts each right code, keeping the quotes that overlap the gold evidence and dropping the others (if none
does, it selects the gold evidence instead), rejects each wrong code, adds each missed code with up to two gold
spans, and marks the note done. After each round `train --from` continues the arm's last adapter on the round's
corrections for a fixed number of steps (STEPS), replaying half from the parent's data. The documents arm
continues its own last adapter on the same notes as gold documents (windowed as the demo recipe keeps them), for
as many optimizer tokens as the corrections run used. Test notes
(the first of the test split) are scored after every round. Each seed shuffles the pool and trains with its
own seed; all arms share one vLLM engine that takes each adapter's merged weights.

Resumable round by round: every finished (seed, round, arm) is kept in runs/bench/feedback/results.json.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from common import DEMO, RUNS, table

from sclcoder.artifacts import open_adapter
from sclcoder.data.corpus_folder import read_demo
from sclcoder.data.corrections import Correction, FinalCode, Span
from sclcoder.data.documents import Document, write_documents
from sclcoder.eval.evaluate import run_eval
from sclcoder.files import write_json_atomic
from sclcoder.infer.merge import merged_weights, peft_model
from sclcoder.infer.predict import predict
from sclcoder.infer.predictions import PredictionLine, read_predictions
from sclcoder.infer.settings import base_engine, predict_settings
from sclcoder.recipe import load_recipe
from sclcoder.train.trainer import train

ROUNDS, PER_ROUND, TEST_NOTES, SEEDS = 3, 10, 8, (1, 2, 3)
STEPS = 30
"""Optimizer steps of each corrections continuation (the demo adapter itself had 70): a fixed budget per round.
Two passes over a round's dataset were 425 steps (30 min on 2 AVX2 cores), most of them on the document windows
of the notes marked done."""
OUT = RUNS / "feedback"


def coder(line: PredictionLine, gold: Document) -> tuple[list[Correction], int]:
    """The simulated coder's decisions on one note, and its count of actions (a click or a selection each)."""
    stamp = {"note_id": gold.id, "coder": "oracle", "adapter": line.adapter}
    by_code = gold.evidence_by_code()

    def span(b: int, e: int) -> Span:
        return Span(begin=b, end=e, text=gold.text[b:e])

    out: list[Correction] = []
    actions = 0
    final = []
    for c in line.codes:
        placed = [(q.begin, q.end) for q in c.evidence if q.begin is not None and q.end is not None]
        if c.code not in gold.codes:
            out.append(Correction(action="reject_code", code=c.code, spans=[span(*p) for p in placed], **stamp))
            actions += 1
            continue
        truth = [(ev.begin, ev.end) for ev in by_code.get(c.code, [])]
        good = [p for p in placed if any(p[0] < e and b < p[1] for b, e in truth)]
        for p in placed:
            if p not in good:
                out.append(Correction(action="reject_span", code=c.code, spans=[span(*p)], **stamp))
                actions += 1
        kept = good or truth[:2]
        for p in [] if good else kept:  # nothing of the model's overlapped: the coder selects the evidence
            out.append(Correction(action="add_span", code=c.code, spans=[span(*p)], **stamp))
            actions += 1
        out.append(Correction(action="accept_code", code=c.code, spans=[span(*p) for p in kept], **stamp))
        actions += 1
        final.append(FinalCode(code=c.code, spans=[span(*p) for p in kept]))
    predicted = {c.code for c in line.codes}
    for code in sorted(gold.codes - predicted):
        spans = [span(ev.begin, ev.end) for ev in by_code.get(code, [])[:2]]
        out.append(Correction(action="add_code", code=code, spans=spans, **stamp))
        actions += 1 + len(spans)  # the search, then each selection
        final.append(FinalCode(code=code, spans=spans))
    out.append(Correction(action="done", final=final, **stamp))
    return out, actions + 1


def _recipe(path: Path, parent: Path, train_sources: list[dict], out: Path, seed: int, steps: int, **data: Any) -> Path:
    base = open_adapter(parent).record.recipe
    recipe = {
        "model": base["model"],
        "windows": base["windows"],
        "data": {
            "train": train_sources,
            "validation": [],
            "validation_fraction": 0.0,
            "span": base["data"]["span"],
            "document": base["data"]["document"],
            "synthesis": {"offline_fallback": False},
            "seed": seed,
            **data,
        },
        "train": {**base["train"], "output_dir": str(out), "max_steps": steps, "seed": seed, "eval_strategy": "no"},
        "parent": {"adapter": str(parent), "replay": 0.5},
    }
    recipe["train"].pop("torch_threads", None)
    path.write_text(yaml.safe_dump(recipe))
    return path


def _train(recipe_path: Path, token_budget: int | None) -> tuple[Path, int]:
    """Continue training for STEPS; with a token budget, as many steps as spend it at this dataset's mean example
    length."""
    from sclcoder.sft.build import build_dataset

    recipe = load_recipe(recipe_path)
    built = build_dataset(recipe, Path(recipe.train.output_dir) / "dataset", overwrite=True)
    n = built.stats["train"]["examples"]
    per_example = built.stats["train"]["tokens"] / max(1, n)
    batch = recipe.train.per_device_train_batch_size
    steps = max(1, round(token_budget / (per_example * batch))) if token_budget else STEPS
    recipe = load_recipe(recipe_path, [f"train.max_steps={steps}"])
    result = train(recipe, overwrite=True)
    return result.adapter_dir, result.adapter.record.tokens_seen


def _score(engine: Any, adapter_dir: Path, notes: Path, out: Path) -> dict[str, float]:
    adapter = open_adapter(adapter_dir)
    engine.load_weights(merged_weights(peft_model(adapter)))
    settings = predict_settings(adapter)
    predict(notes, out, adapter=adapter, settings=settings, engine=engine, overwrite=True)
    report = run_eval("jsonl", gold=notes, predictions=out, output=out.with_suffix(".eval"))
    return {
        "micro_f1": 100 * report.codes_micro_f1,
        "macro_f1": 100 * report.codes_macro_f1,
        "evidence_f1": 100 * report.evidence_token_f1,
    }


def run(adapter_dir: Path = DEMO / "run" / "adapter", corpus: Path = DEMO / "corpus") -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    done_file = OUT / "results.json"
    results: dict[str, Any] = json.loads(done_file.read_text()) if done_file.exists() else {}
    pool = read_demo(corpus, split="val")[12 : 12 + ROUNDS * PER_ROUND]
    test_notes = OUT / "test-notes.jsonl"
    write_documents(test_notes, read_demo(corpus, split="test")[:TEST_NOTES])
    settings = predict_settings(open_adapter(adapter_dir))
    engine = base_engine(open_adapter(adapter_dir).base_model, settings)
    started = time.perf_counter()
    try:
        if "baseline" not in results:
            results["baseline"] = _score(engine, adapter_dir, test_notes, OUT / "baseline.jsonl")
            write_json_atomic(done_file, results)
        for seed in SEEDS:
            order = list(pool)
            random.Random(seed).shuffle(order)
            parents = {"coder": adapter_dir, "documents": adapter_dir}
            for r in range(ROUNDS):
                key = f"seed{seed}/round{r + 1}"
                run_dir = OUT / f"seed{seed}" / f"round{r + 1}"
                if key in results:
                    parents = {arm: Path(results[key][arm]["adapter"]) for arm in parents}
                    continue
                run_dir.mkdir(parents=True, exist_ok=True)
                chunk = order[r * PER_ROUND : (r + 1) * PER_ROUND]
                notes = run_dir / "pool-notes.jsonl"
                write_documents(notes, chunk)
                # the coder reviews what the coder arm's adapter predicts on this round's notes
                adapter = open_adapter(parents["coder"])
                engine.load_weights(merged_weights(peft_model(adapter)))
                preds = run_dir / "pool.predictions.jsonl"
                predict(
                    notes, preds, adapter=adapter, settings=predict_settings(adapter), engine=engine, overwrite=True
                )
                gold = {d.id: d for d in chunk}
                corrections, actions = [], 0
                for _, line in read_predictions(preds):
                    made, n = coder(line, gold[line.id])
                    corrections += made
                    actions += n
                fixes = run_dir / "corrections.jsonl"
                fixes.write_text("".join(c.line() for c in corrections))
                source = [{"corrections": {"file": str(fixes), "notes": str(notes)}}]
                recipe = _recipe(run_dir / "coder.yaml", parents["coder"], source, run_dir / "coder", seed, 1)
                coder_adapter, coder_tokens = _train(recipe, None)
                docs = [{"jsonl": str(notes)}]
                recipe = _recipe(
                    run_dir / "documents.yaml",
                    parents["documents"],
                    docs,
                    run_dir / "documents",
                    seed,
                    1,
                    span={"fraction": 0.0, "negative_rate": 0.0},
                    document={**open_adapter(adapter_dir).record.recipe["data"]["document"], "fraction": 1.0},
                )
                docs_adapter, docs_tokens = _train(recipe, coder_tokens)
                results[key] = {
                    "actions": actions,
                    "decisions": len(corrections),
                    "coder": {
                        "adapter": str(coder_adapter),
                        "tokens": coder_tokens,
                        **_score(engine, coder_adapter, test_notes, run_dir / "test-coder.jsonl"),
                    },
                    "documents": {
                        "adapter": str(docs_adapter),
                        "tokens": docs_tokens,
                        **_score(engine, docs_adapter, test_notes, run_dir / "test-documents.jsonl"),
                    },
                }
                write_json_atomic(done_file, results)
                parents = {"coder": coder_adapter, "documents": docs_adapter}
                print(f"{key}: {json.dumps(results[key])}", flush=True)
    finally:
        engine.close()
    return report(results, time.perf_counter() - started)


CURVE = Path(__file__).with_name("feedback_curve.png")


def curve(results: dict[str, Any], seeds: list[str]) -> None:
    """Test micro F1 against notes reviewed, per arm (mean and sd over seeds), with the adapter before feedback."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for arm, label in (("coder", "coder's corrections"), ("documents", "annotated documents")):
        xs, means, sds = [0], [results["baseline"]["micro_f1"]], [0.0]
        for r in range(1, ROUNDS + 1):
            values = [results[f"{s}/round{r}"][arm]["micro_f1"] for s in seeds if f"{s}/round{r}" in results]
            if values:
                xs.append(r * PER_ROUND)
                means.append(statistics.mean(values))
                sds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=label)
    ax.set_xlabel("notes reviewed")
    ax.set_ylabel(f"test micro F1 ({TEST_NOTES} notes)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(CURVE, dpi=110)
    plt.close(fig)


def report(results: dict[str, Any], seconds: float) -> str:
    base = results["baseline"]
    rows, seeds_done = [], sorted({k.split("/")[0] for k in results if k.startswith("seed")})
    for r in range(1, ROUNDS + 1):
        cells = [results[f"{s}/round{r}"] for s in seeds_done if f"{s}/round{r}" in results]
        if not cells:
            continue

        def ms(values: list[float]) -> str:
            if len(values) == 1:
                return f"{values[0]:.1f}"  # one seed: no spread to give
            return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"

        for arm in ("coder", "documents"):
            rows.append(
                [
                    r * PER_ROUND,
                    arm,
                    len(cells),
                    ms([c[arm]["micro_f1"] for c in cells]),
                    ms([c[arm]["macro_f1"] for c in cells]),
                    ms([c[arm]["evidence_f1"] for c in cells]),
                    ms([c[arm]["tokens"] / 1000 for c in cells]),
                    ms([c["actions"] for c in cells]) if arm == "coder" else "-",
                ]
            )
    if rows:
        curve(results, seeds_done)
    return "\n".join(
        [
            "## The coder's loop: corrections against annotated documents (benchmarks/bench_feedback.py)",
            "",
            f"Demo adapter, {ROUNDS} rounds of {PER_ROUND} validation notes it "
            f"never trained on, {TEST_NOTES} test notes scored after each round, seeds {', '.join(seeds_done)} "
            f"(mean ± sd over seeds). Without feedback the adapter scores micro F1 {base['micro_f1']:.1f}, macro "
            f"F1 {base['macro_f1']:.1f}, evidence F1 {base['evidence_f1']:.1f} on the same test notes. Each round "
            "continues the arm's last adapter (replay 0.5 of its parent's data); the documents arm gets the same "
            "notes fully annotated, for the optimizer tokens the corrections run used. "
            f"This invocation: {seconds:.0f} s.",
            "",
            table(
                [
                    "notes reviewed",
                    "arm",
                    "seeds",
                    "micro F1",
                    "macro F1",
                    "evidence F1",
                    "k tokens this round",
                    "coder actions this round",
                ],
                rows,
            ),
            "",
            f"![test micro F1 against notes reviewed]({CURVE.name})" if rows else "No round has finished yet.",
        ]
    )


if __name__ == "__main__":
    print(run(*[Path(a) for a in sys.argv[1:]]))
