"""SCL against document-only SFT in miniature: the same base model, demo notes, held-out test notes and
optimizer-step budget, each run end to end by the demo pipeline (build, LoRA on CPU, vLLM predict, eval).
Illustrates the paper's comparison at toy scale; it is not a replication of it."""

from __future__ import annotations

import sys
from typing import Any

from common import RUNS, table

from sclcoder.pipeline import run_demo

RECIPES = (("SCL", "recipes/smollm2_cpu.yaml"), ("document-only SFT", "recipes/smollm2_cpu_docsft.yaml"))


def run() -> tuple[str, dict[str, Any]]:
    reports = {name: run_demo(RUNS / name.split()[0].lower(), recipe_path=path) for name, path in RECIPES}
    rows = []
    for name, r in reports.items():
        d, c, e = r["demo"], r["codes"], r["evidence_mdace"]
        train_seconds = d["stage_seconds"]["train (LoRA, CPU)"]
        rows.append(
            [
                name,
                d["train_tokens"],
                d["train_tokens_seen"],
                f"{train_seconds:.0f}",
                f"{d['train_tokens_seen'] / train_seconds:.0f}",
                f"{100 * c['micro']['f1']:.1f}",
                f"{100 * c['macro_over_gold_codes']['f1']:.1f}",
                f"{100 * e['token_position_independent']['f1']:.1f}",
                f"{d['predict_notes_per_second']:.2f}",
            ]
        )
    scl, doc = reports["SCL"]["demo"], reports["document-only SFT"]["demo"]
    train_time = scl["stage_seconds"]["train (LoRA, CPU)"] / doc["stage_seconds"]["train (LoRA, CPU)"]
    text = "\n".join(
        [
            "## SCL vs document-only SFT (miniature: SmolLM2-135M, demo corpus, CPU)",
            "",
            table(
                [
                    "training data",
                    "dataset tokens",
                    "tokens trained on",
                    "train seconds",
                    "train tokens/s",
                    "micro F1",
                    "macro F1",
                    "evidence PI token F1",
                    "predict notes/s",
                ],
                rows,
            ),
            "",
            f"SCL / document-only: dataset tokens **{scl['train_tokens'] / doc['train_tokens']:.2f}x**, "
            f"tokens trained on **{scl['train_tokens_seen'] / doc['train_tokens_seen']:.2f}x**, "
            f"train wall time **{train_time:.2f}x**.",
        ]
    )
    return text, reports


if __name__ == "__main__":
    sys.stdout.write(run()[0] + "\n")
