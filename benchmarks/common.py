"""Helpers shared by the benchmark scripts: machine description and markdown tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUNS = Path(os.environ.get("SCLCODER_BENCH_DIR", "runs/bench"))
# a child capped like an AVX2 CPU: torch's and oneDNN's ISA caps, and AVX2's CPUID answers for what the caps
# do not reach (avx2_cpu/sitecustomize.py)
AVX2 = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().with_name("avx2_cpu")), os.environ.get("PYTHONPATH")])
    ),
}


def machine() -> str:
    """The CPU by model, cores and ISA flags (avx2 / avx512f / avx512_bf16 / amx): times mean nothing without."""
    import torch

    from sclcoder.device import cpu_info

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu_info().describe()}, {gpu}, Python {platform.python_version()}, torch {torch.__version__} "
        f"({datetime.now(UTC).date().isoformat()})"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@contextmanager
def timed() -> Iterator[list[float]]:
    box: list[float] = []
    start = time.perf_counter()
    yield box
    box.append(time.perf_counter() - start)


def in_child(call: str, env: dict[str, str]) -> Any:
    """Run `call` (an expression over the benchmark modules, returning JSON-able data) in a fresh interpreter
    with `env` added: ISA caps and vLLM's process switch act only when torch and vLLM start."""
    code = f"import json, {call.split('.')[0]}; print('RESULT', json.dumps({call}))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
    )
    if proc.returncode:  # the child's own last words, not only its exit status
        tail = "\n".join(proc.stderr.splitlines()[-30:])
        raise RuntimeError(f"{call} failed (exit {proc.returncode}) with {env}:\n{tail}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))
