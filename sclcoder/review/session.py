"""One coder's review of one predictions file: the notes, the model's codes and quotes, and the decisions taken
so far (replayed from the corrections file, so reopening resumes where the coder stopped). Every decision is
checked, appended to the corrections file and made durable before it is acknowledged."""

from __future__ import annotations

import contextlib
import threading
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.corrections import (
    CodeReview,
    Correction,
    FinalCode,
    NoteReview,
    Span,
    now,
    read_corrections,
)
from sclcoder.data.documents import read_documents, read_notes
from sclcoder.errors import CodeError, SclError, Skips
from sclcoder.files import JsonlAppender, exclusive, same_file
from sclcoder.infer.predictions import PredictionLine, read_predictions


class Decision(BaseModel):
    """What the page sends: an action on a code (and a span of the note for span actions)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal[
        "accept_code",
        "reject_code",
        "add_code",
        "accept_span",
        "reject_span",
        "add_span",
        "replace_span",
        "done",
        "reopen",
    ]
    code: str | None = None
    begin: int | None = None
    end: int | None = None


def default_corrections_path(predictions: str | PathLike[str]) -> Path:
    p = Path(predictions)
    return p.with_name(f"{p.name.removesuffix('.jsonl')}.corrections.jsonl")


def _from_prediction(note_id: str, line: PredictionLine | None) -> NoteReview:
    """The model's codes, each pending with its placed quotes: the state before any decision."""
    review = NoteReview(note_id)
    for c in line.codes if line else []:
        placed = {(q.begin, q.end): q.text for q in c.evidence if q.begin is not None and q.end is not None}
        review.codes[c.code] = CodeReview(spans=placed, span_status=dict.fromkeys(placed, "pending"))
    return review


