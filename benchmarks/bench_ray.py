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
from sclcoder.infer.predict import predict
from sclcoder.infer.settings import predict_settings

NOTES, REPEATS = 4, 3
CONFIGS = ("plain", "ray, 1 actor", "ray, 2 actors")


def _lines(path: Path) -> dict[str, dict]:
    keep = ("codes", "windows", "errors")
    return {r["id"]: {k: r[k] for k in keep} for r in map(json.loads, path.read_text().splitlines())}


def run(adapter_dir: Path = DEMO_ADAPTER, notes_file: Path = DEMO_NOTES) -> str:
    import ray

    from sclcoder.infer.distributed import predict_on_ray

    out = RUNS / "ray"
    out.mkdir(parents=True, exist_ok=True)
    notes = out / "notes.jsonl"
    write_documents(notes, list(read_documents(notes_file))[:NOTES])
    adapter = open_adapter(adapter_dir)
    seconds: dict[str, list[float]] = {c: [] for c in CONFIGS}
    same: dict[str, bool] = {}
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        for r in range(REPEATS):
            for config in CONFIGS[r % 3 :] + CONFIGS[: r % 3]:  # rotated: no configuration always runs first
                target = out / f"{config.replace(', ', '-').replace(' ', '_')}-{r}.jsonl"
                started = time.perf_counter()
                if config == "plain":
                    predict(notes, target, adapter=adapter, overwrite=True)
                else:
                    actors = 1 if "1 actor" in config else 2
                    settings = predict_settings(adapter, None, [f"ray_actors={actors}"])
                    predict_on_ray(notes, target, adapter=adapter, settings=settings, overwrite=True)
                seconds[config].append(time.perf_counter() - started)
                if config != "plain":
                    reference = out / f"plain-{r}.jsonl"
                    if reference.exists():
                        same[config] = same.get(config, True) and _lines(target) == _lines(reference)
    finally:
        ray.shutdown()
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
                "-" if config == "plain" else ("yes" if same.get(config) else "NO"),
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
                ["configuration", "runs", "seconds", "notes/s", "overhead s/note vs plain", "same lines as plain"],
                rows,
            ),
            "",
            f"Projection, not a measurement: one actor coded {one:.3f} notes/s here; N actors on N GPUs, each as fast "
            f"as one here, would code about N x {one:.3f} notes/s (no shared-CPU contention between actors there).",
        ]
    )


if __name__ == "__main__":
    print(run(*[Path(a) for a in sys.argv[1:]]))
