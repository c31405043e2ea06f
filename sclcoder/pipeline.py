"""`sclcoder demo` (and `make demo`): the embedded default end to end, each stage timed.

demo corpus -> SmolLM2-135M prepared offline -> SCL dataset -> LoRA training on CPU -> vLLM predictions
for the held-out notes -> evaluation -> HTML audit view. Everything is the library code the commands
call; this module only strings it together and reports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sclcoder import defaults
from sclcoder.progress import console

DEMO_RECIPE = "recipes/smollm2_cpu.yaml"


@dataclass
class StageClock:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        console.rule(f"[bold]{name}")
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        console.print(f"[dim]{name}: {self.seconds[name]:.0f} s[/]")


def run_demo(
    out: str | Path = "runs/demo",
    *,
    recipe_path: str = DEMO_RECIPE,
    seed: int = defaults.DEMO_SEED,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Run the whole demo into `out`; returns the evaluation report plus stage timings."""
    from sclcoder.artifacts import open_adapter
    from sclcoder.backbones import resolve_model
    from sclcoder.data.demo import UNSEEN_SPLIT, ensure_demo, read_demo
    from sclcoder.data.documents import write_documents
    from sclcoder.eval.evaluate import evaluate, write_report
    from sclcoder.eval.gold import gold_demo, load_predictions
    from sclcoder.eval.report import build_report
    from sclcoder.infer.engine import engine_for, predict_settings
    from sclcoder.infer.predict import predict
    from sclcoder.recipe import load_recipe
    from sclcoder.selection import train_and_select
    from sclcoder.sft.build import build_dataset

    root = Path(out)
    clock = StageClock()
    corpus = root / "corpus"
    sets = [
        f"train.output_dir={root / 'run'}",
        f"train.seed={seed}",
        f"data.seed={seed}",
        f"data.train=[{{demo: {{split: train, corpus: {corpus}}}}}]",
        f"data.validation=[{{demo: {{split: val, corpus: {corpus}}}}}]",
        *(overrides or []),
    ]
    recipe = load_recipe(recipe_path, sets)
    with clock.stage("demo corpus"):
        ensure_demo(corpus)
        test_notes, unseen_notes = root / "test-notes.jsonl", root / "test-unseen-notes.jsonl"
        write_documents(test_notes, read_demo(corpus, split="test")[: defaults.DEMO_TEST_NOTES])
        write_documents(unseen_notes, read_demo(corpus, split=UNSEEN_SPLIT))
    with clock.stage("prepare the base model"):
        resolve_model(recipe.model.model_name_or_path)
    with clock.stage("build SCL dataset"):
        built = build_dataset(recipe, root / "run" / "dataset")
    with clock.stage("train (LoRA, CPU)"):
        result = train_and_select(recipe, overwrite=True)
    adapter = open_adapter(result.adapter_dir)
    adapter_record = adapter.record
    with clock.stage("predict (vLLM)"):
        # both test splits through one engine (its start-up is paid once)
        preds_path, unseen_preds = root / "predictions.jsonl", root / "predictions-unseen.jsonl"
        engine = engine_for(adapter, predict_settings(adapter))
        try:
            pred_report = predict(test_notes, preds_path, adapter=result.adapter_dir, engine=engine, overwrite=True)
            predict(unseen_notes, unseen_preds, adapter=result.adapter_dir, engine=engine, overwrite=True)
        finally:
            engine.close()
    with clock.stage("evaluate"):
        reports = {}
        for split, path, folder in (("test", preds_path, "eval"), (UNSEEN_SPLIT, unseen_preds, "eval-unseen")):
            gold = gold_demo(corpus, split=split)
            if split == "test":  # the notes predicted: the first DEMO_TEST_NOTES, in the split's order
                gold = replace(gold, docs=gold.docs[: defaults.DEMO_TEST_NOTES])
            preds, info = load_predictions(path, gold)
            reports[split] = evaluate(gold, preds, info, seen_codes=set(adapter_record.codes))
            write_report(reports[split], root / folder)
        report, unseen = reports["test"], reports[UNSEEN_SPLIT]
    with clock.stage("audit view"):
        build_report(preds_path, test_notes, root / "report.html", gold=test_notes)
    aligned = report["predictions"]["evidence_alignment"]
    placed = sum(v for k, v in aligned.items() if k != "unaligned")
    from sclcoder.device import cpu_info

    train_seconds = clock.seconds["train (LoRA, CPU)"]
    report["demo"] = {
        "machine": cpu_info().describe(),
        "precision": adapter_record.precision.model_dump() if adapter_record.precision else None,
        "train_tokens_per_second": adapter_record.tokens_seen / train_seconds if train_seconds else 0.0,
        "train_pad_share": adapter_record.pad_share,
        "train_empty_answer_share": adapter_record.empty_answer_share,
        "train_all_empty_batch_share": adapter_record.all_empty_batch_share,
        "stage_seconds": clock.seconds,
        "total_seconds": sum(clock.seconds.values()),
        "train_tokens": built.stats["train"]["tokens"],
        "train_tokens_seen": adapter_record.tokens_seen,
        "token_cost_vs_document_sft": built.stats["token_cost_vs_document_sft"],
        "train_loss": result.metrics.get("train_loss"),
        "predict_notes_per_second": pred_report.notes_per_second,
        "unseen_phrases": {
            "notes": unseen["gold"]["notes"],
            "codes_micro_f1": unseen["codes"]["micro"]["f1"],
            "codes_macro_f1": unseen["codes"]["macro_over_gold_codes"]["f1"],
            "evidence_pi_token_f1": unseen["evidence_mdace"]["token_position_independent"]["f1"],
            "report": str(root / "eval-unseen" / "report.json"),
        },
        "evidence_aligned_share": placed / max(1, sum(aligned.values())),
        "outputs": {
            "adapter": str(result.adapter_dir),
            "predictions": str(preds_path),
            "report": str(root / "eval" / "report.json"),
            "audit_view": str(root / "report.html"),
        },
    }
    return report


