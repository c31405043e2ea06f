"""The one in-memory note model every reader yields, and the generic evidence JSONL it round-trips to.

Generic evidence JSONL, one note per line::

    {"id": "n1", "text": "...", "code_system": "icd10cm", "codes": ["E11.9", "I10"],
     "evidence": [{"begin": 120, "end": 144, "code": "E11.9", "granularity": "mention"}],
     "meta": {"hadm_id": 100197, "category": "Discharge summary"}}

``code_system`` defaults to ``icd10cm``; ``evidence`` may be empty (codes without evidence, as in
MIMIC-IV); ``granularity`` is an optional free tag per span (e.g. mention / phrase / sentence, as in
multi-granular rationale sets); an evidence item may carry ``"quote"``, which is checked against the
text at its offsets and not stored. Offsets are 0-based, end-exclusive, in characters of ``text``.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from os import PathLike
from typing import Any

from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.errors import CodeError, SclError, Skips
from sclcoder.files import read_jsonl, write_jsonl_atomic


@dataclass(frozen=True, order=True)
class Evidence:
    begin: int
    end: int
    code: str
    granularity: str | None = None


@dataclass
class Document:
    id: str
    text: str
    codes: set[str] = field(default_factory=set)
    code_system: CodeSystem = CodeSystem.ICD10CM
    evidence: list[Evidence] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def quote(self, ev: Evidence) -> str:
        return self.text[ev.begin : ev.end]

    def evidence_by_code(self) -> dict[str, list[Evidence]]:
        out: dict[str, list[Evidence]] = {}
        for ev in sorted(self.evidence):
            out.setdefault(ev.code, []).append(ev)
        return out

    def system_of(self, code: str) -> CodeSystem:
        """The system of one of this document's codes (diagnoses, or procedures kept alongside)."""
        return codes_mod.infer_system(code, (self.code_system, *self.code_system.procedure_systems))

    @property
    def diagnosis_codes(self) -> set[str]:
        return {c for c in self.codes if self.system_of(c) is self.code_system}

    def check(self) -> None:
        """Raise SclError (field named) if offsets or codes are inconsistent with the text."""
        n = len(self.text)
        for i, ev in enumerate(self.evidence):
            where = f"evidence[{i}]"
            if not (0 <= ev.begin < ev.end <= n):
                raise SclError(
                    f"offsets [{ev.begin}, {ev.end}) of code {ev.code} fall outside the text "
                    f"(length {n}) of note {self.id}",
                    field=where,
                )
            if ev.code not in self.codes:
                raise SclError(f"evidence code {ev.code} is not among the note's codes", field=where)

    def to_json(self) -> dict[str, Any]:
        evidence = []
        for ev in sorted(self.evidence):
            item: dict[str, Any] = {"begin": ev.begin, "end": ev.end, "code": ev.code}
            if ev.granularity is not None:
                item["granularity"] = ev.granularity
            evidence.append(item)
        out: dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "code_system": self.code_system.value,
            "codes": sorted(self.codes),
            "evidence": evidence,
        }
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], *, default_system: CodeSystem = CodeSystem.ICD10CM) -> Document:
        """Parse one generic JSONL record; errors name the field (the caller adds file and line)."""
        allowed = {"id", "text", "code_system", "codes", "evidence", "meta"}
        extra = sorted(set(obj) - allowed)
        if extra:
            raise SclError(
                f"unknown field(s) {', '.join(extra)}",
                field=extra[0],
                hint="put extra information under 'meta'",
            )
        for key in ("id", "text"):
            if key not in obj:
                raise SclError("missing", field=key)
        if not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool):
            raise SclError("must be a string", field="id")
        if not isinstance(obj["text"], str):
            raise SclError("must be a string", field="text")
        try:
            system = CodeSystem.parse(obj.get("code_system", default_system))
        except CodeError as exc:
            raise exc.at(field="code_system") from None
        doc = cls(id=str(obj["id"]), text=obj["text"], code_system=system)
        meta = obj.get("meta", {})
        if not isinstance(meta, dict):
            raise SclError("must be an object", field="meta")
        doc.meta = meta
        candidates = (system, *system.procedure_systems)

        def norm(raw: Any, where: str) -> str:
            if not isinstance(raw, str):
                raise SclError("code must be a string", field=where)
            try:
                return codes_mod.validate(raw, codes_mod.infer_system(raw, candidates))
            except CodeError as exc:
                raise exc.at(field=where) from None

        raw_codes = obj.get("codes")
        if raw_codes is not None and not isinstance(raw_codes, list):
            raise SclError("must be a list of codes", field="codes")
        doc.codes = {norm(c, f"codes[{i}]") for i, c in enumerate(raw_codes or [])}
        raw_ev = obj.get("evidence", [])
        if not isinstance(raw_ev, list):
            raise SclError("must be a list", field="evidence")
        for i, item in enumerate(raw_ev):
            where = f"evidence[{i}]"
            if not isinstance(item, dict):
                raise SclError("must be an object with begin, end, code", field=where)
            unknown = sorted(set(item) - {"begin", "end", "code", "granularity", "quote"})
            if unknown:
                raise SclError(f"unknown key(s) {', '.join(unknown)}", field=where)
            for key in ("begin", "end", "code"):
                if key not in item:
                    raise SclError("missing", field=f"{where}.{key}")
            begin, end = item["begin"], item["end"]
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (begin, end)):
                raise SclError("begin and end must be integers", field=where)
            code = norm(item["code"], f"{where}.code")
            if raw_codes is None:
                doc.codes.add(code)
            gran = item.get("granularity")
            if gran is not None and not isinstance(gran, str):
                raise SclError("must be a string", field=f"{where}.granularity")
            ev = Evidence(begin, end, code, gran)
            doc.evidence.append(ev)
            if "quote" in item and 0 <= begin <= end <= len(doc.text) and doc.text[begin:end] != item["quote"]:
                raise SclError(
                    f"text at [{begin}, {end}) is {doc.text[begin:end]!r}, not the quoted {item['quote']!r}",
                    field=f"{where}.quote",
                )
        doc.evidence.sort()
        doc.check()
        return doc


