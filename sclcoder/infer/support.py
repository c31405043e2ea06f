"""Does a code's quoted evidence support it? The support of a predicted code is the probability the model gives
the code when its quotes are the whole note: the quotes (those placed in the note, in note order, joined by
" ... ") are rendered as the note, the answer is prefixed with ``{"codes":[{"evidence":[<the quotes>],"code":"``
as the model writes its answers (evidence first), and the code's tokens are scored: exp(sum of their
log-probabilities), under the adapter, with no grammar (the whole vocabulary competes). The closing quote is
not: tokenizers fold it into what follows (SmolLM2 writes `"}` or `"},`, never a lone `"`), so scoring a lone
quote would measure a token the model does not write; and a billable ICD code is never the prefix of another,
so the code's own tokens decide it. Per-code confidence (sclcoder.infer.confidence) reads the same tokens.

This is the per-pair sufficiency of the faithfulness metrics (sclcoder.eval.faithfulness). A code the model
wrote for its context but that its own quotes do not carry (asthma quoting "Allergies") scores low; a code
whose quotes name it scores high. A code with no quote placed in the note has nothing to support it: 0.

It costs one prefill of a few dozen tokens per predicted code (no decoding), hence optional
(`predict.support`, `--support`); the cost measured is in benchmarks/results.md.
"""

from __future__ import annotations

import json
import math
from typing import Protocol, runtime_checkable

from sclcoder.errors import SclError
from sclcoder.infer.predictions import CodePrediction, PredictionLine
from sclcoder.sft.prompts import Renderer

JOIN = " ... "


@runtime_checkable
class Scorer(Protocol):
    """An engine that can score given token sequences (vLLM in process, a vLLM endpoint)."""

    def sequence_logprobs(
        self, sequences: list[list[int]], starts: list[int], lora_path: str | None = None
    ) -> list[float]: ...


def code_sequence(renderer: Renderer, text: str, quotes: list[str], code: str) -> tuple[list[int], int]:
    """The token ids of `text` rendered as a note followed by an answer that quotes `quotes` and names `code`,
    and where the code's own tokens start (the tokens shared with the answer prefix are not the code's)."""
    tok = renderer.tokenizer
    prefix = '{"codes":[{"evidence":' + json.dumps(quotes, ensure_ascii=False, separators=(",", ":")) + ',"code":"'
    answer = tok(prefix + code, add_special_tokens=False)["input_ids"]
    head = tok(prefix, add_special_tokens=False)["input_ids"]
    shared = next(
        (i for i, (a, b) in enumerate(zip(head, answer, strict=False)) if a != b), min(len(head), len(answer))
    )
    prompt = renderer.prompt_ids(text)
    return prompt + answer, len(prompt) + shared


def placed_quotes(code: CodePrediction) -> list[str]:
    """The code's quotes found in the note, in note order, each once."""
    placed = sorted((q.begin, q.text) for q in code.evidence if q.begin is not None)
    return list(dict.fromkeys(text for _, text in placed))


def require_scorer(engine: object, lora_path: str | None) -> None:
    """One error unless `engine` can score support: checked before decoding, not after a batch of it."""
    if not isinstance(engine, Scorer):
        raise SclError(
            f"support scores need an engine that scores token sequences; {type(engine).__name__} does not",
            field="predict.support",
            hint="predict with vLLM in process or a vLLM endpoint, or turn support off",
        )
    if lora_path is not None or getattr(engine, "mode", None) == "lora":
        # vLLM fails on prompt log-probabilities with LoRA enabled (vllm-project/vllm#16668, #29955)
        raise SclError(
            "support scores need the adapter merged into the weights: vLLM cannot return prompt log-probabilities "
            "with LoRA enabled",
            field="predict.support",
            hint="set predict.merge_adapter=always (the default on CPU), or predict with a merged model",
        )


def with_support(
    lines: list[PredictionLine], renderer: Renderer, engine: object, lora_path: str | None
) -> list[PredictionLine]:
    """The lines with the support of every code, predicted and withheld, filled in (one engine call)."""
    require_scorer(engine, lora_path)
    sequences, starts, where = [], [], []
    for i, line in enumerate(lines):
        for group in ("codes", "withheld"):
            for j, code in enumerate(getattr(line, group)):
                quotes = placed_quotes(code)
                if quotes:
                    ids, start = code_sequence(renderer, JOIN.join(quotes), quotes, code.code)
                    sequences.append(ids)
                    starts.append(start)
                    where.append((i, group, j))
    logps = engine.sequence_logprobs(sequences, starts, lora_path=lora_path) if sequences else []
    support = {key: math.exp(lp) for key, lp in zip(where, logps, strict=True)}

    def scored(i: int, group: str, codes: list[CodePrediction]) -> list[CodePrediction]:
        return [c.model_copy(update={"support": support.get((i, group, j), 0.0)}) for j, c in enumerate(codes)]

    return [
        line.model_copy(
            update={"codes": scored(i, "codes", line.codes), "withheld": scored(i, "withheld", line.withheld)}
        )
        for i, line in enumerate(lines)
    ]
