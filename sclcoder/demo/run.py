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
from typing import TYPE_CHECKING

from sclcoder import defaults
from sclcoder.progress import console

if TYPE_CHECKING:
    from sclcoder.artifacts import Adapter
    from sclcoder.eval.report import EvalReport
    from sclcoder.recipe import Recipe

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


@dataclass
class DemoResult:
    """What `sclcoder demo` measured: both test splits' reports and how the run went."""

    test: EvalReport
    """The first DEMO_TEST_NOTES notes of the `test` split (phrasing shared with training)."""
    unseen: EvalReport
    """The phrase-disjoint `test-unseen` split."""
    adapter: Adapter
    stage_seconds: dict[str, float]
    train_tokens: int
    token_cost_vs_document_sft: float
    train_loss: float | None
    predict_notes_per_second: float
    outputs: dict[str, str]

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())

    @property
    def train_tokens_per_second(self) -> float:
        seconds = self.stage_seconds.get(TRAIN_STAGE, 0.0)
        return self.adapter.record.tokens_seen / seconds if seconds else 0.0

    @property
    def evidence_aligned_share(self) -> float:
        aligned = self.test.predictions.evidence_alignment
        placed = sum(v for k, v in aligned.items() if k != "unaligned")
        return placed / max(1, sum(aligned.values()))


TRAIN_STAGE = "train (LoRA, CPU)"


def demo_recipe(root: Path, *, seed: int, recipe_path: str = DEMO_RECIPE, overrides: list[str] | None = None) -> Recipe:
    """The demo's recipe with every output under `root`; the user's `--set` overrides go last. Paths go in as
    values, not YAML text: a folder named "runs/demo #1" is a path, not a path and a comment."""
    from sclcoder.recipe import load_recipe

    corpus = root / "corpus"
    values = {
        "train": {"output_dir": str(root / "run"), "seed": seed},
        "data": {
            "seed": seed,
            "train": [{"demo": {"split": "train", "corpus": str(corpus)}}],
            "validation": [{"demo": {"split": "val", "corpus": str(corpus)}}],
        },
    }
    return load_recipe(recipe_path, overrides or [], values=values)


def run_demo(
    out: str | Path = defaults.DEMO_DIR,
    *,
    recipe_path: str = DEMO_RECIPE,
    seed: int = defaults.DEMO_SEED,
    overrides: list[str] | None = None,
) -> DemoResult:
    """Run the whole demo into `out` (see the module docstring); `overrides` are `--set` assignments."""
    from sclcoder.backbones import resolve_model
    from sclcoder.data.corpus_folder import UNSEEN_SPLIT, read_demo
    from sclcoder.data.documents import write_documents
    from sclcoder.demo.corpus import ensure_demo
    from sclcoder.eval.audit import build_report
    from sclcoder.eval.evaluate import evaluate
    from sclcoder.eval.gold import gold_demo, load_predictions
    from sclcoder.eval.report import write_report
    from sclcoder.infer.predict import predict
    from sclcoder.infer.settings import engine_for, predict_settings
    from sclcoder.sft.build import build_dataset
    from sclcoder.task_eval import train_and_select

    root = Path(out)
    clock = StageClock()
    corpus = root / "corpus"
    recipe = demo_recipe(root, seed=seed, recipe_path=recipe_path, overrides=overrides)
    with clock.stage("demo corpus"):
        ensure_demo(corpus)
        test_notes, unseen_notes = root / "test-notes.jsonl", root / "test-unseen-notes.jsonl"
        write_documents(test_notes, read_demo(corpus, split="test")[: defaults.DEMO_TEST_NOTES])
        write_documents(unseen_notes, read_demo(corpus, split=UNSEEN_SPLIT)[: defaults.DEMO_UNSEEN_NOTES])
    with clock.stage("prepare the base model"):
        resolve_model(recipe.model.model_name_or_path)
    with clock.stage("build SCL dataset"):
        built = build_dataset(recipe, root / "run" / "dataset")
    with clock.stage(TRAIN_STAGE):
        result = train_and_select(recipe, overwrite=True)
    adapter = result.adapter
    with clock.stage("predict (vLLM)"):
        # both test splits through one engine (its start-up is paid once)
        preds_path, unseen_preds = root / "predictions.jsonl", root / "predictions-unseen.jsonl"
        settings = predict_settings(adapter)
        engine = engine_for(adapter, settings)
        try:
            pred_report = predict(test_notes, preds_path, adapter=adapter, engine=engine, overwrite=True)
            predict(unseen_notes, unseen_preds, adapter=adapter, engine=engine, overwrite=True)
        finally:
            engine.close()
    with clock.stage("evaluate"):
        reports = {}
        for split, path, folder in (("test", preds_path, "eval"), (UNSEEN_SPLIT, unseen_preds, "eval-unseen")):
            gold = gold_demo(corpus, split=split)
            # the notes predicted: the first of each split, in the split's order
            limit = defaults.DEMO_TEST_NOTES if split == "test" else defaults.DEMO_UNSEEN_NOTES
            gold = replace(gold, docs=gold.docs[:limit])
            preds, info = load_predictions(path, gold)
            reports[split] = evaluate(gold, preds, info, seen_codes=set(adapter.record.codes))
            write_report(reports[split], root / folder)
    with clock.stage("audit view"):
        build_report(preds_path, test_notes, root / "report.html", gold=test_notes)
    return DemoResult(
        test=reports["test"],
        unseen=reports[UNSEEN_SPLIT],
        adapter=adapter,
        stage_seconds=clock.seconds,
        train_tokens=built.stats["train"]["tokens"],
        token_cost_vs_document_sft=built.stats["token_cost_vs_document_sft"],
        train_loss=result.metrics.get("train_loss"),
        predict_notes_per_second=pred_report.notes_per_second,
        outputs={
            "adapter": str(adapter.path),
            "predictions": str(preds_path),
            "report": str(root / "eval" / "report.json"),
            "unseen report": str(root / "eval-unseen" / "report.json"),
            "audit view": str(root / "report.html"),
        },
    )


