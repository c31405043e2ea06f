"""`make bench-scl`: what SCL against document-only SFT costs in the paper's regime on this machine, measured
before anything long is started.

The protocol the experiment is meant to follow (issue #26): the demo corpus v5 at 700 admissions (notes of
discharge-summary length), documents that are windows of WINDOW tokens for every arm, prediction on the same
windows; three arms (document-only SFT on every window of every training note; SCL with spans, negatives, a
share of documents and synthesis; SCL without synthesis); a ladder of optimizer-token budgets up to where
document-only stops rising, scored on VAL_NOTES validation notes; a learning rate per arm chosen on validation;
the chosen points trained with three seeds and scored once on TEST_NOTES `test` and UNSEEN_NOTES
`test-unseen` notes. This script measures its units on this CPU (the tokens of a document and of a span
example, seconds per optimizer step of each arm, seconds to predict one note) and projects the protocol's
wall time from them, against the 4 hours it may take. It trains and predicts only as much as the measurement
needs; the projection is written into benchmarks/results.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from common import RUNS, provenance, table, write_section

from sclcoder.data.corpus_folder import read_demo
from sclcoder.data.documents import write_documents
from sclcoder.demo.corpus import ensure_demo
from sclcoder.infer.predict import predict
from sclcoder.infer.settings import engine_for, predict_settings
from sclcoder.recipe import Recipe, load_recipe
from sclcoder.sft.build import build_dataset
from sclcoder.task_eval import train_and_select

ROOT = RUNS / "scl"
CHARTS, SEED = 700, 21
WINDOWS = (1024, 512)  # documents of WINDOW tokens; 512 is the shortest the protocol admits
VAL_NOTES, TEST_NOTES, UNSEEN_NOTES = 40, 100, 50
SEEDS = 3
GRID = 2  # learning rates tried per arm, on the ladder's first rungs
LADDER = (25, 50, 100, 200, 400)  # optimizer steps of 4 examples at which validation scores each arm
PROBE_STEPS, PROBE_NOTES = 4, 2
BUDGET_HOURS = 4.0
ARMS = {
    "document-only": ("recipes/smollm2_cpu_docsft.yaml", []),
    "SCL": ("recipes/smollm2_cpu.yaml", ["data.document.fraction=0.15", "data.document.empty_window_rate=1.0"]),
}


def recipe(arm: str, window: int, out: Path, steps: int) -> Recipe:
    path, sets = ARMS[arm]
    corpus = ROOT / "corpus"
    values = {
        "windows": {"max_tokens": window, "overlap_tokens": 64},
        "train": {
            "output_dir": str(out),
            "max_steps": steps,
            "max_length": window + 320,
            "train_sampling_strategy": "random",
            "lr_scheduler_type": "constant_with_warmup",  # a ladder read off one run: no schedule to finish
            "save_steps": 1000,
        },
        "data": {
            "train": [{"demo": {"split": "train", "corpus": str(corpus), "charts": CHARTS, "seed": SEED}}],
            "validation": [{"demo": {"split": "val", "corpus": str(corpus), "charts": CHARTS, "seed": SEED}}],
        },
        "predict": {"max_model_len": window + 512},
    }
    return load_recipe(path, sets, values=values)


def probe(arm: str, window: int) -> dict[str, Any]:
    """Dataset tokens per kind, seconds per optimizer step, and (document-only) seconds to predict a note."""
    out = ROOT / f"probe-{arm}-{window}"
    done = out / "probe.json"
    if done.exists():
        return _per_step({**json.loads(done.read_text()), "kept": True}, out)
    rec = recipe(arm, window, out / "run", PROBE_STEPS)
    stats = build_dataset(rec, out / "run" / "dataset").stats
    by_kind = stats["train"]["by_kind"]
    started = time.perf_counter()
    result = train_and_select(rec, overwrite=True)
    train_s = time.perf_counter() - started
    row: dict[str, Any] = {
        "arm": arm,
        "window": window,
        "examples": stats["train"]["examples"],
        "tokens": stats["train"]["tokens"],
        "tokens_per_kind": {k: v["tokens"] / max(1, v["examples"]) for k, v in by_kind.items()},
        "tokens_per_step": result.adapter.record.tokens_seen / PROBE_STEPS,
        "seconds_per_step": train_s / PROBE_STEPS,
    }
    if arm == "document-only":
        notes = out / "notes.jsonl"
        write_documents(notes, read_demo(ROOT / "corpus", split="val")[:PROBE_NOTES])
        settings = predict_settings(result.adapter).model_copy(update={"max_new_tokens": 256})
        engine = engine_for(result.adapter, settings)
        try:
            started = time.perf_counter()
            predict(notes, out / "p.jsonl", adapter=result.adapter, settings=settings, engine=engine, overwrite=True)
            row["seconds_per_note"] = (time.perf_counter() - started) / PROBE_NOTES
        finally:
            engine.close()
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(row, indent=1))
    return _per_step(row, out)


def _per_step(row: dict[str, Any], out: Path) -> dict[str, Any]:
    """Seconds per optimizer step from the trainer's own clock (`train_runtime`): the wall time of a 4-step
    probe is mostly loading the model and data, which a long run pays once."""
    from sclcoder.artifacts import open_adapter

    runtime = open_adapter(out / "run").record.metrics.get("train_runtime")
    if runtime:
        row = {**row, "wall_seconds_per_step": row["seconds_per_step"], "seconds_per_step": runtime / PROBE_STEPS}
    return row


def projection(units: dict[str, dict[str, Any]], window: int) -> dict[str, float]:
    """Hours the protocol takes at this window, from the measured units."""
    doc, scl = units["document-only"], units["SCL"]
    per_note = doc["seconds_per_note"]
    top = LADDER[-1]
    train_ladder = top * (doc["seconds_per_step"] + 2 * scl["seconds_per_step"])  # SCL and its ablation
    grid = (GRID - 1) * LADDER[1] * (doc["seconds_per_step"] + scl["seconds_per_step"])
    validation = len(LADDER) * 3 * VAL_NOTES * per_note + (GRID - 1) * 2 * 2 * VAL_NOTES * per_note
    seeds = (SEEDS - 1) * top / 2 * (doc["seconds_per_step"] + 2 * scl["seconds_per_step"])  # chosen points ~ mid
    test = SEEDS * 3 * (TEST_NOTES + UNSEEN_NOTES) * per_note
    seconds = {
        "training, ladder": train_ladder,
        "training, grid": grid,
        "training, 2 more seeds": seeds,
        "validation scoring": validation,
        "test scoring": test,
    }
    hours = {k: v / 3600 for k, v in seconds.items()}
    hours["total"] = sum(hours.values())
    return hours


def run() -> str:
    started = time.perf_counter()
    ensure_demo(ROOT / "corpus", n_charts=CHARTS, seed=SEED)
    units = {w: {arm: probe(arm, w) for arm in ARMS} for w in WINDOWS}
    rows, plans = [], []
    for w, by_arm in units.items():
        doc, scl = by_arm["document-only"], by_arm["SCL"]
        ratio = doc["tokens_per_kind"]["document"] / scl["tokens_per_kind"]["span"]
        rows.append(
            [
                w,
                f"{doc['tokens_per_kind']['document']:.0f} / {scl['tokens_per_kind']['span']:.0f} ({ratio:.1f}x)",
                f"{doc['tokens_per_step']:.0f} / {scl['tokens_per_step']:.0f}",
                f"{doc['seconds_per_step']:.1f} / {scl['seconds_per_step']:.1f}",
                f"{doc['seconds_per_note']:.1f}",
            ]
        )
        hours = projection(by_arm, w)
        plans.append([w, *(f"{v:.1f}" for v in hours.values())])
    minutes = (time.perf_counter() - started) / 60
    feasible = [p for p in plans if float(p[-1]) <= BUDGET_HOURS]
    verdict = (
        f"Within {BUDGET_HOURS:.0f} hours at windows of {', '.join(str(p[0]) for p in feasible)} tokens."
        if feasible
        else f"**Not run: no window fits {BUDGET_HOURS:.0f} hours on this CPU.** The protocol's own minimums (notes, "
        "rungs, seeds) are what cost; running it needs a faster machine (a GPU runs it in a fraction of this) or "
        "a smaller protocol, which would again measure a regime where the method has little to show."
    )
    return "\n".join(
        [
            "## SCL in the paper's regime: what it costs here",
            "",
            f"Demo corpus v5, {CHARTS} admissions (seed {SEED}). Units measured on this CPU (one run each: "
            f"{PROBE_STEPS} optimizer steps of 4 examples per arm, in random order; predict on {PROBE_NOTES} "
            "validation notes with a barely trained adapter, answers capped at 256 tokens):",
            "",
            table(
                [
                    "window tokens",
                    "tokens per document / span example",
                    "tokens per step, doc-only / SCL",
                    "seconds per step, doc-only / SCL",
                    "seconds to predict one note",
                ],
                rows,
            ),
            "",
            f"The protocol ({VAL_NOTES} validation notes scored at {len(LADDER)} rungs of "
            f"{', '.join(map(str, LADDER))} steps per arm, {GRID} learning rates on the first rungs, {SEEDS} seeds, "
            f"{TEST_NOTES} + {UNSEEN_NOTES} "
            "test notes per final run), projected in hours:",
            "",
            table(["window tokens", *projection(units[WINDOWS[0]], WINDOWS[0]).keys()], plans),
            "",
            verdict,
            "",
            f"This measurement took {minutes:.0f} min"
            + (
                f" (probes measured by an earlier invocation and kept in {ROOT} reused: "
                f"{sum(r.get('kept', False) for by in units.values() for r in by.values())} of {2 * len(WINDOWS)})."
                if any(r.get("kept") for by in units.values() for r in by.values())
                else "."
            ),
            "",
            "In random order a batch pads to its longest example: an SCL batch that draws one document costs nearly "
            "what a document-only batch costs, whatever its token count (seconds per step above).",
        ]
    )


def main() -> None:
    started = time.perf_counter()
    text = run()
    heading, _, body = text.partition("\n")
    write_section("scl", f"{heading}\n\n{provenance((time.perf_counter() - started) / 60)}\n{body}")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
