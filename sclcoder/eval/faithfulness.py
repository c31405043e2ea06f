"""Faithfulness of a generative coder's evidence, from vLLM log-probabilities.

For each predicted code with aligned evidence, take the window the model coded (the one holding the code's
first quote), and score the code's tokens in the answer position: the answer prefix
``{"codes":[{"evidence":[<the model's quotes>],"code":"`` followed by the code, so
p(code | input) = exp(sum of those tokens' log-probabilities) under the adapter (sclcoder.infer.support says why
the closing quote is not scored). Then, averaged over
(note, code) pairs:

* **sufficiency** = p(code | the quotes alone as input), quotes joined by " ... ", the mean of the codes'
  support scores that predict can write (sclcoder.infer.support) but over one window's quotes (high: the evidence is
  enough for the decision);
* **comprehensiveness** = p(code | window) - p(code | window with the quoted spans deleted) (high: the
  decision needs the evidence; near 0: the model would code the same without it).

Because evidence comes first in our answers, the quotes are in the answer prefix in all three inputs:
comprehensiveness measures how much the code still depends on the quoted text being *in the note*, once the
model has written it down. Reported with p(code | window) and the ERASER-style sufficiency gap
p(code | window) - p(code | quotes alone).
"""

from __future__ import annotations

import math
from typing import Any

from sclcoder.eval.scores import Result
from sclcoder.infer.engine import VllmEngine
from sclcoder.infer.predictions import PredictionLine
from sclcoder.infer.support import JOIN, code_sequence
from sclcoder.sft.prompts import Renderer

DEFINITION = (
    "p(code) = exp(sum log p of the code tokens after the answer prefix with the model's quotes); sufficiency = "
    "mean p(code | quotes alone); comprehensiveness = mean [p(code | window) - p(code | window without the quoted "
    "spans)]"
)


class Faithfulness(Result):
    pairs: int
    p_code_given_window: float
    sufficiency: float
    comprehensiveness: float
    sufficiency_gap: float
    definition: str = DEFINITION


def _deleted(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for b, e in sorted(spans):
        if b >= last:
            out.append(text[last:b])
            last = e
    out.append(text[last:])
    return "".join(out)


def pairs_from_predictions(lines: list[PredictionLine], texts: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """(window text, quotes, local spans, code) for predicted codes with aligned evidence."""
    out = []
    for line in lines:
        text = texts.get(line.id)
        if text is None:
            continue
        for code in line.codes:
            placed = [(q.begin, q.end, q.text) for q in code.evidence if q.begin is not None and q.end is not None]
            if not code.valid or not placed:
                continue
            first = min(placed)
            win = next(
                ((w.begin, w.end) for w in line.windows if w.begin <= first[0] and first[1] <= w.end), (0, len(text))
            )
            inside = [(b, e, quote) for b, e, quote in placed if win[0] <= b and e <= win[1]]
            out.append(
                {
                    "id": line.id,
                    "code": code.code,
                    "window": text[win[0] : win[1]],
                    "quotes": [quote for _, _, quote in inside],
                    "spans": [(b - win[0], e - win[0]) for b, e, _ in inside],
                }
            )
            if len(out) >= limit:
                return out
    return out


def faithfulness(
    pairs: list[dict[str, Any]], renderer: Renderer, engine: VllmEngine, lora_path: str | None
) -> Faithfulness:
    sequences: list[list[int]] = []
    starts: list[int] = []
    for pair in pairs:
        for text in (pair["window"], JOIN.join(pair["quotes"]), _deleted(pair["window"], pair["spans"])):
            ids, start = code_sequence(renderer, text, pair["quotes"], pair["code"])
            sequences.append(ids)
            starts.append(start)
    logps = engine.sequence_logprobs(sequences, starts, lora_path=lora_path) if sequences else []
    full, alone, without = (logps[0::3], logps[1::3], logps[2::3])
    n = len(pairs)

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    p_full = [math.exp(x) for x in full]
    p_alone = [math.exp(x) for x in alone]
    p_without = [math.exp(x) for x in without]
    return Faithfulness(
        pairs=n,
        p_code_given_window=mean(p_full),
        sufficiency=mean(p_alone),
        comprehensiveness=mean([a - b for a, b in zip(p_full, p_without, strict=True)]),
        sufficiency_gap=mean([a - b for a, b in zip(p_full, p_alone, strict=True)]),
    )
