"""The coder's corrections: an append-only JSONL log of review decisions (`sclcoder review` writes it), read
back against the notes it is about, and reduced to what the coder decided about each note.

One line per decision, format ``sclcoder-corrections/1``::

    {"format": "sclcoder-corrections/1", "note_id": "n1", "action": "accept_code", "code": "E11.9",
     "spans": [{"begin": 120, "end": 144, "text": "type 2 diabetes mellitus"}],
     "coder": "jane", "time": "2026-12-06T10:00:00+00:00", "adapter": "runs/demo/adapter"}

Every line carries the spans it is about, so the file and its notes are enough to train on (the predictions
file is not needed): ``accept_code`` the code's evidence as it stood when accepted, ``reject_code`` the quotes
the model gave for it (where the hard negative lies), ``done`` the note's final codes (``final``). Later lines
win over earlier ones; nothing is ever rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sclcoder.data.documents import Document, Evidence
from sclcoder.errors import SclError, validation_error
from sclcoder.files import parse_json, text_lines

CORRECTIONS_FORMAT = "sclcoder-corrections/1"
Action = Literal["accept_code", "reject_code", "add_code", "accept_span", "reject_span", "add_span", "done", "reopen"]
SPAN_ACTIONS = ("accept_span", "reject_span", "add_span")
CODE_ACTIONS = ("accept_code", "reject_code", "add_code", *SPAN_ACTIONS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Span(_Strict):
    begin: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str
    """The note's text at [begin, end): checked when read, so a file paired with the wrong notes fails."""

    @property
    def key(self) -> tuple[int, int]:
        return (self.begin, self.end)


class FinalCode(_Strict):
    code: str
    spans: list[Span] = []


