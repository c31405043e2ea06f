"""Plain `predict` against `predict --ray` with 1 and 2 actors, side by side in one invocation, on the demo's
test notes with the demo adapter (merged, vLLM in process, one engine per actor): wall time per configuration
(engine start included, as a user meets it), notes/s, the overhead per note against plain predict, and the
predictions compared note by note (greedy decoding: they must be the same). Each configuration runs
`REPEATS` times in rotated order on a local Ray cluster of this machine's cores. The throughput of one actor
projects what N GPUs would give; that line is a projection, not a measurement."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

from common import DEMO_ADAPTER, DEMO_NOTES, RUNS, table

from sclcoder.artifacts import open_adapter
from sclcoder.data.documents import read_documents, write_documents
from sclcoder.files import write_text_atomic
from sclcoder.infer.predict import predict
from sclcoder.infer.settings import predict_settings

NOTES, REPEATS = 4, 3
CONFIGS = ("plain", "ray, 1 actor", "ray, 2 actors")


SCORES = ("confidence", "support")
TOLERANCE = 1e-4
"""Confidences of one engine differ by ~1e-6 from run to run (plain against plain, measured); answers must not."""


def same_lines(a: Path, b: Path) -> tuple[bool, float]:
    """Whether two predictions files hold the same codes, quotes, windows and errors note by note, confidences
    within TOLERANCE; and the largest confidence difference."""
    rows = [{r["id"]: r for r in map(json.loads, p.read_text().splitlines())} for p in (a, b)]
    if rows[0].keys() != rows[1].keys():
        return False, float("nan")
    same, largest = True, 0.0
    for note, x in rows[0].items():
        y = rows[1][note]
        strip = [[{k: v for k, v in c.items() if k not in SCORES} for c in r["codes"]] for r in (x, y)]
        same &= strip[0] == strip[1] and x["windows"] == y["windows"] and x["errors"] == y["errors"]
        for cx, cy in zip(x["codes"], y["codes"], strict=False):
            if cx.get("confidence") is not None and cy.get("confidence") is not None:
                largest = max(largest, abs(cx["confidence"] - cy["confidence"]))
    return same and largest <= TOLERANCE, largest


def _target(out: Path, config: str, repeat: int) -> Path:
    return out / f"{config.replace(', ', '-').replace(' ', '_')}-{repeat}.jsonl"


def run(adapter_dir: Path = DEMO_ADAPTER, notes_file: Path = DEMO_NOTES) -> str:
    import ray

    from sclcoder.infer.distributed import predict_on_ray

    out = RUNS / "ray"
    out.mkdir(parents=True, exist_ok=True)
    notes = out / "notes.jsonl"
    write_documents(notes, list(read_documents(notes_file))[:NOTES])
    adapter = open_adapter(adapter_dir)
    # every run's time is kept as it finishes: an interrupted invocation resumes with the runs still missing
    timing_file = out / "timing.json"
    timing: dict[str, float] = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        for r in range(REPEATS):
            for config in CONFIGS[r % 3 :] + CONFIGS[: r % 3]:  # rotated: no configuration always runs first
                target = _target(out, config, r)
                if target.name in timing and target.exists():
                    continue
                started = time.perf_counter()
                if config == "plain":
                    predict(notes, target, adapter=adapter, overwrite=True)
                else:
                    actors = 1 if "1 actor" in config else 2
                    settings = predict_settings(adapter, None, [f"ray_actors={actors}"])
                    predict_on_ray(notes, target, adapter=adapter, settings=settings, overwrite=True)
                timing[target.name] = time.perf_counter() - started
                write_text_atomic(timing_file, json.dumps(timing, indent=1))
    finally:
        ray.shutdown()
    seconds = {c: [timing[_target(out, c, r).name] for r in range(REPEATS)] for c in CONFIGS}
    # every file against the first plain run: the plain repeats show the engine's own run-to-run noise
    compared = {c: [same_lines(_target(out, "plain", 0), _target(out, c, r)) for r in range(REPEATS)] for c in CONFIGS}
    plain = statistics.mean(seconds["plain"])
    rows = []
    for config in CONFIGS:
        values = seconds[config]
        mean, sd = statistics.mean(values), statistics.stdev(values)
        rows.append(
            [
                config,
                len(values),
                f"{mean:.1f} ± {sd:.1f}",
                f"{NOTES / mean:.3f}",
                "-" if config == "plain" else f"{(mean - plain) / NOTES:+.1f}",
                "yes" if all(ok for ok, _ in compared[config]) else "NO",
                f"{max(d for _, d in compared[config]):.1e}",
            ]
        )
    one = NOTES / statistics.mean(seconds["ray, 1 actor"])
    return "\n".join(
        [
            "## Prediction over Ray: plain predict against predict --ray (benchmarks/bench_ray.py)",
            "",
            f"{NOTES} demo test notes, demo adapter merged, vLLM in process (one "
            f"engine per actor), a local Ray cluster of this machine; each configuration {REPEATS} times in "
            "rotated order, wall time including engine start (mean ± sd).",
            "",
            table(
                [
                    "configuration",
                    "runs",
                    "seconds",
                    "notes/s",
                    "overhead s/note vs plain",
                    "same answers as plain run 1",
                    "largest confidence difference",
                ],
                rows,
            ),
            "",
            f"Projection, not a measurement: one actor coded {one:.3f} notes/s here; N actors on N GPUs, each as fast "
            f"as one here, would code about N x {one:.3f} notes/s (no shared-CPU contention between actors there).",
        ]
    )


if __name__ == "__main__":
    print(run(*[Path(a) for a in sys.argv[1:]]))
