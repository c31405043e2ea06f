"""Choosing the adapter by the task's own metrics (recipe section `task_eval`).

Every `task_eval.eval_steps` optimizer steps the adapter as it stands is saved under
OUTPUT_DIR/task-eval/step-N, codes the validation notes through `predict` and is scored by `evaluate`: codes
micro and macro F1 and evidence token F1. The decoder is one vLLM engine for the whole run, started on the
base weights at the first scoring and handed the merged weights of the model in memory before each one
(`task_eval.engine: vllm`), or transformers' `generate` on the model itself, under the same constraints.
With `load_best_model_at_end` the adapter left in OUTPUT_DIR/adapter is the best one by
`metric_for_best_model`, ties going to the earlier step. The scores of every step are kept in
task-eval/history.json and in the adapter record, and a resumed run carries on with them.

It composes training, inference and evaluation, so it sits above all three (as the demo and the CLI do).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from sclcoder.artifacts import METADATA, Adapter, AdapterRecord
from sclcoder.backbones import resolve_model
from sclcoder.data.documents import Document
from sclcoder.errors import SclError
from sclcoder.files import atomic_dir, parse_json, write_json_atomic
from sclcoder.progress import say
from sclcoder.recipe import PredictSection, Recipe
from sclcoder.train.trainer import TrainResult, check_output_dir, train

if TYPE_CHECKING:
    from sclcoder.infer.engine import Engine, VllmEngine

METRICS = ("codes_micro_f1", "codes_macro_f1", "evidence_token_f1")
"""What each scoring records, by the names of the EvalReport properties (task_eval.metric_for_best_model)."""
WINDOWS_PER_BATCH = 16


def task_eval_dir(recipe: Recipe) -> Path:
    return Path(recipe.train.output_dir) / "task-eval"


class TaskEval(TrainerCallback):
    """Scores the adapter on the validation notes every `eval_steps` steps and at the last step."""

    def __init__(
        self, recipe: Recipe, docs: list[Document], engine: VllmEngine | None = None, *, resume: bool = False
    ) -> None:
        from sclcoder.eval.gold import gold_documents

        self.recipe = recipe
        self.docs = docs
        self.gold = gold_documents(docs, "validation", notes=len(docs))
        self.folder = task_eval_dir(recipe)
        self.notes = self.folder / "validation-notes.jsonl"
        self.resume = resume
        self.writer: Any = None
        self.vllm = engine
        self.owns_engine = engine is None  # an engine handed in serves other runs after this one
        self.adapters: dict[int, Adapter] = {}
        """The adapter saved at each scored step (of this process: a resumed run rescores none of the old)."""
        history_file = self.folder / "history.json"
        self.history: list[dict[str, Any]] = (
            parse_json(history_file.read_bytes(), path=history_file) if resume and history_file.exists() else []
        )

    def bind(self, writer: Any) -> None:
        self.writer = writer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # only now, with the new run's data read and its trainer built, do an earlier run's scores go
        from sclcoder.data.documents import write_documents

        if not self.resume:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_documents(self.notes, self.docs)

    @property
    def metric(self) -> str:
        return self.recipe.task_eval.metric_for_best_model

    def best(self) -> dict[str, Any] | None:
        # the earliest of equal scores: fewer steps for the same result
        return max(self.history, key=lambda h: (h[self.metric], -h["step"]), default=None)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step, every = state.global_step, self.recipe.task_eval.eval_steps or 0
        if (step % every and step != state.max_steps) or any(h["step"] == step for h in self.history):
            return
        self.score(step, kwargs["model"], kwargs["processing_class"])

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.vllm is not None and self.owns_engine:
            self.vllm.close()
            self.vllm = None

    def engine(self, adapter: Adapter, settings: PredictSection, model: Any, tokenizer: Any) -> Engine:
        """The decoder for this scoring, holding the weights of `model` as they stand."""
        from sclcoder.infer.local import TransformersEngine
        from sclcoder.infer.merge import merged_weights
        from sclcoder.infer.settings import base_engine

        if self.recipe.task_eval.engine == "transformers":
            return TransformersEngine(model, tokenizer, batch_size=WINDOWS_PER_BATCH)
        if self.vllm is None:
            self.vllm = base_engine(adapter.base_model, settings, self.recipe.task_eval.gpu_memory_utilization)
        self.vllm.load_weights(merged_weights(model))
        return self.vllm

    def score(self, step: int, model: Any, tokenizer: Any) -> None:
        from sclcoder.eval.evaluate import evaluate
        from sclcoder.eval.gold import load_predictions
        from sclcoder.infer.predict import predict
        from sclcoder.infer.settings import predict_settings

        started = time.perf_counter()
        adapter = self.adapters[step] = self.writer.write(self.folder / f"step-{step}", {"step": step})
        settings = predict_settings(adapter)
        preds_path = self.folder / f"step-{step}.predictions.jsonl"
        engine = self.engine(adapter, settings, model, tokenizer)
        predict(self.notes, preds_path, adapter=adapter, settings=settings, engine=engine, overwrite=True)
        preds, info = load_predictions(preds_path, self.gold)
        report = evaluate(self.gold, preds, info, seen_codes=set(adapter.record.codes))
        row = {"step": step, **{name: round(getattr(report, name), 4) for name in METRICS}}
        # what the optimizer has seen so far (prompt + answer, padding excluded): the x-axis of learning curves
        row["tokens"] = int(self.writer.trainer.state.num_input_tokens_seen)
        row["seconds"] = round(time.perf_counter() - started, 1)
        self.history.append(row)
        write_json_atomic(self.folder / "history.json", self.history)
        say(
            f"task eval step {step}: codes micro F1 {100 * row['codes_micro_f1']:.1f} | macro F1 "
            f"{100 * row['codes_macro_f1']:.1f} | evidence token F1 {100 * row['evidence_token_f1']:.1f} "
            f"({len(preds)} validation notes, {row['seconds']:.0f} s)"
        )
        self.prune(keep={step})

    def prune(self, keep: set[int]) -> None:
        """Adapters of steps that are neither the best so far nor kept on purpose go (disk, on large models)."""
        best = self.best()
        keep = keep | ({best["step"]} if best else set())
        for h in self.history:
            if h["step"] not in keep:
                shutil.rmtree(self.folder / f"step-{h['step']}", ignore_errors=True)


def validation_notes(recipe: Recipe) -> list[Document]:
    """The validation notes scored at each step (the first task_eval.max_notes)."""
    from sclcoder.sft.build import load_notes

    _, docs = load_notes(recipe.data)
    docs = docs[: recipe.task_eval.max_notes]
    if not docs:
        raise SclError("task_eval needs validation notes; the recipe has none", field="task_eval.eval_steps")
    return docs


def train_and_select(
    recipe: Recipe, *, resume: bool = False, overwrite: bool = False, engine: VllmEngine | None = None
) -> TrainResult:
    """`sclcoder train`: train; with task_eval.eval_steps set, score the adapter along the way and keep the
    best one (see the module docstring). `engine`, a vLLM engine already running on the recipe's base model
    (task_eval.engine: vllm), scores instead of one started for this run and is left running: runs of a sweep
    in one process share it (each start-up costs ~20 s on CPU); its weights are replaced at every scoring."""
    if not recipe.task_eval.eval_steps:
        return train(recipe, resume=resume, overwrite=overwrite)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SclError(
            "task_eval scores the adapter in one process; run it without a launcher or unset eval_steps",
            field="task_eval.eval_steps",
        )
    if engine is not None and recipe.task_eval.engine != "vllm":
        raise SclError("a vLLM engine was handed in, but task_eval decodes with transformers", field="task_eval.engine")
    if engine is not None and engine.model != resolve_model(recipe.model.model_name_or_path):
        raise SclError(
            f"the engine handed to task_eval runs {engine.model}, not the recipe's base model",
            field="model.model_name_or_path",
        )
    check_output_dir(recipe, resume=resume, overwrite=overwrite)  # before anything of an earlier run goes
    folder = task_eval_dir(recipe)
    callback = TaskEval(recipe, validation_notes(recipe), engine, resume=resume)
    result = train(recipe, resume=resume, overwrite=overwrite, callbacks=[callback])
    best, last = callback.best(), max(h["step"] for h in callback.history)
    chosen = best["step"] if best and recipe.task_eval.load_best_model_at_end else last
    record = result.adapter.record
    if chosen != last:
        with atomic_dir(result.adapter_dir, replace=True) as tmp:  # the best step's adapter, under the run's metrics
            for item in (folder / f"step-{chosen}").iterdir():
                shutil.copy2(item, tmp / item.name) if item.is_file() else shutil.copytree(item, tmp / item.name)
            record = _step_record(folder / f"step-{chosen}", callback).model_copy(update={"metrics": record.metrics})
    record = record.model_copy(update={"task_eval": {"metric": callback.metric, "selected_step": chosen,
                                                     "history": callback.history}})  # fmt: skip
    write_json_atomic(result.adapter_dir / METADATA, record.model_dump(mode="json"))
    callback.prune(keep={chosen})
    if best:
        say(
            f"task eval: the adapter is step {chosen}'s ({callback.metric} {100 * best[callback.metric]:.1f} at "
            f"step {best['step']}; last step {last})"
        )
    return TrainResult(Adapter(result.adapter_dir, record), result.metrics)


def _step_record(folder: Path, callback: TaskEval) -> AdapterRecord:
    """The record of a step's adapter: kept in memory when this process scored it, else (a resumed run chose
    a step scored before the restart) read from its folder."""
    step = int(folder.name.removeprefix("step-"))
    if step in callback.adapters:
        return callback.adapters[step].record
    from sclcoder.artifacts import read_adapter_record

    return read_adapter_record(folder)
