"""Put on PYTHONPATH of a benchmark child capped to AVX2 (common.AVX2), so that every process of it, vLLM's
spawned workers included, sees what an AVX2 CPU reports.

The caps reach torch's kernels and oneDNN, not torch's CPUID report: on a CPU with AMX, vLLM still picks its
AMX attention kernel for bf16, and since capped oneDNN never asks the kernel for AMX tile state, the worker
dies of SIGILL (seen on an Intel Xeon with amx_bf16, 2026-12-02). An AVX2 CPU has no AMX tiles."""

import os

if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "avx2":
    import torch.cpu

    torch.cpu._is_amx_tile_supported = lambda: False
