"""`sclcoder train RECIPE`: LoRA / QLoRA supervised fine-tuning with TRL and PEFT, optionally under DeepSpeed.

Read it top to bottom: recipe in; dataset, tokenizer, SFTConfig, model, LoRA config and SFTTrainer built in
plain sight; train; save the adapter with what predict and eval need to trust it (recipe, prompt version,
dataset stats, the code list it was trained on). The same code runs one CPU process and many GPUs under
`accelerate launch`, `torchrun` or the `deepspeed` launcher: the launchers start the ranks (on CPU the
process group is put on gloo here), TRL, Accelerate and DeepSpeed do the distribution. Loss covers the
answer only (prompt/completion data).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sclcoder import __version__
from sclcoder.artifacts import (
    ADAPTER_DIR,
    ADAPTER_FORMAT,
    METADATA,
    AdapterRecord,
    BuiltDataset,
    PrecisionRecord,
    open_dataset,
    recipe_digest,
)
from sclcoder.backbones import load_tokenizer, resolve_model
from sclcoder.device import Precision, current_device, has_gpu, resolve_precision, weights_dtype
from sclcoder.errors import SclError
from sclcoder.files import atomic_dir, write_json_atomic
from sclcoder.progress import interactive, say
from sclcoder.recipe import Recipe, recipe_dict
from sclcoder.sft.build import build_dataset, default_dataset_dir
from sclcoder.sft.prompts import PROMPT_FILE

log = logging.getLogger("sclcoder")


@dataclass
class TrainResult:
    adapter_dir: Path
    metrics: dict[str, Any]


# ------------------------------------------------------------------------------------------ helpers


def torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[weights_dtype(name)]


def training_precision(recipe: Recipe) -> Precision:
    """Mixed precision for this run on this device (`train.bf16: auto` decided by sclcoder.device)."""
    precision = resolve_precision(recipe.train.bf16)
    if precision.emulated:
        log.warning("train.bf16=true on a device without native bf16: %s", precision.reason)
    return precision


def adapter_dir(recipe: Recipe) -> Path:
    return Path(recipe.train.output_dir) / ADAPTER_DIR


def checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first. The trainer writes trainer_state.json after the weights, optimizer,
    scheduler and RNG state: a run killed while saving leaves a folder without it, which is not resumable."""
    found = [
        p
        for p in output_dir.glob("checkpoint-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def check_output_dir(recipe: Recipe, *, resume: bool, overwrite: bool) -> None:
    """A finished run is never trained over by accident; an unfinished one is resumed or restarted on request."""
    out = Path(recipe.train.output_dir)
    finished = (out / ADAPTER_DIR / METADATA).exists()
    if resume and overwrite:
        raise SclError("--resume continues a run and --overwrite restarts it: choose one")
    if finished and not overwrite:
        raise SclError(
            "holds a finished run", path=out, hint="pass --overwrite to train again, or change train.output_dir"
        )
    if resume and not checkpoints(out):
        raise SclError("no checkpoint to resume from", path=out, hint=f"expected {out}/checkpoint-N")
    if not resume and checkpoints(out) and not overwrite:
        raise SclError(
            "holds checkpoints of an unfinished run", path=out, hint="pass --resume to continue it or --overwrite"
        )
    if overwrite and out.exists() and is_main_process():
        for item in [*checkpoints(out), out / ADAPTER_DIR]:
            shutil.rmtree(item, ignore_errors=True)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _dataset_matches(ds: BuiltDataset, recipe: Recipe) -> bool:
    built = ds.record.recipe
    now = recipe_dict(recipe)
    return built["data"] == now["data"] and built["windows"] == now["windows"] and built["model"] == now["model"]


def init_process_group(recipe: Recipe) -> None:
    """Several processes (torchrun, accelerate launch, the deepspeed launcher) on CPU: the process group must
    exist on gloo before anything else asks for one. Under DeepSpeed, DeepSpeed must create it or ranks
    disagree on the batch size; and Accelerate, asked first, would see one process per rank. On GPUs, and
    for one process without DeepSpeed, the launchers and TRL set everything up themselves."""
    if has_gpu():
        return
    if recipe.deepspeed and "RANK" not in os.environ:
        # one process without a launcher: DeepSpeed would look for MPI to learn its rank; tell it instead
        from sclcoder.endpoints import free_port

        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    elif int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if recipe.deepspeed:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block first; the other ranks wait for it, then run it too."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        from accelerate import PartialState  # on GPUs it sets the process group up itself

        with PartialState().main_process_first():
            yield
        return
    if not is_main_process():
        dist.barrier()
    yield
    if is_main_process():
        dist.barrier()


def ensure_dataset(recipe: Recipe) -> BuiltDataset:
    """The recipe's dataset: `data.dataset_dir` as built, else built (or reused if current) in output_dir."""
    if recipe.data.dataset_dir:
        return open_dataset(recipe.data.dataset_dir)
    path = default_dataset_dir(recipe)
    # The main process builds; the others wait, then read what it wrote.
    with main_process_first():
        if (path / "build.json").exists():  # reuse a current build, rebuild a stale one
            ds = open_dataset(path)
            if _dataset_matches(ds, recipe):
                return ds
        if is_main_process():
            build_dataset(recipe, path)
    return open_dataset(path)


def check_quantization(recipe: Recipe) -> None:
    if recipe.quantization.enabled and importlib.util.find_spec("bitsandbytes") is None:
        bits = "4-bit" if recipe.quantization.load_in_4bit else "8-bit"
        raise SclError(
            f"{bits} loading needs bitsandbytes, which is not installed",
            field="quantization",
            hint="pip install bitsandbytes",
        )


def sft_config(recipe: Recipe, *, has_eval: bool, precision: Precision | None = None) -> Any:
    """TRL's SFTConfig from the recipe's train section (names match one to one)."""
    from trl import SFTConfig

    t = recipe.train
    if t.eval_strategy != "no" and not has_eval:
        raise SclError("eval_strategy is set but the dataset has no validation examples", field="train.eval_strategy")
    gpu = has_gpu()
    precision = precision or training_precision(recipe)
    # the train section's names are SFTConfig's own; only what sclcoder resolves is set by hand
    return SFTConfig(
        **t.model_dump(exclude={"bf16", "torch_threads"}),
        data_seed=t.seed,
        bf16=precision.dtype == "bfloat16",
        fp16=precision.dtype == "float16",
        use_cpu=not gpu,
        completion_only_loss=True,  # prompt/completion data: the loss covers the answer only
        # tokens the optimizer has seen, padding excluded, kept in the trainer state (so across a resume):
        # the cost measure of the adapter record and the x-axis of task_eval's learning curves
        include_num_input_tokens_seen="non_padding",
        deepspeed=recipe.deepspeed_config(),
        disable_tqdm=not interactive(),
    )


def load_model(recipe: Recipe) -> Any:
    """The base model, quantised with bitsandbytes when the recipe asks for it."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    q = recipe.quantization
    kwargs: dict[str, Any] = {"dtype": torch_dtype(recipe.model.dtype)}
    if recipe.model.attn_implementation:
        kwargs["attn_implementation"] = recipe.model.attn_implementation
    if q.enabled:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=q.load_in_4bit,
            load_in_8bit=q.load_in_8bit,
            bnb_4bit_quant_type=q.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=q.bnb_4bit_use_double_quant,
            bnb_4bit_compute_dtype=torch_dtype(q.bnb_4bit_compute_dtype),
        )
    return AutoModelForCausalLM.from_pretrained(resolve_model(recipe.model.model_name_or_path), **kwargs)


def empty_answer_ids(rows: Any, tokenized: Any) -> list[int] | None:
    """The token ids TRL trains for the empty answer ("no codes"), read off the first such example."""
    from sclcoder.sft.answer import dump_answer, make_answer
    from sclcoder.train.callbacks import answer_ids

    empty = dump_answer(make_answer([]))
    for i, completion in enumerate(rows["completion"]):
        if completion.startswith(empty):  # the answer, then the end-of-turn token
            return answer_ids(tokenized[i])
    return None


def score_supervised_positions_only() -> None:
    """Make TRL's fused LM head project only the answer tokens on CPU, as it already does on GPUs.

    TRL 1.16 scores every position off Triton devices, so that tile shapes stay fixed for graph compilers
    (Neuron). On CPU nothing is compiled and the prompt's ~70% of positions only cost time: one LoRA step of
    the demo recipe took 1.5x as long (benchmarks/results.md). The loss is the same either way (tested)."""
    import trl.trainer.utils as trl_utils

    upstream = getattr(trl_utils, "_use_triton", None)
    if upstream is None or getattr(upstream, "sclcoder", False):
        return  # another TRL layout (pinned out), or already done

    def compact(device: Any) -> bool:
        return device.type == "cpu" or upstream(device)

    compact.sclcoder = True  # type: ignore[attr-defined]
    trl_utils._use_triton = compact


def lora_config(recipe: Recipe) -> Any:
    from peft import LoraConfig

    lo = recipe.lora
    return LoraConfig(
        r=lo.r,
        lora_alpha=lo.lora_alpha,
        lora_dropout=lo.lora_dropout,
        target_modules=lo.target_modules,
        bias=lo.bias,
        use_rslora=lo.use_rslora,
        task_type="CAUSAL_LM",
    )


def fitting_examples(split: Any, max_length: int, name: str) -> Any:
    """The prompt/completion pairs that fit max_length, with a warning naming how many did not.

    Truncation would cut the answer, teaching the model JSON that never closes; dropping is the lesser harm
    and the count tells the user to raise max_length or shorten windows.
    """
    fits = [
        i
        for i, r in enumerate(zip(split["prompt_tokens"], split["completion_tokens"], strict=True))
        if sum(r) <= max_length
    ]
    if len(fits) < len(split):
        log.warning(
            "%d of %d %s examples are longer than train.max_length=%d tokens and are left out "
            "(raise max_length or lower windows.max_tokens)",
            len(split) - len(fits),
            len(split),
            name,
            max_length,
        )
        split = split.select(fits)
    return split.select_columns(["prompt", "completion"])


# --------------------------------------------------------------------------------------------- train


def build_trainer(recipe: Recipe, dataset: BuiltDataset, precision: Precision | None = None) -> Any:
    """Tokenizer, SFTConfig, model, LoRA config and SFTTrainer, in that order."""
    from trl import SFTTrainer

    splits = dataset.load()
    train_set = fitting_examples(splits["train"], recipe.train.max_length, "training")
    eval_set = fitting_examples(splits["validation"], recipe.train.max_length, "validation") or None
    if not len(train_set):
        raise SclError("no training example fits train.max_length", field="train.max_length", path=dataset.path)

    # the tokenizer, with the pad token and chat template the dataset was rendered with
    tokenizer = load_tokenizer(recipe.model.tokenizer or recipe.model.model_name_or_path, recipe.model.chat_template)

    # training arguments come first: under DeepSpeed ZeRO-3 they must exist before the model is created
    args = sft_config(recipe, has_eval=eval_set is not None, precision=precision)

    # the model (optionally 4/8-bit) and the LoRA adapter TRL wraps around it
    model = load_model(recipe)
    peft_config = lora_config(recipe)
    score_supervised_positions_only()

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=peft_config,
    )

    # progress lines for piped logs, and the shares of padding and of "no codes" answers the optimizer saw
    from sclcoder.train.callbacks import BatchCounter, TrainingProgress

    trainer.data_collator = BatchCounter(trainer.data_collator, empty_answer_ids(train_set, trainer.train_dataset))
    trainer.add_callback(TrainingProgress(trainer.data_collator))
    if not interactive():
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # its raw dicts would repeat our lines
    return trainer


def train(
    recipe: Recipe, *, resume: bool = False, overwrite: bool = False, callbacks: Sequence[Any] = ()
) -> TrainResult:
    """Fine-tune the recipe's model on its dataset and save the adapter (see the module docstring).

    `callbacks` are TrainerCallbacks added to the trainer; one with a `bind(writer)` method is handed the
    AdapterWriter, to save the adapter as it stands midway (sclcoder.selection scores it so)."""
    check_output_dir(recipe, resume=resume, overwrite=overwrite)
    check_quantization(recipe)
    if recipe.train.torch_threads:
        import torch

        torch.set_num_threads(recipe.train.torch_threads)

    # precision from the hardware (bf16 only where it is native), said once and kept in the adapter record
    precision = training_precision(recipe)
    if is_main_process():
        mode = "bf16 autocast" if precision.dtype == "bfloat16" else precision.dtype
        say(f"precision: {mode} ({precision.reason})")
    if not interactive():
        import datasets

        datasets.disable_progress_bars()  # per-map bars would flood a piped log

    # under a launcher, the process group first; then the SCL mixture written by `data build` (built here,
    # by the main process, when the recipe names no dataset)
    init_process_group(recipe)
    dataset = ensure_dataset(recipe)
    trainer = build_trainer(recipe, dataset, precision)
    writer = AdapterWriter(trainer, recipe, dataset, precision)
    for callback in callbacks:
        if hasattr(callback, "bind"):
            callback.bind(writer)
        trainer.add_callback(callback)

    # train, continuing from the last checkpoint with --resume
    result = trainer.train(
        resume_from_checkpoint=str(checkpoints(Path(recipe.train.output_dir))[-1]) if resume else None
    )
    metrics = dict(result.metrics)
    if trainer.eval_dataset is not None and recipe.train.eval_strategy != "no":
        metrics.update(trainer.evaluate())

    out = writer.write(adapter_dir(recipe), metrics)
    return TrainResult(out, metrics)


class AdapterWriter:
    """Saves the adapter as it stands, with what predict and eval need to trust it, in one atomic step:
    at the end of training, and midway for a callback that scores it."""

    def __init__(self, trainer: Any, recipe: Recipe, dataset: BuiltDataset, precision: Precision) -> None:
        self.trainer = trainer
        self.recipe = recipe
        self.dataset = dataset
        self.precision = precision

    def write(self, out: Path, metrics: dict[str, Any]) -> Path:
        trainer = self.trainer
        staging = out.parent / f".{out.name}-staging"
        trainer.save_model(str(staging))  # every rank takes part: ZeRO-3 gathers the weights here
        if trainer.is_world_process_zero():
            with atomic_dir(out) as tmp:
                for item in staging.iterdir():
                    shutil.move(str(item), tmp / item.name)
                trainer.processing_class.save_pretrained(tmp)
                shutil.copyfile(self.dataset.path / PROMPT_FILE, tmp / PROMPT_FILE)
                record = adapter_metadata(self.recipe, self.dataset, metrics, trainer, self.precision)
                write_json_atomic(tmp / METADATA, record)
            shutil.rmtree(staging, ignore_errors=True)
        return out


def adapter_metadata(
    recipe: Recipe, dataset: BuiltDataset, metrics: dict[str, Any], trainer: Any, precision: Precision
) -> dict[str, Any]:
    """The adapter record (sclcoder.artifacts.AdapterRecord): validated here, so a bad field fails the run
    that writes it, not the predict that reads it."""
    history = [h for h in trainer.state.log_history if "loss" in h]
    resolved = recipe_dict(recipe)
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
        dataset={"path": str(dataset.path), "stats": dataset.stats},
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
    )
    return record.model_dump(mode="json")
