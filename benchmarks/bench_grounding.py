"""Grounded decoding against schema-only and free decoding, side by side in one vLLM engine: grammar compile
time per window against window length, windows/s (repeated, each mode on the same windows from a cold prefix
cache), the share of quotes placed by exact match, and codes and evidence scores on the notes predicted. Uses
the demo's adapter and test notes (or any adapter and notes given), merged as predict does on CPU."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from common import DEMO_ADAPTER, DEMO_NOTES, RUNS, spread, table

from sclcoder.artifacts import open_adapter
from sclcoder.data import codes as codes_mod
from sclcoder.data.documents import read_documents
from sclcoder.data.windows import split_windows
from sclcoder.eval.evaluate import run_eval
from sclcoder.infer.coder import adapter_prompt
from sclcoder.infer.engine import Request, Sampling
from sclcoder.infer.grounding import answer_grammar
from sclcoder.infer.predict import predict
from sclcoder.infer.settings import engine_for, predict_settings
from sclcoder.sft.answer import answer_schema
from sclcoder.sft.prompts import Renderer

REPEATS = 3


def _quantiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def compile_times(tokenizer, texts: list[str], codes: list[str]) -> list[list[object]]:  # type: ignore[no-untyped-def]
    """p50/p95 xgrammar compile time of window grammars, per window length (the compiler's cache off)."""
    import xgrammar

    compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tokenizer), cache_enabled=False)
    joined = "\n".join(texts)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    rows = []
    system = codes_mod.all_codes("icd10cm", billable_only=False, current_only=False)
    for max_tokens, code_set, label, n in (
        (128, codes, "adapter's codes", 20),
        (512, codes, "adapter's codes", 20),
        (1024, codes, "adapter's codes", 10),
        (3072, codes, "adapter's codes", 5),
        (128, system, f"all ICD-10-CM ({len(system):,})", 3),
        (3072, system, f"all ICD-10-CM ({len(system):,})", 2),
    ):
        windows = split_windows(joined, count, max_tokens, 0)[:n]
        seconds = []
        for w in windows:
            grammar = answer_grammar(joined[w.begin : w.end], code_set)
            start = time.perf_counter()
            compiler.compile_grammar(grammar)
            seconds.append(time.perf_counter() - start)
        p50, p95 = _quantiles(seconds)
        chars = statistics.mean(w.end - w.begin for w in windows)
        rows.append([max_tokens, f"{chars:.0f}", label, len(windows), f"{p50:.3f}", f"{p95:.3f}"])
    return rows


def run(adapter_dir: Path = DEMO_ADAPTER, notes: Path = DEMO_NOTES) -> str:
    from transformers import AutoTokenizer

    ad = open_adapter(adapter_dir)
    settings = predict_settings(ad).model_copy(update={"merge_adapter": "always"})  # as predict does on CPU
    tokenizer = AutoTokenizer.from_pretrained(ad.path)
    renderer = Renderer(tokenizer, adapter_prompt(ad, None, False), ad.record.code_system)
    docs = list(read_documents(notes))
    compile_rows = compile_times(tokenizer, [d.text for d in docs], ad.record.codes)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    chunks = [
        d.text[w.begin : w.end]
        for d in docs
        for w in split_windows(d.text, count, ad.record.windows.max_tokens, ad.record.windows.overlap_tokens)
    ]
    schema = answer_schema(ad.record.codes)
    modes = {
        "free": (lambda c: Request(renderer.prompt_ids(c), renderer.messages(c)), None),
        "schema": (lambda c: Request(renderer.prompt_ids(c), renderer.messages(c)), schema),
        "grounded": (
            lambda c: Request(renderer.prompt_ids(c), renderer.messages(c), answer_grammar(c, ad.record.codes)),
            None,
        ),
    }
    sampling = Sampling(settings.max_new_tokens, 0.0, 1.0)
    engine = engine_for(ad, settings)
    try:
        # kernels and first-call costs paid once, before any row is timed
        engine.generate([modes["grounded"][0](c) for c in chunks[:4]], schema=None, sampling=sampling, lora_path=None)
        rates: dict[str, list[float]] = {label: [] for label in modes}
        tokens: dict[str, list[int]] = {label: [] for label in modes}
        for _ in range(REPEATS):  # the modes interleaved, each pass on a cold prefix cache: like for like
            for label, (make, constraint) in modes.items():
                requests = [make(c) for c in chunks]
                engine.llm.reset_prefix_cache()
                start = time.perf_counter()
                gens = engine.generate(requests, schema=constraint, sampling=sampling, lora_path=None)
                rates[label].append(len(chunks) / (time.perf_counter() - start))
                tokens[label].append(sum(g.completion_tokens for g in gens))
        speed = [
            [label, len(chunks), spread(rates[label]), f"{statistics.mean(tokens[label]) / len(chunks):.0f}"]
            for label in modes
        ]
        ratio = statistics.mean(rates["grounded"]) / statistics.mean(rates["schema"])
        quality = []
        out = RUNS / "grounding"
        for grounding in ("schema", "substring"):
            chosen = settings.model_copy(update={"grounding": grounding, "constrain_codes": True})
            preds = out / f"{grounding}.jsonl"
            report = predict(notes, preds, adapter=ad, settings=chosen, engine=engine, overwrite=True)
            # scored against exactly the notes predicted (their gold travels in the notes file)
            scores = run_eval("jsonl", gold=notes, predictions=preds, output=out / f"eval-{grounding}")
            quotes = sum(report.quotes.values())
            exact = report.quotes.get("exact", 0)
            quality.append(
                [
                    grounding,
                    f"{100 * exact / quotes:.1f}% of {quotes}" if quotes else "no quotes",
                    ", ".join(f"{k} {v}" for k, v in sorted(report.quotes.items()) if k != "exact") or "none",
                    f"{100 * scores.codes_micro_f1:.1f}",
                    f"{100 * scores.codes_macro_f1:.1f}",
                    f"{100 * scores.plausibility.correct_codes.f1:.1f}",
                    report.invalid_answers,
                ]
            )
    finally:
        engine.close()
    return "\n\n".join(
        [
            "## Grounded decoding",
            f"Adapter {ad.path}, {len(docs)} notes, {len(chunks)} windows of at most {ad.record.windows.max_tokens} "
            "tokens; one engine for every row.",
            "Grammar compilation per window (xgrammar, the SmolLM2 tokenizer, cache off), seconds:",
            table(["window tokens", "mean chars", "codes", "windows", "p50", "p95"], compile_rows),
            f"Decoding the same windows, greedy, max_new_tokens as the recipe: {REPEATS} passes per mode, the modes "
            "interleaved, each pass after emptying vLLM's prefix cache, after one untimed warm-up pass; windows/s "
            f"as mean ± sd. Grounded / schema-only windows/s: **{ratio:.2f}x**.",
            table(["decoding", "windows", "windows/s", "answer tokens per window"], speed),
            "Whole `predict` on the notes, then `eval` against the same notes' gold (codes limited to the adapter's "
            "list in both; one run each):",
            table(
                [
                    "grounding",
                    "quotes placed by exact match",
                    "other matches",
                    "micro F1",
                    "macro F1",
                    "plausibility token F1",
                    "invalid answers",
                ],
                quality,
            ),
        ]
    )


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    print(run(*args))
