"""What one stage hands the next, typed and versioned in one place.

- The **dataset record** (`build.json`), written by `data build` and read by `train`: the prompt's identity,
  the code system, the windows notes were cut into, the code list and the resolved recipe.
- The **adapter record** (`sclcoder.json`), written by `train` and read by `predict`, `serve` and `eval`: the
  same identity fields plus the base model, precision, training metrics and loss history.

Both are pydantic models with unknown fields forbidden and a format string checked on read, so a record
from another writer (or a newer sclcoder) is one clear error instead of a KeyError deep in predict.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from sclcoder import defaults
from sclcoder.backbones import resolve_model
from sclcoder.errors import SclError, validation_error
from sclcoder.files import check_safetensors
from sclcoder.recipe import WindowsSection

DATASET_FORMAT = "sclcoder-sft/1"
ADAPTER_FORMAT = "sclcoder-adapter/1"
BUILD_FILE = "build.json"
STATS_FILE = "stats.json"
ADAPTER_DIR = "adapter"
"""The adapter's folder inside a training run's output_dir."""
METADATA = "sclcoder.json"
PROMPT_FILE = "prompt.yaml"
"""The prompt template a dataset was rendered with, copied into the dataset, the adapter and a merged model."""


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptIdentity(Record):
    name: str
    version: str
    sha256: str

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


class PrecisionRecord(Record):
    dtype: Literal["bfloat16", "float16", "float32"]
    reason: str
    emulated: bool = False
    device: str = ""


class DatasetRecord(Record):
    format: Literal["sclcoder-sft/1"]
    sclcoder_version: str
    created: str
    prompt: PromptIdentity
    code_system: str
    windows: WindowsSection
    codes: list[str]
    recipe: dict[str, Any]


class AdapterRecord(Record):
    format: Literal["sclcoder-adapter/1"]
    sclcoder_version: str
    created: str
    base_model: str
    base_model_path: str
    prompt: PromptIdentity
    code_system: str
    windows: WindowsSection
    codes: list[str]
    dataset: dict[str, Any]
    recipe: dict[str, Any]
    recipe_sha256: str = ""
    precision: PrecisionRecord | None = None
    world_size: int = 1
    """Processes that trained it (ranks under torchrun, accelerate launch or the deepspeed launcher)."""
    train_examples: int = 0
    """Training examples the trainer had, after leaving out those longer than train.max_length."""
    metrics: dict[str, Any] = {}
    tokens_seen: int = 0
    """Tokens (prompt + completion, padding excluded) the optimizer saw, as TRL counted them."""
    pad_share: float = 0.0
    empty_answer_share: float = 0.0
    """Share of the examples drawn whose answer is "no codes"."""
    all_empty_batch_share: float = 0.0
    """Share of the batches drawn made only of "no codes" answers (each one a whole optimizer step on them)."""
    batches_drawn: int = 0
    task_eval: dict[str, Any] | None = None
    """Validation scores along the way and the step kept (recipe section task_eval; sclcoder.task_eval)."""
    parent: dict[str, Any] | None = None
    """The adapter this one continued (`train --from`): its path, record digest, creation time, replay share."""
    corrections: list[dict[str, Any]] = []
    """Corrections files it learned from, each with its SHA-256 and the number of decisions in it."""
    loss_history: list[dict[str, float]] = []


def recipe_digest(recipe: dict[str, Any]) -> str:
    """A stable hash of a resolved recipe, to tell runs apart without comparing whole dicts."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _read(path: Path, model: type[Record], what: str) -> Any:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError):
        raise SclError(f"not {what} (no readable {path.name})", path=path.parent) from None
    if not isinstance(data, dict) or data.get("format") != model.model_fields["format"].annotation.__args__[0]:
        found = data.get("format") if isinstance(data, dict) else None
        raise SclError(f"not {what}: unknown format {found!r}", path=path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, path=path) from None


# ------------------------------------------------------------------------------------------------ dataset


@dataclass
class BuiltDataset:
    path: Path
    record: DatasetRecord
    stats: dict[str, Any]

    def load(self) -> Any:
        from datasets import load_from_disk

        return load_from_disk(str(self.path / "hf"))


