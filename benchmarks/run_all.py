"""`make bench`: every benchmark in one run, written to benchmarks/results.md with the machine and date.
Order matters: bench_predict, bench_inference and bench_grounding reuse the SCL adapter that bench_scl trains."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import bench_data
import bench_eval
import bench_grounding
import bench_inference
import bench_precision
import bench_predict
import bench_scl
from common import machine

from sclcoder.files import write_text_atomic

RESULTS = Path(__file__).with_name("results.md")


def main() -> None:
    started = time.perf_counter()
    minutes: dict[str, float] = {}

    def section(name: str, make: Callable[[], str]) -> str:
        begun = time.perf_counter()
        text = make()
        minutes[name] = (time.perf_counter() - begun) / 60
        return text

    sections = [
        section("precision", bench_precision.run),
        section("data", bench_data.run),
        section("eval", bench_eval.run),
        section("scl", lambda: bench_scl.run()[0]),
        section("predict", bench_predict.run),
        section("inference", bench_inference.run),
        section("grounding", bench_grounding.run),
    ]
    total = (time.perf_counter() - started) / 60
    scl_scratch = bench_scl.compute_minutes()
    # SCL runs are kept on disk and reused; from scratch the whole bench costs the other sections plus the
    # SCL compute measured when its runs were made
    scratch = total - minutes["scl"] + scl_scratch
    text = "\n\n".join(
        [
            "# sclcoder benchmarks",
            f"Machine: {machine()}. Written by `make bench` in {total:.0f} min; from scratch (no SCL runs kept on "
            f"disk) it takes about {scratch:.0f} min: "
            + ", ".join(f"{k} {v:.0f}" for k, v in {**minutes, "scl": scl_scratch}.items())
            + " min. Every ratio compares runs made side by side in this one invocation.",
            *sections,
        ]
    )
    write_text_atomic(RESULTS, text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
