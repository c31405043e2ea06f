"""The inference path on CPU, side by side: `predict` on the same demo test notes with vLLM's weights in
bfloat16 or float32, and its engine core in its own process (vLLM's default) or in ours (sclcoder's CPU
default), on this CPU as it is and, on a CPU wider than AVX2, capped to AVX2. Each configuration runs in its
own process (the caps and vLLM's multiprocessing switch act at start-up); the engine is started and warmed on
another note before the clock runs, and each is timed REPEATS times on the same notes from a cold prefix
cache, so the rows compare decoding, not start-up or caching. Uses the demo's adapter (merged, as predict
does)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from common import AVX2, DEMO_ADAPTER, DEMO_NOTES, RUNS, in_child, spread, table, wider_than_avx2

from sclcoder.device import cpu_info
from sclcoder.files import write_text_atomic

NOTES = 2  # bf16 weights on AVX2 decode a v5 demo note in about 2 minutes (make bench within its hour)
REPEATS = 3
SPLIT_NOTES = 3  # for the prefill/decode split: ~25 windows (make bench within its hour)
HF_BATCH = 16  # windows per transformers forward or generate call


def _probe(adapter: str, notes: str, dtype: str, out: str) -> dict[str, object]:
    """Runs inside the child: start the engine, warm it on a note not timed, then time `predict` on the same
    NOTES notes REPEATS times, each from an empty prefix cache."""
    import json

    from sclcoder.artifacts import open_adapter
    from sclcoder.infer.predict import predict
    from sclcoder.infer.settings import engine_for, predict_settings

    ad = open_adapter(adapter)
    settings = predict_settings(ad).model_copy(update={"dtype": dtype, "merge_adapter": "always"})
    engine = engine_for(ad, settings)
    lines = open(notes, encoding="utf-8").read().splitlines()  # noqa: SIM115
    timed, warm = f"{out}.notes.jsonl", f"{out}.warm.jsonl"
    with open(timed, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines[:NOTES]) + "\n")
    with open(warm, "w", encoding="utf-8") as fh:
        fh.write(lines[NOTES] + "\n")
    predict(warm, f"{out}.warm-out.jsonl", adapter=ad, settings=settings, engine=engine, overwrite=True)
    rates, tokens, valid = [], [], []
    for _ in range(REPEATS):
        engine.llm.reset_prefix_cache()
        report = predict(timed, out, adapter=ad, settings=settings, engine=engine, overwrite=True)
        rates.append(report.notes_per_second)
        tokens.append(report.tokens_per_second)
        valid.append(1 - report.invalid_answers / max(1, report.windows))
    answers = [json.loads(x)["codes"] for x in open(out, encoding="utf-8").read().splitlines()]  # noqa: SIM115
    return {"notes_per_s": rates, "tok_per_s": tokens, "valid": valid, "answers": answers}


def _split_probe(adapter: str, notes: str) -> dict[str, float]:
    """Runs inside the child: where predict's time goes on the windows of SPLIT_NOTES notes, and what the
    alternative engine (transformers) needs for the prefill alone, the lower bound of its generate."""
    import time

    import torch
    from transformers import AutoModelForCausalLM

    from sclcoder.artifacts import open_adapter
    from sclcoder.data.documents import read_documents
    from sclcoder.data.windows import split_windows
    from sclcoder.device import resolve_precision
    from sclcoder.infer.coder import adapter_prompt
    from sclcoder.infer.engine import Request, Sampling
    from sclcoder.infer.grounding import answer_grammar
    from sclcoder.infer.merge import merged_model
    from sclcoder.infer.settings import engine_for, predict_settings
    from sclcoder.sft.prompts import Renderer

    ad = open_adapter(adapter)
    settings = predict_settings(ad)
    engine = engine_for(ad, settings)
    tokenizer = engine.llm.get_tokenizer()
    renderer = Renderer(tokenizer, adapter_prompt(ad, None, False), ad.record.code_system)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    w = ad.record.windows

    def windows_of(docs: list) -> tuple[list[str], list[list[int]]]:  # type: ignore[type-arg]
        cuts = [(d.text, split_windows(d.text, count, w.max_tokens, w.overlap_tokens)) for d in docs]
        chunks = [text[x.begin : x.end] for text, windows in cuts for x in windows]
        return chunks, [renderer.prompt_ids(c) for c in chunks]

    docs = list(read_documents(notes))
    chunks, prompts = windows_of(docs[:SPLIT_NOTES])
    _, others = windows_of(docs[SPLIT_NOTES : 2 * SPLIT_NOTES])
    # warm-up on other notes' windows (new shapes pay for oneDNN primitives once); vLLM's prefix cache is
    # emptied before each timed pass, or the second pass would find the first one's prompts cached
    engine.generate([Request(p, []) for p in others], schema=None, sampling=Sampling(4, 0.0, 1.0), lora_path=None)
    requests = [Request(p, [], answer_grammar(c, ad.record.codes)) for p, c in zip(prompts, chunks, strict=True)]
    sampling = Sampling(settings.max_new_tokens, 0.0, 1.0)
    prefill, whole = [], []
    for _ in range(REPEATS):
        engine.llm.reset_prefix_cache()
        start = time.perf_counter()
        engine.generate([Request(p, []) for p in prompts], schema=None, sampling=Sampling(1, 0.0, 1.0), lora_path=None)
        prefill.append(time.perf_counter() - start)
        engine.llm.reset_prefix_cache()
        start = time.perf_counter()
        gens = engine.generate(requests, schema=None, sampling=sampling, lora_path=None)
        whole.append(time.perf_counter() - start)
    engine.close()

    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[resolve_precision(settings.dtype).dtype]
    model = AutoModelForCausalLM.from_pretrained(merged_model(ad), dtype=dtype).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def forward(batches: list[list[int]]) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(batches), HF_BATCH):
                batch = batches[i : i + HF_BATCH]
                width = max(map(len, batch))
                ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])  # left-padded, as generate does
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
                model(input_ids=ids, attention_mask=mask, logits_to_keep=1)
        return time.perf_counter() - start

    forward(others)  # warmed on other windows, as vLLM was: neither engine is timed cold
    hf_prefill = [forward(prompts) for _ in range(REPEATS)]
    from sclcoder.infer.local import TransformersEngine

    hf = TransformersEngine(model, tokenizer, batch_size=HF_BATCH)
    start = time.perf_counter()
    hf_gens = hf.generate(requests, schema=None, sampling=sampling, lora_path=None)
    hf_whole = time.perf_counter() - start
    return {
        "hf_whole_s": hf_whole,
        "hf_same_answers": sum(a.text == b.text for a, b in zip(gens, hf_gens, strict=True)) / len(gens),
        "windows": len(chunks),
        "prompt_tokens": sum(map(len, prompts)),
        "generated": sum(g.completion_tokens for g in gens),
        "prefill_s": prefill,
        "whole_s": whole,
        "hf_prefill_s": hf_prefill,
    }


def places() -> list[tuple[str, dict[str, str]]]:
    """This CPU, and (on a CPU wider than AVX2) the same capped to AVX2."""
    return [("this CPU", {})] + ([("capped to AVX2", AVX2)] if wider_than_avx2() else [])


def split_rows(adapter: Path, notes: Path) -> list[list[object]]:
    rows = []
    for where, env in places():
        args = ", ".join(repr(str(x.resolve())) for x in (adapter, notes))
        r = in_child(f"bench_inference._split_probe({args})", {**env, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
        prefill, whole = statistics.mean(r["prefill_s"]), statistics.mean(r["whole_s"])
        flops = 2 * 106e6 * r["prompt_tokens"] / prefill / 1e9  # non-embedding weights of SmolLM2-135M
        rows.append(
            [
                where,
                r["windows"],
                f"{r['prompt_tokens'] / r['windows']:.0f} / {r['generated'] / r['windows']:.0f}",
                spread(r["prefill_s"], 1),
                spread(r["whole_s"], 1),
                f"{100 * prefill / whole:.0f}%",
                f"{flops:.0f}",
                spread(r["hf_prefill_s"], 1),
                f"{r['hf_whole_s']:.1f} (n=1)",
                f"**{r['hf_whole_s'] / whole:.2f}x**",
                f"{100 * r['hf_same_answers']:.0f}%",
            ]
        )
    return rows


def measure(dtype: str, in_process: bool, env: dict[str, str], adapter: Path, notes: Path) -> dict[str, object]:
    out = RUNS / "inference" / f"{dtype}-{int(in_process)}-{len(env)}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ", ".join(repr(str(x)) for x in (adapter.resolve(), notes.resolve(), dtype, out.resolve()))
    switch = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0" if in_process else "1"}
    return in_child(f"bench_inference._probe({args})", {**env, **switch})


def run(adapter_dir: Path = DEMO_ADAPTER, notes: Path = DEMO_NOTES) -> str:
    here = "bfloat16" if cpu_info().native_bf16 else "float32"  # what `auto` serves on this CPU as it is
    # `auto`'s dtype in both placements, and vLLM's own defaults (bf16, own process)
    configs = []
    for where, env in places():
        dtype = here if not env else "float32"
        configs += [(where, "bfloat16", False, env), (where, dtype, False, env), (where, dtype, True, env)]
    results = {}
    for where, dtype, in_process, env in configs:
        if (where, dtype, in_process) not in results:  # on a bf16 CPU vLLM's default is `auto`'s dtype
            results[(where, dtype, in_process)] = measure(dtype, in_process, env, adapter_dir, notes)
    raw = [{"where": k[0], "dtype": k[1], "in_process": k[2], **v} for k, v in results.items()]
    write_text_atomic(RUNS / "inference" / "results.json", json.dumps(raw, indent=1))  # every repeat, unrounded
    rows = [
        [
            where,
            dtype,
            "in process" if in_process else "own process",
            spread([1 / x for x in r["notes_per_s"]], 1),  # type: ignore[union-attr]
            f"{statistics.mean(r['tok_per_s']):.0f}",  # type: ignore[arg-type]
            f"{100 * min(r['valid']):.0f}%",  # type: ignore[arg-type]
        ]
        for (where, dtype, in_process), r in results.items()
    ]
    same = all(r["answers"] == next(iter(results.values()))["answers"] for r in results.values())

    def ratio(a: tuple[str, str, bool], b: tuple[str, str, bool]) -> str:
        rate = {k: statistics.mean(v["notes_per_s"]) for k, v in results.items()}  # type: ignore[arg-type]
        return f"**{rate[a] / rate[b]:.2f}x**"

    sentences = []
    for where, env in places():
        dtype = here if not env else "float32"
        ours, vllms, own = (where, dtype, True), (where, "bfloat16", False), (where, dtype, False)
        sentences.append(
            f"{where}: sclcoder's CPU default (dtype `auto` = {dtype}, engine in process) / vLLM's own defaults "
            f"(the model's bf16 weights, engine core in its own process) {ratio(ours, vllms)}; "
            f"engine in process / own process at {dtype} {ratio(ours, own)}."
        )
    split = split_rows(adapter_dir, notes)
    return "\n".join(
        [
            f"## Inference path on CPU: vLLM dtype and engine placement ({NOTES} demo test notes, 2 cores)",
            "",
            f"CPU: {cpu_info().describe()}. Each row: one engine, warmed on another note, then `predict` on the same "
            f"{NOTES} notes {REPEATS} times from an empty prefix cache (seconds per note as mean ± sd; the ratios "
            "below compare mean notes/s). The rows wrote "
            + ("the same codes for every note." if same else "different codes for some notes (bf16 rounding)."),
            "",
            table(
                ["CPU", "vLLM dtype", "engine core", "s per note", "generated tok/s", "schema-valid (worst pass)"],
                rows,
            ),
            "",
            " ".join(sentences),
            "",
            f"Where predict's time goes, on the windows of {SPLIT_NOTES} demo test notes (dtype `auto`, engine in "
            "process, grounded decoding): vLLM with max_tokens=1 (prefill only) against the whole answer; "
            "transformers' forward over the same prompts (batches of 16, left-padded, logits of the last position "
            "only), and transformers' `generate` under the same xgrammar grammars (sclcoder/infer/local.py, "
            f"batches of 16 windows), with the share of windows where both engines wrote the same answer. Both "
            f"engines warmed on other windows first; vLLM and transformers' forward timed {REPEATS} times (mean ± "
            "sd, vLLM from an empty prefix cache each time), transformers' generate once (it is the slow one):",
            "",
            table(
                [
                    "CPU",
                    "windows",
                    "prompt / answer tokens per window",
                    "vLLM prefill s",
                    "vLLM whole s",
                    "prefill share",
                    "prefill GFLOP/s",
                    "transformers prefill s",
                    "transformers generate s",
                    "transformers / vLLM time",
                    "same answers",
                ],
                split,
            ),
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(run() + "\n")
