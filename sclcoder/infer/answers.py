"""From the model's answers for the windows of one note to one predictions line: every answer parsed and
validated, the codes of the windows unioned, every code normalised and checked against the code system,
every quote placed at `[begin, end)` in the note (the same place quoted from two overlapping windows counts
once), and every problem kept in the line's `errors`."""

from __future__ import annotations

from collections import Counter

from sclcoder.data import codes as codes_mod
from sclcoder.data.align import Aligner
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Note
from sclcoder.data.windows import Window
from sclcoder.errors import CodeError
from sclcoder.infer.confidence import code_confidences, combine
from sclcoder.infer.engine import Generation
from sclcoder.infer.predictions import CodePrediction, PredictionLine, Quote, WindowResult
from sclcoder.sft.answer import parse_answer


def note_line(
    note: Note,
    windows: list[Window],
    generations: list[Generation],
    system: CodeSystem,
    *,
    fuzzy_threshold: float,
    drop_invalid_codes: bool,
    quote_counts: Counter[str],
    min_confidence: float | None = None,
) -> PredictionLine:
    """One predictions line (without the run's identity fields, which the caller adds): codes unioned across
    windows with their confidence (sclcoder.infer.confidence), quotes aligned to note offsets; `quote_counts`
    counts how each quote was placed. Codes less sure than `min_confidence` are withheld, not lost: they move to
    the line's `withheld` list."""
    errors: list[str] = []
    codes: dict[str, CodePrediction] = {}
    per_window = []
    for i, (win, gen) in enumerate(zip(windows, generations, strict=True)):
        answer, problems = parse_answer(gen.text)
        if gen.finish_reason == "length":
            problems = [f"answer cut at max_new_tokens ({gen.completion_tokens} tokens)", *problems]
        errors.extend(f"window {i}: {p}" for p in problems)
        items = answer.get("codes", []) if isinstance(answer, dict) else []
        items = items if isinstance(items, list) else []
        sure = code_confidences(gen) if answer is not None else None
        if sure is not None and len(sure) != len(items):
            sure = None  # the answer's codes cannot be told apart in its tokens: no confidence rather than a wrong one
        aligner = Aligner(note.text[win.begin : win.end], fuzzy_threshold)
        window_codes = []
        for k, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("code"), str):
                continue
            entry = _code_entry(item["code"], system, codes, errors, i)
            entry.confidence = combine(entry.confidence, sure[k] if sure else None)
            window_codes.append(entry.code)
            taken = {(q.begin, q.end) for q in entry.evidence if q.placed}
            for quote in item.get("evidence") or []:
                if not isinstance(quote, str):
                    continue
                hit = aligner.align(quote, {(b - win.begin, e - win.begin) for b, e in taken})  # type: ignore[operator]
                if hit is None:
                    quote_counts["unaligned"] += 1
                    if not any(q.text == quote and not q.placed for q in entry.evidence):
                        entry.evidence.append(Quote(text=quote))
                    continue
                b, e = win.begin + hit.begin, win.begin + hit.end
                quote_counts[hit.match] += 1
                if (b, e) in taken:
                    continue  # the same place quoted again, e.g. from an overlapping window
                taken.add((b, e))
                entry.evidence.append(Quote(text=note.text[b:e], begin=b, end=e, match=hit.match))
        per_window.append(WindowResult(begin=win.begin, end=win.end, codes=window_codes, answer_valid=not problems))
    kept, withheld = [], []
    for entry in codes.values():
        if drop_invalid_codes and not entry.valid:
            continue
        entry.evidence.sort(key=lambda q: (not q.placed, q.begin or 0))
        unsure = min_confidence is not None and entry.confidence is not None and entry.confidence < min_confidence
        (withheld if unsure else kept).append(entry)
    return PredictionLine(
        id=note.id, codes=kept, withheld=withheld, min_confidence=min_confidence, windows=per_window, errors=errors
    )


def _code_entry(
    raw: str, system: CodeSystem, codes: dict[str, CodePrediction], errors: list[str], window: int
) -> CodePrediction:
    """The note's entry for the code a window named, made at its first mention."""
    try:
        code = codes_mod.normalize(raw, system)
    except CodeError as exc:
        key = raw.strip().upper()
        if key not in codes:
            errors.append(f"window {window}: {exc.message}")
            codes[key] = CodePrediction(code=raw, description=None, valid=False, problem="malformed")
        return codes[key]
    if code not in codes:
        info = codes_mod.lookup(code, system)
        entry = CodePrediction(code=code, description=info.description if info else None, valid=info is not None)
        if info is None:
            entry.problem = f"not an {system.label} code"
            errors.append(f"window {window}: unknown {system.label} code {code}")
        codes[code] = entry
    return codes[code]
