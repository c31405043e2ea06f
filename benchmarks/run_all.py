"""`make bench`: every benchmark in one run, written to benchmarks/results.md with the machine and date.
Order matters: bench_predict, bench_inference and bench_grounding reuse the SCL adapter that bench_scl trains."""

from __future__ import annotations

import sys
import time
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
    sections = [
        bench_precision.run(),
        bench_data.run(),
        bench_eval.run(),
        bench_scl.run()[0],
        bench_predict.run(),
        bench_inference.run(),
        bench_grounding.run(),
    ]
    minutes = (time.perf_counter() - started) / 60
    text = "\n\n".join(
        [
            "# sclcoder benchmarks",
            f"Machine: {machine()}. Written by `make bench` ({minutes:.0f} min); "
            "every ratio compares runs made side by side in this one invocation.",
            *sections,
        ]
    )
    write_text_atomic(RESULTS, text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