class Correction(_Strict):
    format: Literal["sclcoder-corrections/1"] = CORRECTIONS_FORMAT
    note_id: str
    action: Action
    code: str | None = None
    spans: list[Span] = []
    final: list[FinalCode] | None = None
    """`done` only: every code the note keeps, with its evidence (untouched model codes included: done accepts them)."""
    coder: str = ""
    time: str = ""
    adapter: str | None = None
    """The adapter whose predictions were under review."""

    def problem(self) -> SclError | None:
        """What this action lacks (a code, its one span, a done's final codes), as an error naming the field."""
        if self.action in CODE_ACTIONS and not self.code:
            return SclError(f"{self.action} needs a code", field="code")
        if self.action in SPAN_ACTIONS and len(self.spans) != 1:
            return SclError(f"{self.action} is about exactly one span", field="spans")
        if self.action == "done" and self.final is None:
            return SclError("done needs the note's final codes", field="final")
        return None

    def row(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def line(self) -> str:
        return json.dumps(self.row(), ensure_ascii=False) + "\n"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_spans(c: Correction, text: str) -> None:
    spans = [*c.spans, *(s for f in c.final or [] for s in f.spans)]
    for i, s in enumerate(spans):
        if not s.begin < s.end <= len(text):
            raise SclError(
                f"[{s.begin}, {s.end}) lies outside note {c.note_id!r} ({len(text)} characters)", field="spans"
            )
        if text[s.begin : s.end] != s.text:
            raise SclError(
                f"note {c.note_id!r} reads {text[s.begin : s.end]!r} at [{s.begin}, {s.end}), not {s.text!r}",
                field=f"spans[{i}].text",
            )


def read_corrections(
    path: str | PathLike[str], notes: dict[str, str], system: str | None = None
) -> Iterator[tuple[int, Correction]]:
    """(line, decision) of a corrections file, each checked against `notes` (id -> text): an unknown note id,
    a span outside its note or over other words, a code unknown to `system` (when given) is one error naming
    file, line and field. A last line without its newline is a decision cut by a crash and is passed over (it
    was never acknowledged)."""
    from sclcoder.data import codes as codes_mod

    p = Path(path)
    if not p.exists():
        return
    size = p.stat().st_size
    with open(p, "rb") as fh:
        complete = size == 0 or (fh.seek(size - 1), fh.read(1))[1] == b"\n"
    lines = list(text_lines(p))
    for lineno, raw in lines:
        if not raw.strip():
            continue
        if lineno == len(lines) and not complete:
            return
        row = parse_json(raw, path=p, line=lineno)
        if not isinstance(row, dict):
            raise SclError("not a corrections line (a JSON object)", path=p, line=lineno)
        try:
            c = Correction.model_validate(row)
        except ValidationError as exc:
            raise validation_error(exc, path=p, line=lineno) from None
        if (problem := c.problem()) is not None:
            raise problem.at(path=p, line=lineno)
        if c.note_id not in notes:
            raise SclError(f"note {c.note_id!r} is not in the notes file", path=p, line=lineno, field="note_id")
        try:
            _check_spans(c, notes[c.note_id])
            if system is not None:
                if c.code:
                    c.code = codes_mod.validate(c.code, system)
                for i, f in enumerate(c.final or []):
                    try:
                        f.code = codes_mod.validate(f.code, system)
                    except SclError as exc:
                        raise SclError(exc.message, field=f"final[{i}].code") from None
        except SclError as exc:
            raise exc.at(path=p, line=lineno, field="code") from None
            raise exc.at(path=p, line=lineno) from None
        yield lineno, c


# ------------------------------------------------------------------------------------------- reduction

Status = Literal["pending", "accepted", "rejected"]


@dataclass
class CodeReview:
    status: Status = "pending"
    origin: Literal["model", "coder"] = "model"
    spans: dict[tuple[int, int], str] = field(default_factory=dict)
    """Evidence standing for the code, in the order it was given: (begin, end) -> text."""
    span_status: dict[tuple[int, int], Literal["pending", "accepted", "rejected", "added"]] = field(
        default_factory=dict
    )
    negatives: dict[tuple[int, int], str] = field(default_factory=dict)
    """Where the model quoted it when the coder rejected it (hard negatives)."""

    def evidence(self) -> list[tuple[int, int, str]]:
        return [(b, e, t) for (b, e), t in self.spans.items() if self.span_status.get((b, e)) != "rejected"]


@dataclass
class NoteReview:
    note_id: str
    codes: dict[str, CodeReview] = field(default_factory=dict)
    done: bool = False
    actions: int = 0

    def apply(self, c: Correction) -> None:
        self.actions += 1
        if c.action == "done":
            self.done = True
            kept = {f.code for f in c.final or []}
            for f in c.final or []:
                review = self.codes.setdefault(f.code, CodeReview(origin="coder"))
                review.status = "accepted"
                for s in f.spans:
                    review.spans.setdefault(s.key, s.text)
                    review.span_status.setdefault(s.key, "accepted")
            for code, review in self.codes.items():
                if code not in kept and review.status == "accepted":
                    review.status = "rejected"
            return
        if c.action == "reopen":
            self.done = False
            return
        assert c.code is not None  # the model's validator
        review = self.codes.setdefault(c.code, CodeReview(origin="coder" if c.action == "add_code" else "model"))
        if c.action in ("accept_code", "add_code"):
            review.status = "accepted"
            for s in c.spans:
                review.spans.setdefault(s.key, s.text)
                review.span_status[s.key] = "accepted" if c.action == "accept_code" else "added"
        elif c.action == "reject_code":
            review.status = "rejected"
            review.negatives.update({s.key: s.text for s in c.spans})
        else:
            (s,) = c.spans
            review.spans.setdefault(s.key, s.text)
            review.span_status[s.key] = {"accept_span": "accepted", "reject_span": "rejected", "add_span": "added"}[
                c.action
            ]
            if c.action != "reject_span":  # evidence the coder stands behind makes the code right
                review.status = "accepted"

    def accepted(self) -> dict[str, CodeReview]:
        return {code: r for code, r in self.codes.items() if r.status == "accepted"}


def reduce_corrections(corrections: list[Correction]) -> dict[str, NoteReview]:
    """What the coder decided about each note, replaying the decisions in file order."""
    notes: dict[str, NoteReview] = {}
    for c in corrections:
        notes.setdefault(c.note_id, NoteReview(c.note_id)).apply(c)
    return notes


def reviewed_documents(
    corrections_path: str | PathLike[str], notes_path: str | PathLike[str], code_system: Any
) -> list[Document]:
    """One Document per reviewed note: the coder's codes with the evidence they stand behind; `meta` carries
    `done` and the rejected codes' quotes (`hard_negatives`: code -> [(begin, end)])."""
    from sclcoder.data.documents import read_notes
    from sclcoder.errors import Skips

    texts = {n.id: n.text for n in read_notes(notes_path, Skips())}
    reviews = reduce_corrections([c for _, c in read_corrections(corrections_path, texts, code_system)])
    docs = []
    for note_id, review in reviews.items():
        accepted = review.accepted()
        evidence = [Evidence(b, e, code) for code, r in accepted.items() for b, e, _ in r.evidence()]
        negatives = {
            code: sorted(r.negatives) for code, r in review.codes.items() if r.status == "rejected" and r.negatives
        }
        docs.append(
            Document(
                id=note_id,
                text=texts[note_id],
                codes=set(accepted),
                code_system=code_system,
                evidence=sorted(set(evidence)),
                meta={"reviewed": True, "done": review.done, "hard_negatives": negatives, "actions": review.actions},
            )
        )
    return docs
