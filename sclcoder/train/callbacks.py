"""What training tells a log: a line per logging step (step/total, loss, learning rate, tokens/s, share of
padding, ETA) when no terminal shows HF's bar, and the batch counts kept for the adapter record."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from sclcoder.progress import duration, interactive, say


def answer_ids(feature: dict[str, Any]) -> list[int] | None:
    """The tokens a tokenized example is trained on (TRL folds the completion mask into `labels`)."""
    if "labels" in feature:
        return [int(t) for t, label in zip(feature["input_ids"], feature["labels"], strict=True) if label != -100]
    if "completion_mask" in feature:
        return [int(t) for t, m in zip(feature["input_ids"], feature["completion_mask"], strict=True) if m]
    return None


class BatchCounter:
    """Wraps the data collator to count, in every batch the trainer draws, real and padded tokens and the
    examples whose answer is the empty one ("no codes").

    Batches made only of empty answers matter: TRL averages the loss over a batch's answer tokens, so such a
    batch spends a whole optimizer step on "answer nothing". An order that gathers them (length grouping puts
    the short empty answers together) can teach a model to code nothing at all."""

    def __init__(self, collator: Any, empty_answer_ids: list[int] | None = None) -> None:
        self.collator = collator
        self.empty_answer_ids = empty_answer_ids
        self.real = 0
        self.padded = 0
        self.examples = 0
        self.empty_examples = 0
        self.batches = 0
        self.all_empty_batches = 0

    def _is_empty(self, feature: dict[str, Any]) -> bool:
        return self.empty_answer_ids is not None and answer_ids(feature) == self.empty_answer_ids

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        empty = sum(self._is_empty(f) for f in features)
        self.examples += len(features)
        self.empty_examples += empty
        self.batches += 1
        self.all_empty_batches += bool(features) and empty == len(features)
        batch = self.collator(features)
        mask = batch.get("attention_mask")
        if mask is None:  # padding-free batches: every position is a real token
            self.real += int(batch["input_ids"].numel())
            self.padded += int(batch["input_ids"].numel())
        else:
            self.real += int(mask.sum())
            self.padded += int(mask.numel())
        return batch

    @property
    def pad_share(self) -> float:
        return 1.0 - self.real / self.padded if self.padded else 0.0

    def stats(self) -> dict[str, float]:
        """For the adapter record: shares over every batch drawn (a resumed run counts from its restart)."""
        return {
            "pad_share": round(self.pad_share, 4),
            "empty_answer_share": round(self.empty_examples / self.examples, 4) if self.examples else 0.0,
            "all_empty_batch_share": round(self.all_empty_batches / self.batches, 4) if self.batches else 0.0,
            "batches_drawn": self.batches,
        }


class TrainingProgress(TrainerCallback):
    """Plain progress lines on the main process; silent on a terminal, where HF's own bar runs."""

    def __init__(self, padding: BatchCounter | None = None) -> None:
        self.padding = padding
        self.started = 0.0
        self.first_step = 0
        self.step_started = 0.0
        self.stepping = 0.0  # seconds inside optimizer steps: tok/s leaves out validation and checkpoints

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.monotonic()
        self.first_step = state.global_step  # a resumed run starts past zero

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.step_started = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.stepping += time.monotonic() - self.step_started

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if interactive() or not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        elapsed = time.monotonic() - self.started
        done = state.global_step - self.first_step
        parts = [f"train step {state.global_step}/{state.max_steps}", f"loss {logs['loss']:.4f}"]
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if self.padding and self.padding.real and self.stepping > 0:
            parts.append(f"{self.padding.real / self.stepping:.0f} tok/s")
            parts.append(f"pad {100 * self.padding.pad_share:.0f}%")
        parts.append(f"elapsed {duration(elapsed)}")
        if done > 0 and state.global_step < state.max_steps:
            parts.append(f"ETA {duration(elapsed / done * (state.max_steps - state.global_step))}")
        say(" | ".join(parts))