def print_summary(result: DemoResult) -> None:
    from rich.table import Table

    from sclcoder.device import cpu_info

    test, unseen, record = result.test, result.unseen, result.adapter.record

    def f1s(report: EvalReport) -> str:
        return " / ".join(
            f"{100 * x:.1f}" for x in (report.codes_micro_f1, report.codes_macro_f1, report.evidence_token_f1)
        )

    table = Table(title="sclcoder demo: SmolLM2-135M + SCL on the synthetic demo corpus (held-out test notes)")
    table.add_column("result", style="bold")
    table.add_column("value", justify="right")
    negated = test.negated_mentions
    rows = [
        ("test notes (seen phrasing)", f"{test.gold.notes}"),
        ("codes micro F1", f"{100 * test.codes_micro_f1:.1f}"),
        ("codes macro F1 (over gold codes)", f"{100 * test.codes_macro_f1:.1f}"),
        ("evidence PI token F1 (MDACE)", f"{100 * test.evidence_token_f1:.1f}"),
        ("evidence aligned to the note", f"{100 * result.evidence_aligned_share:.1f}%"),
        (f"phrase-disjoint test ({unseen.gold.notes} notes): micro / macro / evidence F1", f1s(unseen)),
    ]
    if negated is not None:
        rows.append(
            ("negated-only conditions coded", f"{negated.coded_anyway} of {negated.conditions_mentioned_only_negated}")
        )
    rows += [
        ("tokens trained on (prompt + answer, no padding)", f"{record.tokens_seen:,}"),
        (
            '"no codes" answers / batches of only those',
            f"{100 * record.empty_answer_share:.0f}% / {100 * record.all_empty_batch_share:.0f}%",
        ),
        ("machine", cpu_info().describe()),
        ("training precision", record.precision.dtype if record.precision else "?"),
        ("training tokens/s (padding)", f"{result.train_tokens_per_second:.0f} ({100 * record.pad_share:.0f}% pad)"),
        ("predict notes/s", f"{result.predict_notes_per_second:.2f}"),
    ]
    rows += [(f"time: {k}", f"{v:.0f} s") for k, v in result.stage_seconds.items()]
    rows.append(("time: total", f"{result.total_seconds:.0f} s"))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    console.print("   ".join(f"{k}: [bold]{v}[/]" for k, v in result.outputs.items()))
