"""The adapter as training leaves it: the PEFT weights, the tokenizer, the prompt the dataset was rendered
with and the adapter record (sclcoder.artifacts.AdapterRecord) with what predict and eval need to trust it,
written in one atomic step at the end of training, and midway for validation during training."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sclcoder import __version__
from sclcoder.artifacts import (
    ADAPTER_FORMAT,
    METADATA,
    PROMPT_FILE,
    Adapter,
    AdapterRecord,
    BuiltDataset,
    PrecisionRecord,
    recipe_digest,
)
from sclcoder.backbones import resolve_model
from sclcoder.device import Precision, current_device
from sclcoder.files import atomic_dir, write_json_atomic
from sclcoder.recipe import Recipe, recipe_dict


class AdapterWriter:
    """Saves the adapter as it stands, with what predict and eval need to trust it, in one atomic step:
    at the end of training, and midway for a callback that scores it."""

    def __init__(self, trainer: Any, recipe: Recipe, dataset: BuiltDataset, precision: Precision) -> None:
        self.trainer = trainer
        self.recipe = recipe
        self.dataset = dataset
        self.precision = precision

    def write(self, out: Path, metrics: dict[str, Any]) -> Adapter:
        """The adapter as it stands, saved to `out` (by the main process; every rank gets its record)."""
        trainer = self.trainer
        staging = out.parent / f".{out.name}-staging"
        trainer.save_model(str(staging))  # every rank takes part: ZeRO-3 gathers the weights here
        record = adapter_metadata(self.recipe, self.dataset, metrics, trainer, self.precision)
        if trainer.is_world_process_zero():
            with atomic_dir(out, replace=True) as tmp:  # inside the run's output_dir, checked before training
                for item in staging.iterdir():
                    shutil.move(str(item), tmp / item.name)
                trainer.processing_class.save_pretrained(tmp)
                shutil.copyfile(self.dataset.path / PROMPT_FILE, tmp / PROMPT_FILE)
                write_json_atomic(tmp / METADATA, record.model_dump(mode="json"))
            shutil.rmtree(staging, ignore_errors=True)
        return Adapter(out, record)


def adapter_metadata(
    recipe: Recipe, dataset: BuiltDataset, metrics: dict[str, Any], trainer: Any, precision: Precision
) -> AdapterRecord:
    """The adapter record (sclcoder.artifacts.AdapterRecord): validated here, so a bad field fails the run
    that writes it, not the predict that reads it."""
    history = [h for h in trainer.state.log_history if "loss" in h]
    resolved = recipe_dict(recipe)
    parent = None
    if recipe.parent is not None:
        from sclcoder.artifacts import open_adapter

        found = open_adapter(recipe.parent.adapter)
        resolved["lora"] = found.record.recipe["lora"]  # what was trained: the parent's LoRA, continued
        parent = {
            "adapter": str(found.path.resolve()),
            "recipe_sha256": found.record.recipe_sha256,
            "created": found.record.created,
            "replay": recipe.parent.replay,
        }
    record = AdapterRecord(
        format=ADAPTER_FORMAT,
        sclcoder_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        base_model=recipe.model.model_name_or_path,
        base_model_path=resolve_model(recipe.model.model_name_or_path),
        prompt=dataset.record.prompt,
        code_system=dataset.record.code_system,
        windows=dataset.record.windows,
        codes=dataset.record.codes,
        dataset={"path": str(dataset.path.resolve()), "stats": dataset.stats},
        recipe=resolved,
        recipe_sha256=recipe_digest(resolved),
        precision=PrecisionRecord(**precision.as_dict(), device=current_device().name),
        world_size=trainer.args.world_size,
        train_examples=len(trainer.train_dataset),
        metrics=metrics,
        # tokens the optimizer saw through the last step, padding excluded (include_num_input_tokens_seen)
        tokens_seen=int(trainer.state.num_input_tokens_seen),
        **trainer.data_collator.stats(),
        loss_history=[{"step": h["step"], "loss": h["loss"]} for h in history],
        parent=parent,
        corrections=corrections_lineage(recipe),
    )
    return record


def corrections_lineage(recipe: Recipe) -> list[dict[str, Any]]:
    """Each corrections file the recipe trains on, by content (SHA-256) and size in decisions."""
    import hashlib

    from sclcoder.recipe import CorrectionsSource

    out = []
    for source in recipe.data.train:
        if isinstance(source, CorrectionsSource):
            data = Path(source.corrections.file).read_bytes()
            out.append(
                {
                    "file": str(Path(source.corrections.file).resolve()),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "decisions": sum(1 for line in data.splitlines() if line.strip()),
                    "notes": str(Path(source.corrections.notes).resolve()),
                }
            )
    return out
