"""Decoding with and without the JSON-schema constraint, side by side in one vLLM engine, on the windows
`predict` sends for the demo test notes: windows/s, generated tokens/s and the share of answers that are
valid under the answer schema. Prompts are prefilled beforehand, so the rows compare decoding. Uses the
demo's adapter and test notes (merged, as predict does on CPU)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from common import DEMO_ADAPTER, DEMO_NOTES, table

from sclcoder.artifacts import open_adapter
from sclcoder.data.documents import read_documents
from sclcoder.data.windows import split_windows
from sclcoder.infer.coder import adapter_prompt, check_window_fits
from sclcoder.infer.engine import Request, Sampling
from sclcoder.infer.settings import engine_for, predict_settings
from sclcoder.sft.answer import answer_schema, parse_answer
from sclcoder.sft.prompts import Renderer


def run(adapter_dir: Path = DEMO_ADAPTER, notes: Path = DEMO_NOTES) -> str:
    from transformers import AutoTokenizer

    ad = open_adapter(adapter_dir)
    settings = predict_settings(ad).model_copy(update={"merge_adapter": "always"})  # as predict does on CPU
    tokenizer = AutoTokenizer.from_pretrained(ad.path)
    renderer = Renderer(tokenizer, adapter_prompt(ad, None, False), ad.record.code_system)
    windows = ad.record.windows
    check_window_fits(renderer, windows.max_tokens, settings)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    requests = []
    for doc in read_documents(notes):
        for w in split_windows(doc.text, count, windows.max_tokens, windows.overlap_tokens):
            chunk = doc.text[w.begin : w.end]
            requests.append(Request(renderer.prompt_ids(chunk), renderer.messages(chunk)))

    engine = engine_for(ad, settings)
    modes = (
        ("free (no constraint)", None),
        ("schema, code pattern", answer_schema()),
        ("schema, trained codes only", answer_schema(ad.record.codes)),
    )
    # Warm every mode on every prompt first. vLLM caches prompt prefixes, so otherwise whichever mode ran
    # first would pay all the prefill and look slower (measured: 1.9x); this way the rows compare decoding.
    for _, schema in modes:
        engine.generate(requests, schema=schema, sampling=Sampling(1, 0.0, 1.0), lora_path=None)
    rows, rates = [], {}
    for name, schema in modes:
        start = time.perf_counter()
        gens = engine.generate(
            requests, schema=schema, sampling=Sampling(settings.max_new_tokens, 0.0, 1.0), lora_path=None
        )
        seconds = time.perf_counter() - start
        valid = sum(1 for g in gens if parse_answer(g.text)[0] is not None and not parse_answer(g.text)[1])
        tokens = sum(g.completion_tokens for g in gens)
        rates[name] = len(requests) / seconds
        rows.append(
            [
                name,
                len(requests),
                f"{len(requests) / seconds:.2f}",
                f"{tokens / seconds:.0f}",
                f"{tokens / len(gens):.1f}",
                f"{100 * valid / len(gens):.1f}%",
            ]
        )
    engine.close()
    return "\n".join(
        [
            "## Constrained vs free decoding (vLLM on CPU, SCL adapter merged, demo test windows)",
            "",
            table(["decoding", "windows", "windows/s", "generated tok/s", "tokens/answer", "schema-valid"], rows),
            "",
            f"Constrained (code pattern) / free, windows/s: "
            f"**{rates[modes[1][0]] / rates[modes[0][0]]:.2f}x**; trained-codes enum / free: "
            f"**{rates[modes[2][0]] / rates[modes[0][0]]:.2f}x**.",
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(run() + "\n")
