"""Helpers shared by the benchmark scripts: machine description and markdown tables."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

RUNS = Path(os.environ.get("SCLCODER_BENCH_DIR", "runs/bench"))


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