class ReviewSession:
    def __init__(
        self,
        predictions: str | PathLike[str],
        notes: str | PathLike[str],
        corrections: str | PathLike[str] | None = None,
        *,
        coder: str = "",
        gold: str | PathLike[str] | None = None,
        code_system: str = "icd10cm",
    ) -> None:
        self.system = CodeSystem.parse(code_system)
        self.coder = coder
        self.corrections = Path(corrections) if corrections else default_corrections_path(predictions)
        for source in (predictions, notes):
            if same_file(source, self.corrections):
                raise SclError("is also an input of the review; write the corrections elsewhere", path=self.corrections)
        self.texts = {n.id: n.text for n in read_notes(notes, Skips())}
        self.lines: dict[str, PredictionLine] = {}
        for lineno, line in read_predictions(predictions):
            if line.id not in self.texts:
                raise SclError(f"note {line.id!r} is not in {notes}", path=predictions, line=lineno, field="id")
            self.lines[line.id] = line
        self.order = [i for i in self.texts if i in self.lines] or list(self.texts)
        self.adapter = next((ln.adapter for ln in self.lines.values() if ln.adapter), None)
        self.gold = {d.id: sorted(d.codes) for d in read_documents(gold, default_system=self.system)} if gold else {}
        self._lock = threading.Lock()
        # one server per corrections file: two processes appending to it would each replay a partial history
        self._owner = exclusive(self.corrections, what="corrections file")
        self._owner.__enter__()
        try:
            self.reviews = {i: _from_prediction(i, self.lines.get(i)) for i in self.texts}
            for _, c in read_corrections(self.corrections, self.texts, self.system.value):
                self.reviews[c.note_id].apply(c)
            # each decision is made durable before it is acknowledged; the session's lock keeps lines whole
            self.log = JsonlAppender(self.corrections)
        except BaseException:
            self._owner.__exit__(None, None, None)
            raise

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.log.close()
        self._owner.__exit__(None, None, None)

    # -------------------------------------------------------------------------------------------- reading

    def uncertainty(self, note_id: str) -> float | None:
        """The lowest confidence among the note's codes (withheld ones too): the queue puts the least sure first."""
        line = self.lines.get(note_id)
        values = [c.confidence for c in [*(line.codes if line else []), *(line.withheld if line else [])]]
        known = [v for v in values if v is not None]
        return min(known) if known else None

    def queue(self) -> list[dict[str, Any]]:
        """Notes still to do first, then the least sure first; notes with nothing to go by keep file order."""
        rows = []
        for pos, note_id in enumerate(self.order):
            review, least = self.reviews[note_id], self.uncertainty(note_id)
            rows.append(
                {
                    "id": note_id,
                    "codes": len(review.codes),
                    "least_confidence": least,
                    "done": review.done,
                    "decisions": review.actions,
                    "_key": (review.done, least is None, least if least is not None else 0.0, pos),
                }
            )
        rows.sort(key=lambda r: r.pop("_key"))
        return rows

    def _require(self, note_id: str) -> NoteReview:
        if note_id not in self.reviews:
            raise SclError(f"no note {note_id!r} in this review", field="note_id")
        return self.reviews[note_id]

    def note(self, note_id: str) -> dict[str, Any]:
        review = self._require(note_id)
        line = self.lines.get(note_id)
        model = {c.code: c for c in (line.codes if line else [])}
        codes = []
        for code, r in review.codes.items():
            pred = model.get(code)
            codes.append(
                {
                    "code": code,
                    "description": codes_mod.describe(code, self.system),
                    "status": r.status,
                    "origin": r.origin,
                    "confidence": pred.confidence if pred else None,
                    "spans": [
                        {"begin": b, "end": e, "text": t, "status": r.span_status.get((b, e), "pending")}
                        for (b, e), t in sorted(r.spans.items())
                    ],
                    "unplaced": [q.text for q in pred.evidence if q.begin is None] if pred else [],
                }
            )
        return {
            "id": note_id,
            "text": self.texts[note_id],
            "codes": codes,
            "done": review.done,
            "decisions": review.actions,
            "gold": self.gold.get(note_id),
            "adapter": self.adapter,
        }

    # ------------------------------------------------------------------------------------------- deciding

    def _span(self, note_id: str, d: Decision) -> Span:
        text = self.texts[note_id]
        if d.begin is None or d.end is None or not 0 <= d.begin < d.end <= len(text):
            raise SclError(f"[{d.begin}, {d.end}) is not a span of note {note_id!r}", field="begin")
        return Span(begin=d.begin, end=d.end, text=text[d.begin : d.end])

    def _code(self, review: NoteReview, d: Decision, *, new: bool = False) -> str:
        if not d.code:
            raise SclError(f"{d.action} needs a code", field="code")
        try:
            code = codes_mod.validate(d.code, self.system)
        except CodeError as exc:
            raise SclError(exc.message, field="code") from None
        if not new and code not in review.codes:
            raise SclError(f"note {review.note_id!r} has no code {code}", field="code")
        return code

    def _corrections(self, note_id: str, d: Decision) -> list[Correction]:
        review = self._require(note_id)
        stamp = {"note_id": note_id, "coder": self.coder, "time": now(), "adapter": self.adapter}

        def spans(pairs: list[tuple[int, int, str]]) -> list[Span]:
            return [Span(begin=b, end=e, text=t) for b, e, t in pairs]

        if d.action == "done":
            final = [
                FinalCode(code=code, spans=spans(r.evidence()))
                for code, r in review.codes.items()
                if r.status != "rejected"  # done accepts what the coder left untouched
            ]
            return [Correction(action="done", final=final, **stamp)]
        if d.action == "reopen":
            return [Correction(action="reopen", **stamp)]
        code = self._code(review, d, new=d.action in ("add_code", "add_span", "replace_span"))
        if d.action == "accept_code":
            return [Correction(action="accept_code", code=code, spans=spans(review.codes[code].evidence()), **stamp)]
        if d.action == "reject_code":
            quoted = [(b, e, t) for (b, e), t in review.codes[code].spans.items()]
            return [Correction(action="reject_code", code=code, spans=spans(quoted), **stamp)]
        if d.action == "add_code":
            given = [self._span(note_id, d)] if d.begin is not None else []
            return [Correction(action="add_code", code=code, spans=given, **stamp)]
        span = self._span(note_id, d)
        if d.action in ("accept_span", "reject_span") and span.key not in review.codes[code].spans:
            raise SclError(f"[{span.begin}, {span.end}) is not evidence of {code} in note {note_id!r}", field="begin")
        if d.action == "replace_span":  # the selection becomes the code's only evidence
            old = [
                Correction(action="reject_span", code=code, spans=[Span(begin=b, end=e, text=t)], **stamp)
                for b, e, t in (review.codes[code].evidence() if code in review.codes else [])
                if (b, e) != span.key
            ]
            return [*old, Correction(action="add_span", code=code, spans=[span], **stamp)]
        return [Correction(action=d.action, code=code, spans=[span], **stamp)]

    def decide(self, note_id: str, decision: Decision) -> dict[str, Any]:
        """Check the decision, append it to the corrections file (durably), apply it; the note as it now stands."""
        with self._lock:
            for c in self._corrections(note_id, decision):
                self.log.write(c.row())
                self.reviews[note_id].apply(c)
            return self.note(note_id)
