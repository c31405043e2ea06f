"""Precision from the hardware: `auto` picks bf16 only where it is native, and the ISA caps are honoured."""

from __future__ import annotations

import pytest

from sclcoder.device import CpuInfo, Device, resolve_precision, weights_dtype

ZEN4 = frozenset(["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"])
XEON_NO_BF16 = frozenset(["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"])
SAPPHIRE = frozenset(["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"])
EPYC_AVX2 = frozenset(["sse4_2", "avx", "avx2", "fma"])


@pytest.fixture(autouse=True)
def _no_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)


def cpu(flags: frozenset[str]) -> Device:
    info = CpuInfo("test cpu", 2, flags)
    return Device("cpu", info.describe(), info.native_bf16)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(ZEN4, "bfloat16"), (SAPPHIRE, "bfloat16"), (XEON_NO_BF16, "float32"), (EPYC_AVX2, "float32")],
)
def test_auto_is_bf16_only_with_native_bf16_instructions(flags: frozenset[str], expected: str) -> None:
    chosen = resolve_precision("auto", cpu(flags))
    assert chosen.dtype == expected and not chosen.emulated
    assert ("native bf16" in chosen.reason) == (expected == "bfloat16")


@pytest.mark.parametrize(
    ("env", "value"),
    [("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")],
)
def test_isa_caps_make_a_bf16_cpu_choose_as_the_capped_cpu(monkeypatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    info = CpuInfo("zen4", 2, ZEN4)
    assert not info.native_bf16
    assert f"{env}={value}" in info.describe()
    assert resolve_precision("auto", cpu(ZEN4)).dtype == "float32"


def test_a_cap_at_or_above_bf16_keeps_it(monkeypatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    assert CpuInfo("zen4", 2, ZEN4).native_bf16


def test_isa_names_the_class() -> None:
    assert CpuInfo("x", 2, EPYC_AVX2).isa == "avx2"
    assert CpuInfo("x", 2, XEON_NO_BF16).isa == "avx2 avx512f avx512_vnni"
    assert CpuInfo("x", 2, SAPPHIRE).isa.endswith("avx512_bf16 amx_bf16")


def test_explicit_values_win_and_say_when_emulated() -> None:
    slow = resolve_precision(True, cpu(EPYC_AVX2))
    assert slow.dtype == "bfloat16" and slow.emulated and "emulates" in slow.reason
    fast = resolve_precision(True, cpu(ZEN4))
    assert fast.dtype == "bfloat16" and not fast.emulated
    assert resolve_precision(False, cpu(ZEN4)).dtype == "float32"
    assert resolve_precision("float16", cpu(ZEN4)).emulated


def test_gpus_take_their_native_half_precision() -> None:
    a100, t4 = Device("cuda", "A100", True), Device("cuda", "T4", False)
    assert resolve_precision("auto", a100).dtype == "bfloat16"
    assert resolve_precision("auto", t4).dtype == "float16"
    assert resolve_precision(True, t4).emulated
    # weights: the GPU's half precision; on CPU float32, with bf16 (if any) from autocast
    assert weights_dtype("auto", a100) == "bfloat16" and weights_dtype("auto", t4) == "float16"
    assert weights_dtype("auto", cpu(ZEN4)) == "float32"
    assert weights_dtype("bfloat16", cpu(EPYC_AVX2)) == "bfloat16"


def test_this_machine_is_described_from_its_flags() -> None:
    from sclcoder.device import cpu_info

    info = cpu_info()
    assert info.cores >= 1 and info.model
    with open("/proc/cpuinfo") as fh:
        flags = fh.read().replace("\n", " ")
    assert ("avx2" in info.isa) == (" avx2 " in flags)
