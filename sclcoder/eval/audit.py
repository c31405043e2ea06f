"""`sclcoder report`: one self-contained HTML audit view of predictions (no network, no external files).

Per note: the text with every code's evidence highlighted; the codes with their descriptions; clicking a
code highlights its spans; quotes that could not be placed in the note and codes that failed validation
are flagged; with gold, each code is marked correct, spurious (predicted, not gold) or missed (gold, not
predicted), and gold evidence is underlined.
"""

from __future__ import annotations

import html
import itertools
import json
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder import defaults
from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import read_documents, read_notes
from sclcoder.errors import SclError, Skips
from sclcoder.eval.gold import LineChecks
from sclcoder.files import check_writable, write_text_atomic
from sclcoder.infer.predictions import PredictionLine, Quote, read_predictions


def _segments(text: str, marks: list[tuple[int, int, str, str]]) -> str:
    """The text as HTML, cut at every evidence boundary; each piece lists the codes covering it."""
    cuts = {0, len(text)}
    for b, e, _, _ in marks:
        cuts.update((b, e))
    points = sorted(cuts)
    out = []
    for b, e in itertools.pairwise(points):
        piece = html.escape(text[b:e])
        pred = sorted({code for mb, me, code, kind in marks if kind == "pred" and mb <= b and e <= me})
        gold = sorted({code for mb, me, code, kind in marks if kind == "gold" and mb <= b and e <= me})
        if not pred and not gold:
            out.append(piece)
            continue
        classes = ["ev"] + (["pred"] if pred else []) + (["gold"] if gold else [])
        out.append(
            f'<span class="{" ".join(classes)}" data-codes="{html.escape(" ".join(pred))}" '
            f'data-gold="{html.escape(" ".join(gold))}">{piece}</span>'
        )
    return "".join(out)


def note_view(
    note_id: str,
    text: str,
    line: PredictionLine | None,
    gold_codes: set[str] | None,
    gold_spans: list[tuple[int, int, str]],
    system: CodeSystem,
) -> dict[str, Any]:
    codes = list(line.codes) if line else []
    predicted = {c.code for c in codes}

    def placed(q: Quote) -> bool:  # offsets that fit this note; anything else shows as unaligned
        return q.begin is not None and q.end is not None and 0 <= q.begin < q.end <= len(text)

    marks = [(q.begin, q.end, c.code, "pred") for c in codes for q in c.evidence if placed(q)]
    marks += [(b, e, code, "gold") for b, e, code in gold_spans]
    items = []
    withheld = list(line.withheld) if line else []
    for c, held in [*((c, False) for c in codes), *((c, True) for c in withheld)]:
        if gold_codes is None:
            status = None
        elif held:  # not predicted: a gold code withheld is a miss, a wrong one withheld is no error
            status = "missed" if c.code in gold_codes else None
        else:
            status = "correct" if c.code in gold_codes else "spurious"
        items.append(
            {
                "code": c.code,
                "description": c.description,
                "valid": c.valid,
                "problem": c.problem,
                "status": status,
                "unaligned": [q.text for q in c.evidence if not placed(q)],
                "quotes": len(c.evidence),
                "confidence": c.confidence,
                "support": c.support,
                "withheld": held,
            }
        )
    for code in sorted((gold_codes or set()) - predicted - {c.code for c in withheld}):
        items.append(
            {
                "code": code,
                "description": codes_mod.describe(code, system),
                "valid": True,
                "problem": None,
                "status": "missed",
                "unaligned": [],
                "quotes": 0,
                "confidence": None,
                "support": None,
                "withheld": False,
            }
        )
    return {
        "id": note_id,
        "html": _segments(text, marks),  # type: ignore[arg-type]
        "codes": items,
        "errors": list(line.errors) if line else ["no prediction for this note"],
    }


def _asset(name: str) -> str:
    return resources.files("sclcoder").joinpath("assets", name).read_text(encoding="utf-8")


def render_html(views: list[dict[str, Any]], title: str) -> str:
    data = json.dumps(views, ensure_ascii=False).replace("</", "<\\/")
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_asset('audit.css')}</style></head><body><nav id='notes'></nav><main><div id='text'></div>"
        f"<aside id='codes'></aside></main><script type='application/json' id='data'>{data}</script>"
        f"<script>{_asset('audit.js')}</script></body></html>"
    )


def build_report(
    predictions: str | PathLike[str],
    notes: str | PathLike[str],
    output: str | PathLike[str],
    *,
    gold: str | PathLike[str] | None = None,
    code_system: str = defaults.CODE_SYSTEM,
) -> Path:
    """Write the audit view of `predictions` over `notes` (and `gold`, when given) to `output`."""
    system = CodeSystem.parse(code_system)
    check_writable(output)
    texts = {n.id: n.text for n in read_notes(notes, Skips())}
    checks = LineChecks(predictions, texts, system, "notes file")
    rows = {}
    for lineno, line in read_predictions(predictions):
        if checks.check(line, lineno) is None:
            raise SclError(
                f"a prediction for note {line.id!r}, which is not in the notes file", path=predictions, line=lineno
            )
        rows[line.id] = line
    checks.finish()
    gold_docs = {d.id: d for d in read_documents(gold)} if gold else {}
    if gold and (missing := [n for n in texts if n not in gold_docs]):
        raise SclError(
            f"has no gold for {len(missing)} of the {len(texts)} notes (e.g. {missing[0]!r}): correct, spurious and "
            "missed codes need gold for every note",
            path=gold,
        )
    views = []
    for note_id, text in texts.items():
        g = gold_docs.get(note_id)
        views.append(
            note_view(
                note_id,
                text,
                rows.get(note_id),
                set(g.codes) if gold else None,
                [(e.begin, e.end, e.code) for e in g.evidence] if g else [],
                system,
            )
        )
    out = Path(output)
    write_text_atomic(out, render_html(views, f"sclcoder audit: {Path(predictions).name}"))
    return out
