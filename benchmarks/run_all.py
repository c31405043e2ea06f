"""`make bench`: every benchmark but the SCL experiment (`make bench-scl`), each written into its own section
of benchmarks/results.md with the commit, machine and date. The inference benchmarks measure the demo's
adapter: it is trained here once (the demo end to end, timed) and reused while it is on disk."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import bench_confidence
import bench_data
import bench_eval
import bench_feedback
import bench_grounding
import bench_inference
import bench_precision
import bench_predict
import bench_ray
from common import DEMO, DEMO_ADAPTER, provenance, write_section


def demo() -> str:
    """The demo end to end into runs/bench/demo (what `make demo` runs), for its adapter and its wall time."""
    from sclcoder.demo.run import run_demo

    result = run_demo(DEMO)
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.stage_seconds.items())
    return "\n".join(
        [
            "## The demo end to end (the adapter the inference sections use)",
            "",
            f"`sclcoder demo` into {DEMO}: {result.total_seconds:.0f} s ({stages}); test codes micro / macro / "
            f"evidence PI token F1 {100 * result.test.codes_micro_f1:.1f} / {100 * result.test.codes_macro_f1:.1f} "
            f"/ {100 * result.test.evidence_token_f1:.1f} ({result.test.gold.notes} notes), phrase-disjoint "
            f"{100 * result.unseen.codes_micro_f1:.1f} / {100 * result.unseen.codes_macro_f1:.1f} / "
            f"{100 * result.unseen.evidence_token_f1:.1f} ({result.unseen.gold.notes} notes). One run.",
        ]
    )


def main(only: list[str]) -> None:
    """Every section, or those named (`python benchmarks/run_all.py confidence predict`): each is written into
    results.md as it finishes, so a stopped run keeps what it measured and can go on with the rest."""
    started = time.perf_counter()
    sections: list[tuple[str, Callable[[], str]]] = [
        ("precision", bench_precision.run),
        ("data", bench_data.run),
        ("eval", bench_eval.run),
    ]
    if not (DEMO_ADAPTER / "sclcoder.json").exists():
        sections.append(("demo", demo))
    sections += [
        ("confidence", bench_confidence.run),
        ("predict", bench_predict.run),
        ("inference", bench_inference.run),
        ("grounding", bench_grounding.run),
        ("ray", bench_ray.run),
        ("feedback", bench_feedback.run),  # hours on 2 CPU cores; resumes round by round
    ]
    unknown = set(only) - {name for name, _ in sections} - {"demo"}
    if unknown:
        sys.exit(f"unknown section(s) {', '.join(sorted(unknown))}; sections: {', '.join(n for n, _ in sections)}")
    for name, make in sections:
        if only and name not in only and name != "demo":  # the demo trains the adapter the others measure
            continue
        begun = time.perf_counter()
        text = make()
        heading, _, body = text.partition("\n")
        write_section(name, f"{heading}\n\n{provenance((time.perf_counter() - begun) / 60)}\n{body}")
        sys.stdout.write(text + "\n\n")
    sys.stdout.write(f"make bench: {(time.perf_counter() - started) / 60:.0f} min\n")


if __name__ == "__main__":
    main(sys.argv[1:])