def open_dataset(path: str | PathLike[str]) -> BuiltDataset:
    """A dataset directory written by `data build`, checked (clear error when it is anything else)."""
    p = Path(path)
    if not p.is_dir():
        raise SclError("dataset directory not found", path=p)
    what = "a dataset written by `sclcoder data build`"
    record = _read(p / BUILD_FILE, DatasetRecord, what)
    try:
        stats = json.loads((p / STATS_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError):
        raise SclError(f"not {what} (no readable {STATS_FILE})", path=p) from None
    if not (p / "hf").is_dir():
        raise SclError(f"not {what} (no hf/ folder)", path=p)
    return BuiltDataset(p, record, stats)


# ------------------------------------------------------------------------------------------------ adapter


@dataclass
class Adapter:
    """What sclcoder predicts with: a LoRA adapter as `sclcoder train` wrote it, or a merged model (a plain
    model folder written by `sclcoder model merge`, or the `merged/` folder predict keeps in an adapter). Both
    carry the adapter record, the prompt and the tokenizer; a merged model is served without LoRA."""

    path: Path
    record: AdapterRecord
    merged: bool = False

    @property
    def base_model(self) -> str:
        """The weights to load on this machine: the base model of an adapter, a merged model's own folder."""
        return str(self.path) if self.merged else self.record.base_model_path

    @property
    def lora_rank(self) -> int:
        return int(self.record.recipe["lora"]["r"])


def read_adapter_record(folder: str | PathLike[str]) -> AdapterRecord:
    """The adapter record in `folder`, checked (the folder itself is not: see open_adapter)."""
    return _read(Path(folder) / METADATA, AdapterRecord, "an adapter written by `sclcoder train`")


LORA_CONFIG = "adapter_config.json"
MODEL_CONFIG = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def open_adapter(path: str | PathLike[str]) -> Adapter:
    """An adapter written by `sclcoder train` (or the run's output_dir) or a merged model written by `sclcoder
    model merge`, its record checked; any other folder is one error naming what it lacks."""
    p = Path(path)
    if (p / ADAPTER_DIR / METADATA).exists():  # the run's output_dir was given
        p = p / ADAPTER_DIR
    if not p.is_dir():
        raise SclError("adapter directory not found", path=p)
    if not (p / METADATA).is_file():
        raise SclError(
            f"not an sclcoder adapter or merged model: no {METADATA}",
            path=p,
            hint="give a folder written by `sclcoder train` or `sclcoder model merge`",
        )
    record = read_adapter_record(p)
    merged = not (p / LORA_CONFIG).exists()
    if merged and not ((p / MODEL_CONFIG).is_file() and any(p.glob("*.safetensors"))):
        raise SclError(
            f"has {METADATA} but neither {LORA_CONFIG} (a LoRA adapter) nor {MODEL_CONFIG} with safetensors "
            "weights (a merged model)",
            path=p,
        )
    for weights in p.glob("*.safetensors"):
        check_safetensors(weights)
    missing = [name for name in (PROMPT_FILE,) if not (p / name).is_file()]
    if not any((p / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise SclError(f"incomplete: no {', '.join(missing)}", path=p)
    if record.base_model != record.base_model_path:
        # embedded backbones live in the local cache: prepare them again on a new machine
        record.base_model_path = resolve_model(record.base_model)
    return Adapter(p, record, merged)


def latest_adapter(root: str | PathLike[str] = defaults.RUNS_DIR) -> Path:
    """The adapter named by $SCLCODER_ADAPTER, else the newest finished `sclcoder train` run under `root`
    (an adapter record is written last, so a run cut short has none)."""
    chosen = os.environ.get("SCLCODER_ADAPTER")
    if chosen:
        return Path(chosen)
    records = [p for depth in ("*", "*/*", "*/*/*") for p in Path(root).glob(f"{depth}/{ADAPTER_DIR}/{METADATA}")]
    if not records:
        raise SclError(
            f"no adapter given and no finished `sclcoder train` run under {root}/",
            hint="pass --adapter DIR or set SCLCODER_ADAPTER",
        )
    return max(records, key=lambda p: p.stat().st_mtime).parent
