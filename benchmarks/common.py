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
DEMO = RUNS / "demo"
"""`make bench` trains the demo here once (run_all.py) and measures inference with its adapter and notes."""
DEMO_ADAPTER = DEMO / "run" / "adapter"
DEMO_NOTES = DEMO / "test-notes.jsonl"
# a child capped like an AVX2 CPU: torch's, oneDNN's and MKL's ISA caps (without the MKL one, float32 matmuls
# on an Intel AVX-512 CPU still run at AVX-512 speed), and AVX2's CPUID answers for what the caps do not reach
# (avx2_cpu/sitecustomize.py)
AVX2 = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().with_name("avx2_cpu")), os.environ.get("PYTHONPATH")])
    ),
}


def wider_than_avx2() -> bool:
    """Whether this CPU has vector units the AVX2 caps take away (on an AVX2-only CPU the capped rows would
    only repeat the uncapped ones)."""
    from sclcoder.device import cpu_info

    return "avx512f" in cpu_info().flags


def commit() -> str:
    """The commit the numbers come from, and whether the tree had changes on top of it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    status = git("status", "--porcelain").splitlines()
    # the benchmarks' own outputs (results.md, the curves) change by running them
    outputs = ("benchmarks/results", "benchmarks/feedback_curve", "benchmarks/scl_learning_curves")
    changed = [line.split(maxsplit=1)[1] for line in status if not any(o in line for o in outputs)]
    if not changed:
        return f"{head} (clean tree)"
    named = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"{head} with {len(changed)} uncommitted change(s): {named}"


def spread(values: Sequence[float], digits: int = 2) -> str:
    """mean ± sd (n) of repeated measurements."""
    import statistics

    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f} (n={len(values)})"


RESULTS = Path(__file__).with_name("results.md")
HEADER = (
    "# sclcoder benchmarks\n\n"
    "Written by `make bench` (every section but the SCL experiment) and `make bench-scl` (the SCL experiment). "
    "Each section starts with the commit, the machine and the date that produced it; every ratio in a section "
    "compares runs made side by side in that one invocation, and each table says how many repeats stand "
    "behind its numbers.\n"
)


def write_section(name: str, text: str) -> None:
    """Put one benchmark's section into results.md in place of its earlier one (the others stay as they were)."""
    import re

    from sclcoder.files import write_text_atomic

    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else ""
    if not old.startswith(HEADER):
        old = HEADER  # a file of an older layout: its numbers live on in the git log
    if begin in old:
        new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    write_text_atomic(RESULTS, new.rstrip() + "\n")


def provenance(minutes: float) -> str:
    """The line every section starts with: what code, on what machine, when, and how long the section took."""
    return f"Commit {commit()}; {machine()}; {minutes:.0f} min."


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
