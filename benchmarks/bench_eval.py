"""Evaluation cost: every metric (codes, MDACE evidence, plausibility) on an MDACE-test-sized set and on
10,000 notes. Gold is the demo corpus, repeated under new ids to reach the size; predictions are the gold
with a seeded share of codes dropped, codes added and evidence spans shifted, so every metric has work."""

from __future__ import annotations

import random
import sys
from dataclasses import replace

from common import RUNS, table, timed

from sclcoder.data.corpus_folder import read_demo
from sclcoder.data.documents import Document, Evidence
from sclcoder.demo.corpus import ensure_demo
from sclcoder.eval.evaluate import evaluate
from sclcoder.eval.gold import Gold
from sclcoder.eval.metrics import Prediction
from sclcoder.eval.report import PredictionsSummary

MDACE_TEST_ADMISSIONS = 60  # lines of MDace-ev-test.csv (Inpatient)


def notes(base: list[Document], n: int) -> list[Document]:
    out = []
    for i in range(n):
        doc = base[i % len(base)]
        out.append(replace(doc, id=f"{doc.id}-{i}", meta={**doc.meta, "hadm_id": f"{doc.meta['hadm_id']}-{i}"}))
    return out


def noisy_prediction(doc: Document, rng: random.Random, vocabulary: list[str]) -> Prediction:
    codes = {c for c in doc.codes if rng.random() > 0.2}
    if rng.random() < 0.5:
        codes.add(rng.choice(vocabulary))
    evidence = []
    for ev in doc.evidence:
        if ev.code in codes:
            shift = rng.choice([0, 0, 2, -2])
            begin, end = max(0, ev.begin + shift), min(len(doc.text), ev.end + shift)
            evidence.append(Evidence(begin, end, ev.code))
    return Prediction(doc.id, codes, evidence)


def run() -> str:
    corpus = ensure_demo(RUNS / "demo-corpus")
    base = read_demo(corpus)
    vocabulary = sorted({c for d in base for c in d.codes})
    rows = []
    for label, n in (("MDACE test size", MDACE_TEST_ADMISSIONS), ("10,000 notes", 10_000)):
        docs = notes(base, n)
        rng = random.Random(0)
        preds = [noisy_prediction(d, rng, vocabulary) for d in docs]
        gold = Gold("demo", docs, group=lambda d: str(d.meta["hadm_id"]), settings={})
        with timed() as t:
            report = evaluate(gold, preds, PredictionsSummary(format="jsonl", path="(in memory)"))
        rows.append(
            [
                label,
                n,
                sum(len(d.evidence) for d in docs),
                f"{t[0]:.2f}",
                f"{n / t[0]:.0f}",
                f"{report.codes_micro_f1:.3f}",
            ]
        )
    return "\n".join(
        [
            "## Evaluation cost (all metrics, one process)",
            "",
            table(["set", "notes", "gold spans", "seconds", "notes/s", "micro F1 (noisy copy of gold)"], rows),
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(run() + "\n")
