"""What training tells a log: a line per logging step (step/total, loss, learning rate, tokens/s, share of
padding, ETA) when no terminal shows HF's bar, and the padding count kept for the adapter record."""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from sclcoder.progress import duration, interactive, say


class PaddingCounter:
    """Wraps the data collator to count real and padded tokens of every batch the trainer draws."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator
        self.real = 0
        self.padded = 0

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
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


class TrainingProgress(TrainerCallback):
    """Plain progress lines on the main process; silent on a terminal, where HF's own bar runs."""

    def __init__(self, padding: PaddingCounter | None = None) -> None:
        self.padding = padding
        self.started = 0.0
        self.first_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.monotonic()
        self.first_step = state.global_step  # a resumed run starts past zero

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if interactive() or not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        elapsed = time.monotonic() - self.started
        done = state.global_step - self.first_step
        parts = [f"train step {state.global_step}/{state.max_steps}", f"loss {logs['loss']:.4f}"]
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if self.padding and self.padding.real and elapsed > 0:
            parts.append(f"{self.padding.real / elapsed:.0f} tok/s")
            parts.append(f"pad {100 * self.padding.pad_share:.0f}%")
        parts.append(f"elapsed {duration(elapsed)}")
        if done > 0 and state.global_step < state.max_steps:
            parts.append(f"ETA {duration(elapsed / done * (state.max_steps - state.global_step))}")
        say(" | ".join(parts))
