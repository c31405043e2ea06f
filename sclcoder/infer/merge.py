"""The adapter merged into its base weights: what `predict` serves on CPU (vLLM's LoRA path is several
times slower there) and what `sclcoder model merge` hands to tools that know nothing of sclcoder or PEFT."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sclcoder.artifacts import METADATA, PROMPT_FILE, Adapter
from sclcoder.errors import SclError
from sclcoder.files import atomic_dir


def peft_model(adapter: Adapter) -> Any:
    """The adapter on its base model in memory, in float32 (merging sums in full precision)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if adapter.merged:
        raise SclError("is a merged model already (no LoRA adapter to merge)", path=adapter.path)
    base = AutoModelForCausalLM.from_pretrained(adapter.base_model, dtype=torch.float32)
    try:
        return PeftModel.from_pretrained(base, adapter.path)
    except Exception as exc:  # a truncated or foreign weights file fails deep in safetensors or torch
        weights = next(iter(sorted(adapter.path.glob("adapter_model.*"))), adapter.path)
        raise SclError(f"the adapter's weights cannot be loaded ({type(exc).__name__}: {exc})", path=weights) from None


def merge_adapter(adapter: Adapter, target: str | os.PathLike[str], *, replace: bool = False) -> Path:
    """The adapter merged into its base weights, as a plain model folder that vLLM, transformers or any
    OpenAI-compatible server loads without sclcoder or PEFT: safetensors weights in the base model's
    dtype, the tokenizer with its chat template, and the sclcoder record and prompt beside them."""
    import shutil

    import torch
    from transformers import AutoTokenizer

    model = peft_model(adapter)
    dtype = model.get_base_model().config.dtype
    model = model.merge_and_unload().to(dtype if isinstance(dtype, torch.dtype) else torch.float32)
    with atomic_dir(target, replace=replace, what="model folder") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(adapter.path).save_pretrained(tmp)
        for name in (METADATA, PROMPT_FILE):
            if (adapter.path / name).exists():
                shutil.copy2(adapter.path / name, tmp / name)
    return Path(target)


MERGED_DIR = "merged"
"""Where predict keeps the merged model it serves on CPU, inside the adapter's folder."""


def merged_model(adapter: Adapter) -> Path:
    """The merged model predict serves on CPU, made once and kept inside the adapter (a merged model is its
    own)."""
    if adapter.merged:
        return adapter.path
    target = adapter.path / MERGED_DIR
    if (target / "config.json").exists():
        return target
    return merge_adapter(adapter, target, replace=True)  # inside the adapter: ours


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
