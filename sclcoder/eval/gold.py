"""What `sclcoder eval` scores against what: gold from a benchmark (MDACE, RD-IV-10 JSONL, the demo corpus, or
any gold JSONL) and predictions from our JSONL or from MDACE-layout directories.

Both prediction formats become the same `Prediction` objects read against the gold notes' text, so the MDACE
authors' baselines and our models are scored by the same code.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder import defaults
from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document, Evidence, clean_evidence, read_documents
from sclcoder.data.readers import read_mdace
from sclcoder.errors import SclError
from sclcoder.eval.metrics import Prediction
from sclcoder.eval.report import PredictionsSummary
from sclcoder.files import read_jsonl
from sclcoder.infer.predictions import PredictionLine, parse_line
from sclcoder.recipe import MdaceFilters

log = logging.getLogger("sclcoder")


@dataclass(frozen=True)
class MdaceLocation:
    """Where the MDACE checkout and MIMIC-III notes are, and which of its gold standards is scored."""

    mdace_dir: Path
    noteevents: Path
    split: str = defaults.MDACE_TEST_SPLIT
    icd: int = defaults.ICD_VERSION
    setting: str = "Inpatient"

    @classmethod
    def find(
        cls, mdace_dir: str | PathLike[str] | None, noteevents: str | PathLike[str] | None, **kw: Any
    ) -> MdaceLocation:
        """Paths given, else from SCLCODER_MDACE_DIR and MIMIC3_NOTEEVENTS; says which one is missing."""
        root = mdace_dir or os.environ.get("SCLCODER_MDACE_DIR")
        notes = noteevents or os.environ.get("MIMIC3_NOTEEVENTS")
        missing = [
            what
            for what, value in (
                ("the MDACE checkout (--mdace-dir or SCLCODER_MDACE_DIR)", root),
                ("MIMIC-III NOTEEVENTS.csv (--noteevents or MIMIC3_NOTEEVENTS)", notes),
            )
            if not value
        ]
        if missing:
            raise SclError("--benchmark mdace needs " + " and ".join(missing))
        if kw.get("icd") not in (None, 9, 10):
            raise SclError(f"--icd is 9 or 10, not {kw['icd']}", field="icd")
        return cls(Path(str(root)), Path(str(notes)), **{k: v for k, v in kw.items() if v is not None})

    @property
    def code_system(self) -> CodeSystem:
        return CodeSystem.ICD10CM if self.icd == 10 else CodeSystem.ICD9CM


@dataclass
class Gold:
    benchmark: str
    docs: list[Document]
    settings: dict[str, Any]
    group: Callable[[Document], str] | None = None
    """How notes pool their evidence items (MDACE: per admission); None scores each note on its own."""
    negated: dict[str, set[str]] = field(default_factory=dict)
    """Demo corpus only: note id -> codes mentioned there only in negated or family context."""
    noteevents: Path | None = None
    """MDACE only: where the text of predicted notes outside the gold notes is read from."""

    @property
    def filters(self) -> MdaceFilters:
        """The clean-ups the gold went through, which predictions go through too."""
        return MdaceFilters.model_validate({k: self.settings[k] for k in MdaceFilters.model_fields})


# ------------------------------------------------------------------------------------------------ gold


def _cleanups(docs: list[Document], filters: MdaceFilters) -> list[Document]:
    # spans trimmed to nothing stay, with zero length: the authors' scoring keeps (and counts) them
    return [clean_evidence(d, trim=filters.trim, merge_adjacent=filters.merge_adjacent, keep_empty=True) for d in docs]


def diagnoses_only(docs: list[Document]) -> list[Document]:
    out = []
    for d in docs:
        keep = d.diagnosis_codes
        out.append(Document(d.id, d.text, keep, d.code_system, [e for e in d.evidence if e.code in keep], d.meta))
    return out


def _settings(filters: MdaceFilters, **where: Any) -> dict[str, Any]:
    return where | filters.model_dump(mode="json")


def gold_mdace(location: MdaceLocation, filters: MdaceFilters) -> Gold:
    root = location.mdace_dir
    annotations = root / "data" / location.setting / f"ICD-{location.icd}"
    split = location.split
    split_file = Path(split) if Path(split).suffix == ".csv" else root / "splits" / location.setting / f"{split}.csv"
    docs = read_mdace(
        annotations,
        location.noteevents,
        split=split_file,
        filters=filters,
        code_system=location.code_system,
        keep_empty=True,
    )
    settings = _settings(
        filters,
        mdace_dir=str(root),
        split=split_file.stem,
        icd=location.icd,
        setting=location.setting,
        grouping="admission",
    )
    return Gold("mdace", docs, settings, lambda d: str(d.meta["hadm_id"]), noteevents=location.noteevents)


def gold_jsonl(path: str | PathLike[str], benchmark: str = "jsonl", filters: MdaceFilters | None = None) -> Gold:
    """Gold from evidence JSONL (`data convert ...`). Convert without clean-ups and ask for them here, so
    that spans trimmed to nothing are kept and counted as the MDACE route keeps them."""
    filters = filters or MdaceFilters()
    docs = list(read_documents(path))
    if filters.categories is not None:
        wanted = {c.lower() for c in filters.categories}
        docs = [d for d in docs if str(d.meta.get("category", "")).lower() in wanted]
    if filters.diagnoses_only:
        docs = diagnoses_only(docs)
    # notes that name their admission (`data convert mdace` writes meta.hadm_id) pool per admission, as the
    # MDACE route does, so the two routes score alike
    by_admission = bool(docs) and all("hadm_id" in d.meta for d in docs)
    return Gold(
        benchmark,
        _cleanups(docs, filters),
        _settings(filters, gold=str(path), grouping="admission" if by_admission else "note"),
        (lambda d: str(d.meta["hadm_id"])) if by_admission else None,
    )


def gold_documents(docs: list[Document], benchmark: str, **where: Any) -> Gold:
    """Gold from documents in memory (the validation notes of a recipe), scored note by note."""
    filters = MdaceFilters()
    return Gold(benchmark, _cleanups(docs, filters), _settings(filters, grouping="note", **where))


def gold_demo(
    corpus: str | PathLike[str] = defaults.DEMO_CORPUS, filters: MdaceFilters | None = None, *, split: str = "test"
) -> Gold:
    """A demo test split: `test` (phrasing shared with training) or `test-unseen` (phrase-disjoint)."""
    from sclcoder.data.corpus_folder import read_demo, read_negated

    filters = filters or MdaceFilters()
    docs = _cleanups(read_demo(corpus, split=split), filters)
    negated = read_negated(corpus)
    return Gold("demo", docs, _settings(filters, corpus=str(corpus), split=split, grouping="note"), negated=negated)


# ----------------------------------------------------------------------------------------- predictions


def _clean_prediction(doc: Document, pred: Prediction, filters: MdaceFilters) -> Prediction:
    if not (filters.trim or filters.merge_adjacent) or not pred.evidence:
        return pred
    tmp = Document(
        doc.id, doc.text, set(pred.codes) | {e.code for e in pred.evidence}, doc.code_system, list(pred.evidence)
    )
    return Prediction(pred.id, pred.codes, _cleanups([tmp], filters)[0].evidence)


def _document_prediction(row: dict[str, Any], gold: Gold, path: str | PathLike[str], lineno: int) -> Prediction | None:
    """A line in the generic evidence format (e.g. the authors' baselines through `data convert mdace`):
    it brings its own text and admission, so a note outside the gold notes still counts in its admission.
    Gold's filters apply to it as the MDACE route applies them; None when they leave it out."""
    try:
        doc = Document.from_json(row, default_system=gold.docs[0].code_system if gold.docs else CodeSystem.ICD10CM)
    except SclError as exc:
        raise exc.at(path=path, line=lineno) from None
    filters = gold.filters
    if filters.categories is not None and str(doc.meta.get("category", "")).lower() not in {
        c.lower() for c in filters.categories
    }:
        return None
    if filters.diagnoses_only:
        doc = diagnoses_only([doc])[0]
    doc = _cleanups([doc], filters)[0]
    hadm = doc.meta.get("hadm_id")
    return Prediction(doc.id, set(doc.codes), list(doc.evidence), doc.text, None if hadm is None else str(hadm))


class LineChecks:
    """What must hold of a predictions file read against notes, checked line by line: one line per note, and
    every placed quote inside its note and reading what the note says there. Notes the reference does not hold
    are counted; `finish` refuses a file that shares no note with it, or whose codes are of another system."""

    def __init__(self, path: str | PathLike[str], texts: dict[str, str], system: CodeSystem, what: str) -> None:
        self.path, self.texts, self.system, self.what = path, texts, system, what
        self.first_line: dict[str, int] = {}
        self.unknown: list[str] = []
        self.codes: Counter[str] = Counter()

    def check(self, line: PredictionLine, lineno: int) -> str | None:
        """The note's text, or None when the reference does not hold the note."""
        if line.id in self.first_line:
            raise SclError(
                f"a second line for note {line.id!r} (the first is line {self.first_line[line.id]})",
                path=self.path,
                line=lineno,
                field="id",
            )
        self.first_line[line.id] = lineno
        self.codes.update(c.code for c in line.codes)
        text = self.texts.get(line.id)
        if text is None:
            self.unknown.append(line.id)
            return None
        for i, item in enumerate(line.codes):
            for j, quote in enumerate(item.evidence):
                b, e = quote.begin, quote.end
                if b is None or e is None:
                    continue
                where = {"path": self.path, "line": lineno, "field": f"codes.{i}.evidence.{j}"}
                if e > len(text):
                    raise SclError(f"[{b}, {e}) falls outside note {line.id!r} ({len(text)} characters)", **where)
                if quote.text and text[b:e] != quote.text:
                    raise SclError(
                        f"quotes {quote.text!r} at [{b}, {e}), where note {line.id!r} reads {text[b:e]!r}: were "
                        f"these predictions made on other notes than the {self.what}'s?",
                        **where,
                    )
        return text

    def finish(self, *, lines_of_other_kinds: int = 0) -> None:
        if not self.first_line and not lines_of_other_kinds:
            raise SclError("holds no predictions (one line per note is expected)", path=self.path)
        if self.first_line and len(self.unknown) == len(self.first_line):
            raise SclError(
                f"none of its {len(self.first_line)} notes is in the {self.what} (e.g. {self.unknown[0]!r})",
                path=self.path,
            )
        if self.unknown:
            log.warning(
                "%s: %d of %d predicted notes are not in the %s and are not scored (e.g. %r)",
                self.path, len(self.unknown), len(self.first_line), self.what, self.unknown[0],
            )  # fmt: skip
        other = CodeSystem.ICD9CM if self.system is CodeSystem.ICD10CM else CodeSystem.ICD10CM
        in_system = any(codes_mod.is_known(c, self.system) for c in self.codes)
        if self.codes and not in_system and any(codes_mod.is_known(c, other) for c in self.codes):
            raise SclError(
                f"its codes are {other.label} codes, the {self.what}'s are {self.system.label}",
                path=self.path,
                hint=f"score it against {other.label} gold (--icd {9 if other is CodeSystem.ICD9CM else 10})",
            )


def predictions_jsonl(path: str | PathLike[str], gold: Gold) -> tuple[list[Prediction], PredictionsSummary]:
    """Our predictions JSONL, or predictions in the generic evidence format. Every predicted code counts
    (invalid ones are simply wrong); evidence that could not be aligned has no offsets and so no place in
    span metrics. A file that contradicts the gold notes (see LineChecks) is refused."""
    by_id = {d.id: d for d in gold.docs}
    system = gold.docs[0].code_system if gold.docs else CodeSystem.ICD10CM
    checks = LineChecks(path, {d.id: d.text for d in gold.docs}, system, "gold standard")
    preds, matches = [], Counter()
    for lineno, row in read_jsonl(path, what="predictions file"):
        if (
            isinstance(row.get("text"), str)
            and isinstance(row.get("codes"), list)
            and all(isinstance(c, str) for c in row["codes"])
        ):
            if (document := _document_prediction(row, gold, path, lineno)) is not None:
                preds.append(document)
            continue
        line = parse_line(row, path, lineno)
        if checks.check(line, lineno) is None:
            continue  # counted, and warned about once the file is read
        doc = by_id[line.id]
        codes, evidence = set(), []
        for item in line.codes:
            codes.add(item.code)
            for quote in item.evidence:
                matches[quote.match or "unaligned"] += 1
                b, e = quote.begin, quote.end
                if b is not None and e is not None and b < e:
                    evidence.append(Evidence(b, e, item.code))
        pred = _clean_prediction(doc, Prediction(line.id, codes, sorted(set(evidence))), gold.filters)
        pred.confidences = {c.code: c.confidence for c in [*line.codes, *line.withheld]}
        pred.supports = {c.code: c.support for c in [*line.codes, *line.withheld]}
        preds.append(pred)
    checks.finish(lines_of_other_kinds=len(preds) - (len(checks.first_line) - len(checks.unknown)))
    summary = PredictionsSummary(
        format="jsonl", path=str(path), evidence_alignment=dict(matches), notes_not_in_gold=len(checks.unknown)
    )
    return preds, summary


def predictions_mdace_dir(path: str | PathLike[str], gold: Gold) -> tuple[list[Prediction], PredictionsSummary]:
    """MDACE-layout prediction JSONs (the authors' baselines), read against the notes' text: the gold notes',
    and NOTEEVENTS.csv for notes the coders left without evidence (they count in their admission)."""
    from sclcoder.data.readers import ReadReport, load_chart, mdace_annotation_files, stream_noteevents

    # MDACE notes are NOTEEVENTS ROW_IDs; a gold note with another kind of id has no MDACE prediction
    ids = {d.id: str(d.meta.get("note_id", d.id)) for d in gold.docs}
    texts = {int(ids[d.id]): d.text for d in gold.docs if ids[d.id].isdigit()}
    filters = gold.filters
    wanted = {c.lower() for c in filters.categories} if filters.categories is not None else None
    needed = set()
    for file in mdace_annotation_files(path):
        for note in load_chart(file)["notes"]:
            in_scope = wanted is None or str(note.get("category", "")).lower() in wanted
            if in_scope and int(note["note_id"]) not in texts:
                needed.add(int(note["note_id"]))
    if needed and gold.noteevents is not None:
        # raw TEXT: read_mdace below applies the newline policy to every text it is given
        texts.update({row_id: row["TEXT"] for row_id, row in stream_noteevents(gold.noteevents, needed)})
    system = gold.docs[0].code_system if gold.docs else CodeSystem.ICD10CM
    report = ReadReport()
    docs = read_mdace(path, None, texts=texts, filters=filters, code_system=system, report=report, keep_empty=True)
    foreign = {k: n for k, n in report.dropped.items() if "annotations in a" in k}
    if foreign and not any(d.evidence for d in docs):
        raise SclError(
            f"the predictions are in another code system than the gold standard ({', '.join(foreign)})",
            path=path,
            hint="pass --icd 9 for ICD-9 predictions, --icd 10 for ICD-10",
        )
    preds = [Prediction(d.id, set(d.codes), list(d.evidence), d.text, str(d.meta["hadm_id"])) for d in docs]
    return preds, PredictionsSummary(
        format="mdace", path=str(path), notes_without_text=report.dropped["notes without a given text"]
    )


def load_predictions(path: str | PathLike[str], gold: Gold) -> tuple[list[Prediction], PredictionsSummary]:
    p = Path(path)
    if p.is_dir():
        return predictions_mdace_dir(p, gold)
    return predictions_jsonl(p, gold)
