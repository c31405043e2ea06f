"""The inference path on CPU, side by side: `predict` on the same demo test notes with vLLM's weights in
bfloat16 or float32, and its engine core in its own process (vLLM's default) or in ours (sclcoder's CPU
default), on this CPU as it is and capped to AVX2. Each configuration runs in its own process (the caps and
vLLM's multiprocessing switch act at start-up); the engine is started before the clock runs, so the rows
compare decoding, not start-up. Uses the SCL adapter that bench_scl.py trains (merged, as predict does)."""

from __future__ import annotations

import sys
from pathlib import Path

from common import RUNS, in_child, table

from sclcoder.device import cpu_info

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
NOTES = 4  # bf16 weights on AVX2 decode about one demo note a minute


def _probe(adapter: str, notes: str, dtype: str, out: str) -> dict[str, float]:
    """Runs inside the child: start the engine, then time `predict` on the first NOTES notes."""
    from sclcoder.artifacts import open_adapter
    from sclcoder.infer.engine import engine_for, predict_settings
    from sclcoder.infer.predict import predict

    ad = open_adapter(adapter)
    settings = predict_settings(ad).model_copy(update={"dtype": dtype, "merge_adapter": "always"})
    engine = engine_for(ad, settings)
    report = predict(notes, out, adapter=adapter, settings=settings, engine=engine, overwrite=True, limit=NOTES)
    valid = 1 - report.invalid_answers / max(1, report.windows)
    return {"notes_per_s": report.notes_per_second, "tok_per_s": report.tokens_per_second, "valid": valid}


def measure(dtype: str, in_process: bool, env: dict[str, str], adapter: Path, notes: Path) -> dict[str, float]:
    out = RUNS / "inference" / f"{dtype}-{int(in_process)}-{len(env)}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ", ".join(repr(str(x)) for x in (adapter.resolve(), notes.resolve(), dtype, out.resolve()))
    switch = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0" if in_process else "1"}
    return in_child(f"bench_inference._probe({args})", {**env, **switch})


def run(adapter_dir: Path = RUNS / "scl" / "run", notes: Path = RUNS / "scl" / "test-notes.jsonl") -> str:
    configs = [
        ("this CPU", "bfloat16", False, {}),
        ("this CPU", "bfloat16", True, {}),
        ("this CPU", "float32", False, {}),
        ("this CPU", "float32", True, {}),
        ("capped to AVX2", "bfloat16", False, AVX2),
        ("capped to AVX2", "float32", False, AVX2),
        ("capped to AVX2", "float32", True, AVX2),
    ]
    results = {}
    for where, dtype, in_process, env in configs:
        results[(where, dtype, in_process)] = measure(dtype, in_process, env, adapter_dir, notes)
    rows = [
        [
            where,
            dtype,
            "in process" if in_process else "own process",
            f"{r['notes_per_s']:.2f}",
            f"{r['tok_per_s']:.0f}",
            f"{100 * r['valid']:.0f}%",
        ]
        for (where, dtype, in_process), r in results.items()
    ]

    def ratio(a: tuple[str, str, bool], b: tuple[str, str, bool]) -> str:
        return f"**{results[a]['notes_per_s'] / results[b]['notes_per_s']:.2f}x**"

    here = "bfloat16" if cpu_info().native_bf16 else "float32"  # what `auto` serves on this CPU as it is
    return "\n".join(
        [
            f"## Inference path on CPU: vLLM dtype and engine placement ({NOTES} demo test notes, 2 cores)",
            "",
            f"CPU: {cpu_info().describe()}.",
            "",
            table(["CPU", "vLLM dtype", "engine core", "notes/s", "generated tok/s", "schema-valid"], rows),
            "",
            "sclcoder's CPU default (dtype `auto`, engine in process) against vLLM's own defaults (the model's "
            "bf16 weights, engine core in its own process), notes/s: capped to AVX2 "
            f"{ratio(('capped to AVX2', 'float32', True), ('capped to AVX2', 'bfloat16', False))}, "
            f"this CPU {ratio(('this CPU', here, True), ('this CPU', 'bfloat16', False))}. "
            "Engine in process / own process at the same dtype: AVX2 float32 "
            f"{ratio(('capped to AVX2', 'float32', True), ('capped to AVX2', 'float32', False))}, "
            f"this CPU float32 {ratio(('this CPU', 'float32', True), ('this CPU', 'float32', False))}, "
            f"this CPU bfloat16 {ratio(('this CPU', 'bfloat16', True), ('this CPU', 'bfloat16', False))}.",
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(run() + "\n")
