"""How sure the model was of each code it wrote.

The confidence of a code in one window is the probability the model gave, where it wrote the code, to the
tokens that spell it: exp(sum of their log-probabilities) as the engine reports them, that is under the
answer's grammar (vLLM applies the grammar's mask before it computes log-probabilities; transformers' `generate`
is read the same way). With grounded decoding that is the model's probability of this code among the codes it
may write (by default the adapter's training list), at that point of that answer, given the evidence it had
just quoted: a measure of the model's own certainty, not of the code being right. A code the grammar leaves as
the only choice gets 1.
Calibration (sclcoder.eval.calibration) says how far the two agree on a given set of notes.

A note's codes are the union of its windows' codes, so a code's confidence in the note is the highest of its
windows' (the window that made the strongest case for it); a code named twice in one window keeps the higher.
"""

from __future__ import annotations

import itertools
import math
import re

from sclcoder.infer.engine import Generation

_CODE_VALUE = re.compile(r'"code":"((?:[^"\\]|\\.)*)"')


def code_confidences(generation: Generation) -> list[float] | None:
    """The confidence of each code the answer names, in the answer's order; None when the engine reported no
    token log-probabilities or its tokens do not spell the answer's text (nothing can be placed then)."""
    tokens = generation.tokens
    if tokens is None:
        return None
    # the text may stop before the last tokens (an end-of-turn token is not part of it)
    joined = ""
    for k, (piece, _) in enumerate(tokens):
        if joined == generation.text:
            tokens = tokens[:k]
            break
        joined += piece
    if joined != generation.text:
        return None
    starts = [0, *itertools.accumulate(len(piece) for piece, _ in tokens)]
    out = []
    for match in _CODE_VALUE.finditer(generation.text):
        begin, end = match.span(1)
        logp = sum(lp for (piece, lp), s in zip(tokens, starts, strict=False) if s < end and s + len(piece) > begin)
        out.append(math.exp(logp))
    return out


def combine(*values: float | None) -> float | None:
    """A code's confidence over the windows (and repeats) that name it: the highest."""
    known = [v for v in values if v is not None]
    return max(known) if known else None
