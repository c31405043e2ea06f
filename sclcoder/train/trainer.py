"""`sclcoder train RECIPE`: LoRA / QLoRA supervised fine-tuning with TRL and PEFT, optionally under DeepSpeed.

Read it top to bottom: recipe in; dataset, tokenizer, SFTConfig, model, LoRA config and SFTTrainer built in
plain sight; train; save the adapter with what predict and eval need to trust it (recipe, prompt version,
dataset stats, the code list it was trained on). The same code runs one CPU process and many GPUs under
`accelerate launch`, `torchrun` or the `deepspeed` launcher: the launchers start the ranks (on CPU the
process group is put on gloo here), TRL, Accelerate and DeepSpeed do the distribution. Loss covers the
answer only (prompt/completion data).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sclcoder.artifacts import ADAPTER_DIR, BUILD_FILE, METADATA, Adapter, BuiltDataset, open_dataset
from sclcoder.backbones import load_tokenizer, resolve_model
from sclcoder.device import Precision, has_gpu, resolve_precision, weights_dtype
from sclcoder.errors import SclError
from sclcoder.progress import interactive, say
from sclcoder.recipe import Recipe, recipe_dict
from sclcoder.sft.build import build_dataset, default_dataset_dir
from sclcoder.train.adapter import AdapterWriter
from sclcoder.train.ranks import init_process_group, is_main_process, main_process_first

log = logging.getLogger("sclcoder")


@dataclass
class TrainResult:
    adapter: Adapter
    metrics: dict[str, Any]

    @property
    def adapter_dir(self) -> Path:
        return self.adapter.path


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
    """A finished run is never trained over by accident; an unfinished one is resumed or restarted on request.
    Nothing is removed here: `clear_previous_run` does that once the new run's data have been read."""
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


def clear_previous_run(recipe: Recipe) -> None:
    """With --overwrite, the earlier run's checkpoints and adapter go, once the new run has its data (a broken
    source stops the new run before anything of the old one is lost)."""
    out = Path(recipe.train.output_dir)
    if out.exists() and is_main_process():
        for item in [*checkpoints(out), out / ADAPTER_DIR]:
            shutil.rmtree(item, ignore_errors=True)


def _dataset_matches(ds: BuiltDataset, recipe: Recipe) -> bool:
    built = ds.record.recipe
    now = recipe_dict(recipe)
    return built["data"] == now["data"] and built["windows"] == now["windows"] and built["model"] == now["model"]


def ensure_dataset(recipe: Recipe) -> BuiltDataset:
    """The recipe's dataset: `data.dataset_dir` as built, else built (or reused if current) in output_dir."""
    if recipe.data.dataset_dir:
        return open_dataset(recipe.data.dataset_dir)
    path = default_dataset_dir(recipe)
    # The main process builds; the others wait, then read what it wrote.
    with main_process_first():
        if (path / BUILD_FILE).exists():  # reuse a current build, rebuild a stale one
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


def parent_adapter(recipe: Recipe) -> Adapter:
    """The adapter `parent.adapter` names, checked to sit on this recipe's base model."""
    from sclcoder.artifacts import open_adapter

    assert recipe.parent is not None
    parent = open_adapter(recipe.parent.adapter)
    if parent.merged:
        raise SclError("is a merged model: continue the LoRA adapter it was merged from", path=parent.path)
    if parent.record.base_model_path != resolve_model(recipe.model.model_name_or_path):
        raise SclError(
            f"was trained on {parent.record.base_model}, this recipe's model is {recipe.model.model_name_or_path}",
            path=parent.path,
            field="model.model_name_or_path",
        )
    return parent


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
    eval_set = (
        fitting_examples(splits["validation"], recipe.train.max_length, "validation")
        if "validation" in splits
        else None
    )
    eval_set = eval_set or None
    if not len(train_set):
        raise SclError("no training example fits train.max_length", field="train.max_length", path=dataset.path)

    # the tokenizer, with the pad token and chat template the dataset was rendered with
    tokenizer = load_tokenizer(recipe.model.tokenizer or recipe.model.model_name_or_path, recipe.model.chat_template)

    # training arguments come first: under DeepSpeed ZeRO-3 they must exist before the model is created
    args = sft_config(recipe, has_eval=eval_set is not None, precision=precision)

    # the model (optionally 4/8-bit) and the LoRA adapter TRL wraps around it: new weights, or the parent's
    # (`train --from`), which carry on with the parent's own LoRA settings
    model = load_model(recipe)
    peft_config = lora_config(recipe) if recipe.parent is None else None
    if recipe.parent is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(parent_adapter(recipe).path), is_trainable=True)
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
    AdapterWriter, to save the adapter as it stands midway (sclcoder.task_eval scores it so)."""
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
    if recipe.parent is not None:
        parent_adapter(recipe)  # a wrong parent fails before any data is built
    dataset = ensure_dataset(recipe)
    if overwrite:
        clear_previous_run(recipe)
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

    return TrainResult(writer.write(adapter_dir(recipe), metrics), metrics)
