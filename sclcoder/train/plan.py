"""`sclcoder train --dry-run`: check a recipe on a laptop before it runs on GPUs.

Validates the recipe, builds the model on the `meta` device from its config (the recipe's `model.config`
values, or the config file of a local/cached model: no weights are loaded), applies the LoRA config to
count trainable parameters, reads tokens and examples from the built dataset when there is one, and
estimates memory per device for the chosen precision, quantisation and ZeRO stage.

The memory estimate is rough by design (weights + LoRA training state + activations + logits + a fixed
framework overhead); it is meant to tell 8 GB from 80 GB, not to replace a profiler.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from sclcoder.device import Device, current_device, resolve_precision, weights_dtype
from sclcoder.errors import SclError
from sclcoder.recipe import Recipe

GiB = 1024**3


@dataclass
class Plan:
    recipe: str
    model: str
    total_params: int
    trainable_params: int
    devices: int
    zero_stage: int | None
    offload: bool
    precision: str
    precision_reason: str
    train_examples: int | None
    train_tokens: int | None
    steps: int | None
    memory: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def memory_total_gib(self) -> float:
        return sum(self.memory.values())


def _config(recipe: Recipe) -> Any:
    from transformers import AutoConfig, LlamaConfig

    if recipe.model.config:
        values = dict(recipe.model.config)
        model_type = values.pop("model_type", "llama")
        if model_type == "llama":
            return LlamaConfig(**values)
        from transformers import CONFIG_MAPPING

        return CONFIG_MAPPING[model_type](**values)
    from sclcoder.backbones import resolve_model

    try:
        return AutoConfig.from_pretrained(resolve_model(recipe.model.model_name_or_path))
    except OSError as exc:
        raise SclError(
            f"cannot read the config of {recipe.model.model_name_or_path!r} ({str(exc).splitlines()[0]})",
            field="model.config",
            hint="put the architecture values in model.config to plan without the hub",
        ) from None


def _count_params(recipe: Recipe, config: Any) -> tuple[int, int]:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from sclcoder.train.trainer import lora_config

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        total = sum(p.numel() for p in model.parameters())
        peft_model = get_peft_model(model, lora_config(recipe))
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return total, trainable


def _dataset_numbers(recipe: Recipe) -> tuple[int | None, int | None, str | None]:
    from sclcoder.artifacts import BUILD_FILE, open_dataset
    from sclcoder.sft.build import default_dataset_dir

    path = default_dataset_dir(recipe)
    if not (path / BUILD_FILE).exists():
        return None, None, f"no dataset at {path} yet: examples, tokens and steps are known after `data build`"
    stats = open_dataset(path).stats
    return stats["train"]["examples"], stats["train"]["tokens"], None


# A dry run on a laptop usually plans for GPUs: `--for-device cuda` assumes a bf16-capable one (A100/H100 class).
PLANNED_GPU = Device("cuda", "a bf16-capable CUDA GPU (assumed for the plan)", bf16=True)


def planning_device(kind: str | None) -> Device:
    if kind in (None, "here"):
        return current_device()
    if kind == "cuda":
        return PLANNED_GPU
    if kind == "cpu":
        return Device("cpu", "a CPU without native bf16 (assumed for the plan)", bf16=False)
    raise SclError(f"unknown device {kind!r} to plan for", hint="use here, cuda or cpu")


def estimate_memory(
    recipe: Recipe,
    config: Any,
    total: int,
    trainable: int,
    devices: int,
    zero: int | None,
    offload: bool,
    device: Device | None = None,
) -> dict[str, float]:
    """GiB per device, by component."""
    device = device or current_device()
    t = recipe.train
    q = recipe.quantization
    if q.load_in_4bit:
        weight_bytes = 0.55 if q.bnb_4bit_use_double_quant else 0.6  # NF4 + quantisation constants
    elif q.load_in_8bit:
        weight_bytes = 1.05
    else:
        weight_bytes = 4.0 if weights_dtype(recipe.model.dtype, device) == "float32" else 2.0
    weights = total * weight_bytes
    if zero == 3:
        weights /= devices
    # LoRA parameters in fp32, their gradients, and Adam's two moments
    lora_state = trainable * (4 + 4 + 8)
    if zero in (2, 3):
        lora_state = trainable * 4 + trainable * 12 / devices
    if offload:
        lora_state = trainable * 4
    hidden = int(getattr(config, "hidden_size", 0))
    layers = int(getattr(config, "num_hidden_layers", 0))
    vocab = int(getattr(config, "vocab_size", 0))
    tokens = t.max_length * t.per_device_train_batch_size
    half = (
        resolve_precision(t.bf16, device).dtype != "float32" or weights_dtype(recipe.model.dtype, device) != "float32"
    )
    act_bytes = 2 if half else 4
    if t.gradient_checkpointing:
        # layer inputs kept, one layer recomputed at a time (fused attention: no s^2 term)
        activations = tokens * hidden * act_bytes * (layers + 17)
    else:
        activations = tokens * hidden * act_bytes * 17 * layers
    logits = tokens * vocab * 4 * 2  # fp32 logits and their gradient
    return {
        "weights": weights / GiB,
        "lora parameters, gradients, optimizer": lora_state / GiB,
        "activations": activations / GiB,
        "logits": logits / GiB,
        "framework overhead": 1.0,
    }


def plan_training(
    recipe: Recipe, *, devices: int | None = None, recipe_path: str = "", for_device: str | None = None
) -> Plan:
    device = planning_device(for_device)
    devices = devices or int(os.environ.get("WORLD_SIZE", "1"))
    if devices < 1:
        raise SclError("devices must be at least 1")
    config = _config(recipe)
    total, trainable = _count_params(recipe, config)
    ds = recipe.deepspeed_config()
    zero = int(ds.get("zero_optimization", {}).get("stage", 0)) if ds else None
    offload = bool(ds and ds.get("zero_optimization", {}).get("offload_optimizer"))
    q = recipe.quantization
    mixed = resolve_precision(recipe.train.bf16, device)
    weights = (
        "4-bit NF4" if q.load_in_4bit else "8-bit" if q.load_in_8bit else weights_dtype(recipe.model.dtype, device)
    )
    precision = f"weights {weights}, compute {mixed.dtype}"
    examples, tokens, note = _dataset_numbers(recipe)
    notes = [note] if note else []
    t = recipe.train
    per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps * devices
    if t.max_steps > 0:
        steps: int | None = t.max_steps
    elif examples is not None:
        steps = math.ceil(examples / per_step) * math.ceil(t.num_train_epochs)
    else:
        steps = None
    epochs_tokens = int(tokens * t.num_train_epochs) if tokens is not None and t.max_steps <= 0 else tokens
    return Plan(
        recipe=recipe.name or recipe_path,
        model=recipe.model.model_name_or_path,
        total_params=total,
        trainable_params=trainable,
        devices=devices,
        zero_stage=zero,
        offload=offload,
        precision=precision,
        precision_reason=mixed.reason,
        train_examples=examples,
        train_tokens=epochs_tokens,
        steps=steps,
        memory=estimate_memory(recipe, config, total, trainable, devices, zero, offload, device),
        notes=notes,
    )


def print_plan(plan: Plan) -> None:
    from rich.table import Table

    from sclcoder.progress import console

    def fmt(n: int | None) -> str:
        return "unknown" if n is None else f"{n:,}"

    table = Table(title=f"training plan: {plan.recipe}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("base model", plan.model),
        (
            "parameters",
            f"{plan.total_params:,} total, {plan.trainable_params:,} trainable "
            f"({100 * plan.trainable_params / max(1, plan.total_params):.2f}%)",
        ),
        ("precision", f"{plan.precision} ({plan.precision_reason})"),
        (
            "devices",
            f"{plan.devices}"
            + (f", DeepSpeed ZeRO-{plan.zero_stage}" if plan.zero_stage else "")
            + (" + CPU offload" if plan.offload else ""),
        ),
        ("training examples", fmt(plan.train_examples)),
        ("training tokens", fmt(plan.train_tokens)),
        ("optimizer steps", fmt(plan.steps)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    for part, gib in plan.memory.items():
        table.add_row(f"memory: {part}", f"{gib:.2f} GiB")
    table.add_row("memory per device (rough)", f"[bold]{plan.memory_total_gib:.1f} GiB[/]")
    console.print(table)
    for note in plan.notes:
        console.print(f"[yellow]note:[/] {note}")
