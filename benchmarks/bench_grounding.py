"""Grounded decoding against schema-only and free decoding, side by side in one vLLM engine: grammar compile
time per window against window length, windows/s, the share of quotes placed by exact match, and codes and
evidence scores on the demo test split. Uses the SCL adapter trained by bench_scl.py (or any adapter and
notes given), merged as predict does on CPU."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from common import RUNS, table

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


def run(
    adapter_dir: Path = RUNS / "scl" / "run",
    notes: Path = RUNS / "scl" / "test-notes.jsonl",
    corpus: Path = RUNS / "scl" / "corpus",
) -> str:
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
    engine = engine_for(ad, settings)
    try:
        engine.generate(  # prefill and warm up once, so that no row pays for it
            [Request(renderer.prompt_ids(c), renderer.messages(c)) for c in chunks[:4]],
            schema=None,
            sampling=Sampling(4, 0.0, 1.0),
            lora_path=None,
        )
        speed = []
        schema = answer_schema(ad.record.codes)
        for label, make in (
            ("free", lambda c: Request(renderer.prompt_ids(c), renderer.messages(c))),
            ("schema", lambda c: Request(renderer.prompt_ids(c), renderer.messages(c))),
            (
                "grounded",
                lambda c: Request(renderer.prompt_ids(c), renderer.messages(c), answer_grammar(c, ad.record.codes)),
            ),
        ):
            requests = [make(c) for c in chunks]
            start = time.perf_counter()
            gens = engine.generate(
                requests,
                schema=schema if label == "schema" else None,
                sampling=Sampling(settings.max_new_tokens, 0.0, 1.0),
                lora_path=None,
            )
            seconds = time.perf_counter() - start
            tokens = sum(g.completion_tokens for g in gens)
            speed.append(
                [label, len(chunks), f"{seconds:.1f}", f"{len(chunks) / seconds:.2f}", f"{tokens / seconds:.0f}"]
            )
        quality = []
        out = RUNS / "grounding"
        for grounding in ("schema", "substring"):
            chosen = settings.model_copy(update={"grounding": grounding, "constrain_codes": True})
            preds = out / f"{grounding}.jsonl"
            report = predict(notes, preds, adapter=ad, settings=chosen, engine=engine, overwrite=True)
            scores = run_eval("demo", predictions=preds, corpus=corpus, output=out / f"eval-{grounding}")
            quotes = sum(report.quotes.values())
            exact = report.quotes.get("exact", 0)
            quality.append(
                [
                    grounding,
                    f"{100 * exact / quotes:.1f}% of {quotes}" if quotes else "no quotes",
                    ", ".join(f"{k} {v}" for k, v in sorted(report.quotes.items()) if k != "exact") or "none",
                    f"{100 * scores['codes']['micro']['f1']:.1f}",
                    f"{100 * scores['codes']['macro_over_gold_codes']['f1']:.1f}",
                    f"{100 * scores['plausibility']['correct_codes']['f1']:.1f}",
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
            "Decoding the same windows, greedy, max_new_tokens as the recipe:",
            table(["decoding", "windows", "seconds", "windows/s", "generated tok/s"], speed),
            "Whole `predict` on the notes, then `eval --benchmark demo` (codes limited to the adapter's list in both):",
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
