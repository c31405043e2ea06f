"""The adapter merged into its base weights: what `predict` serves on CPU (vLLM's LoRA path is several
times slower there) and what `sclcoder model merge` hands to tools that know nothing of sclcoder or PEFT."""

from __future__ import annotations

import os
from pathlib import Path

from sclcoder.artifacts import METADATA, Adapter
from sclcoder.files import atomic_dir
from sclcoder.sft.prompts import PROMPT_FILE


def merge_adapter(adapter: Adapter, target: str | os.PathLike[str]) -> Path:
    """The adapter merged into its base weights, as a plain model folder that vLLM, transformers or any
    OpenAI-compatible server loads without sclcoder or PEFT: safetensors weights in the base model's
    dtype, the tokenizer with its chat template, and the sclcoder record and prompt beside them."""
    import shutil

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(adapter.base_model, dtype=torch.float32)
    dtype = base.config.dtype if isinstance(base.config.dtype, torch.dtype) else torch.float32
    model = PeftModel.from_pretrained(base, adapter.path).merge_and_unload().to(dtype)
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
