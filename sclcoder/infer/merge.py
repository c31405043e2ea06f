"""The adapter merged into its base weights: what `predict` serves on CPU (vLLM's LoRA path is several
times slower there) and what `sclcoder model merge` hands to tools that know nothing of sclcoder or PEFT."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sclcoder.artifacts import METADATA, Adapter
from sclcoder.files import atomic_dir
from sclcoder.sft.prompts import PROMPT_FILE


def peft_model(adapter: Adapter) -> Any:
    """The adapter on its base model in memory, in float32 (merging sums in full precision)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(adapter.base_model, dtype=torch.float32)
    return PeftModel.from_pretrained(base, adapter.path)


def merge_adapter(adapter: Adapter, target: str | os.PathLike[str]) -> Path:
    """The adapter merged into its base weights, as a plain model folder that vLLM, transformers or any
    OpenAI-compatible server loads without sclcoder or PEFT: safetensors weights in the base model's
    dtype, the tokenizer with its chat template, and the sclcoder record and prompt beside them."""
    import shutil

    import torch
    from transformers import AutoTokenizer

    model = peft_model(adapter)
    dtype = model.get_base_model().config.dtype
    model = model.merge_and_unload().to(dtype if isinstance(dtype, torch.dtype) else torch.float32)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(adapter.path).save_pretrained(tmp)
        for name in (METADATA, PROMPT_FILE):
            if (adapter.path / name).exists():
                shutil.copy2(adapter.path / name, tmp / name)
    return Path(target)


def merged_model(adapter: Adapter) -> Path:
    """The merged model predict serves on CPU, made once and kept beside the adapter."""
    target = adapter.path / "merged"
    if (target / "config.json").exists():
        return target
    return merge_adapter(adapter, target)


def merged_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """The weights a PEFT model in memory would have once merged, named as in the base checkpoint: one
    tensor per layer that carries LoRA (the only weights LoRA training changes). `model` is left as it is,
    unlike PEFT's merge/unmerge, whose round trip drifts low-precision base weights at every call."""
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_module_weight

    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, LoraLayer) or module.merged:
                continue
            active = [a for a in module.active_adapters if a in module.lora_A]
            if not active:
                continue
            base = module.get_base_layer()
            # out of place: `.float()` of a float32 weight is the weight itself, which must not change
            weight = dequantize_module_weight(base).float()  # a 4-bit base too
            weight = weight + sum(module.get_delta_weight(adapter).float() for adapter in active)
            dtype = base.weight.dtype if base.weight.is_floating_point() else torch.float32
            yield f"{name.removeprefix('base_model.model.')}.weight", weight.to(dtype)
