"""Data build on the demo corpus: token cost of the SCL mixture against document-only SFT on the same
notes, and build throughput. Both mixtures are built in this one run with the embedded tokenizer."""

from __future__ import annotations

import sys

from common import RUNS, table, timed

from sclcoder.recipe import load_recipe
from sclcoder.sft.build import build_dataset


def run() -> str:
    rows = []
    results = {}
    for name, recipe_path in (
        ("SCL", "recipes/smollm2_cpu.yaml"),
        ("document-only", "recipes/smollm2_cpu_docsft.yaml"),
    ):
        recipe = load_recipe(recipe_path)
        with timed() as t:
            result = build_dataset(recipe, RUNS / f"data-{name}")
        stats = result.stats
        results[name] = stats
        notes = stats["notes"]["train"] + stats["notes"]["validation"]
        rows.append(
            [
                name,
                stats["train"]["examples"],
                stats["train"]["tokens"],
                ", ".join(f"{k} {v['examples']}" for k, v in stats["train"]["by_kind"].items()),
                f"{stats['token_cost_vs_document_sft']:.2f}",
                f"{notes / t[0]:.1f}",
            ]
        )
    out = [
        "## Data build (demo corpus, SmolLM2 tokenizer)",
        "",
        table(
            [
                "mixture",
                "train examples",
                "train tokens",
                "examples by kind",
                "tokens vs document SFT",
                "notes/s (whole build)",
            ],
            rows,
        ),
        "",
        f"SCL mixture / document-only mixture, train tokens: "
        f"**{results['SCL']['train']['tokens'] / results['document-only']['train']['tokens']:.2f}x**",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(run() + "\n")