def read_documents(
    path: str | PathLike[str], *, skips: Skips | None = None, default_system: CodeSystem = CodeSystem.ICD10CM
) -> Iterator[Document]:
    """Stream documents from a generic evidence JSONL file."""
    skips = skips or Skips()
    seen: set[str] = set()
    for lineno, obj in read_jsonl(path, skips):
        try:
            doc = Document.from_json(obj, default_system=default_system)
            if doc.id in seen:
                raise SclError(f"duplicate id {doc.id!r}", field="id")
        except SclError as exc:
            skips.handle(exc.at(path=path, line=lineno))
            continue
        seen.add(doc.id)
        yield doc


@dataclass
class Note:
    id: str
    text: str


def read_notes(path: str | PathLike[str], skips: Skips) -> Iterator[Note]:
    """Notes from JSONL: each line needs `id` and `text` (generic evidence JSONL works as is)."""
    seen: set[str] = set()
    for lineno, obj in read_jsonl(path, skips, what="notes file"):
        problem = None
        if "id" not in obj or "text" not in obj:
            problem = SclError("missing", path=path, line=lineno, field="id" if "id" not in obj else "text")
        elif not isinstance(obj["text"], str):
            problem = SclError("must be a string", path=path, line=lineno, field="text")
        elif str(obj["id"]) in seen:
            problem = SclError(f"duplicate id {obj['id']!r}", path=path, line=lineno, field="id")
        if problem:
            skips.handle(problem)
            continue
        seen.add(str(obj["id"]))
        yield Note(str(obj["id"]), obj["text"])


def write_documents(path: str | PathLike[str], docs: Iterable[Document]) -> int:
    """Write generic evidence JSONL atomically; returns the number of notes written."""
    return write_jsonl_atomic(path, (d.to_json() for d in docs))


# --- MDACE clean-ups (same definitions as the MDACE authors; applied to gold and predictions alike) ---

_TRIM = set("-.,/ \n\t")
_TRIM_LEFT = _TRIM | {")"}
_TRIM_RIGHT = _TRIM | {"("}
_CONNECTORS = set(string.punctuation) | set(string.whitespace)


def trim_evidence(doc: Document, *, keep_empty: bool = False) -> Document:
    """Strip punctuation and whitespace at span ends. A span that trims to nothing is dropped, or kept
    with zero length where scores must match the MDACE authors' clean-up, which keeps it."""
    out = []
    for ev in doc.evidence:
        b, e = ev.begin, ev.end
        while b < e and doc.text[b] in _TRIM_LEFT:
            b += 1
        while e > b and doc.text[e - 1] in _TRIM_RIGHT:
            e -= 1
        if b < e or keep_empty:
            out.append(replace(ev, begin=b, end=e))
    return replace(doc, evidence=sorted(set(out)))


def merge_adjacent_evidence(doc: Document) -> Document:
    """Merge a span into the one just before it (in text order) when both have the same code and only
    punctuation or whitespace separates them."""
    merged: list[Evidence] = []
    for ev in sorted(doc.evidence, key=lambda x: (x.begin, x.end, x.code)):
        if merged:
            prev = merged[-1]
            gap = doc.text[prev.end : ev.begin]
            if prev.code == ev.code and all(ch in _CONNECTORS for ch in gap):
                merged[-1] = replace(prev, end=max(prev.end, ev.end))
                continue
        merged.append(ev)
    return replace(doc, evidence=sorted(set(merged)))


def clean_evidence(doc: Document, *, trim: bool, merge_adjacent: bool, keep_empty: bool = False) -> Document:
    """The MDACE clean-ups in the authors' order: merge adjacent same-code spans first, then trim."""
    if merge_adjacent:
        doc = merge_adjacent_evidence(doc)
    if trim:
        doc = trim_evidence(doc, keep_empty=keep_empty)
    return doc