def print_summary(report: dict[str, Any]) -> None:
    from rich.table import Table

    d = report["demo"]
    c, e = report["codes"], report["evidence_mdace"]
    table = Table(title="sclcoder demo: SmolLM2-135M + SCL on the synthetic demo corpus (held-out test notes)")
    table.add_column("result", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("test notes (seen phrasing)", f"{report['gold']['notes']}"),
        ("codes micro F1", f"{100 * c['micro']['f1']:.1f}"),
        ("codes macro F1 (over gold codes)", f"{100 * c['macro_over_gold_codes']['f1']:.1f}"),
        ("evidence PI token F1 (MDACE)", f"{100 * e['token_position_independent']['f1']:.1f}"),
        ("evidence aligned to the note", f"{100 * d['evidence_aligned_share']:.1f}%"),
        (
            f"phrase-disjoint test ({d['unseen_phrases']['notes']} notes): micro / macro / evidence F1",
            " / ".join(
                f"{100 * d['unseen_phrases'][k]:.1f}"
                for k in ("codes_micro_f1", "codes_macro_f1", "evidence_pi_token_f1")
            ),
        ),
        (
            "negated-only conditions coded",
            f"{report['negated_mentions']['coded_anyway']} of "
            f"{report['negated_mentions']['conditions_mentioned_only_negated']}",
        ),
        ("tokens trained on (prompt + answer, no padding)", f"{d['train_tokens_seen']:,}"),
        (
            '"no codes" answers / batches of only those',
            f"{100 * d['train_empty_answer_share']:.0f}% / {100 * d['train_all_empty_batch_share']:.0f}%",
        ),
    ]
    rows += [
        ("machine", d["machine"]),
        ("training precision", d["precision"]["dtype"]),
        ("training tokens/s (padding)", f"{d['train_tokens_per_second']:.0f} ({100 * d['train_pad_share']:.0f}% pad)"),
        ("predict notes/s", f"{d['predict_notes_per_second']:.2f}"),
    ]
    rows += [(f"time: {k}", f"{v:.0f} s") for k, v in d["stage_seconds"].items()]
    rows.append(("time: total", f"{d['total_seconds']:.0f} s"))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    o = d["outputs"]
    console.print(f"audit view: [bold]{o['audit_view']}[/]   report: {o['report']}   adapter: {o['adapter']}")
