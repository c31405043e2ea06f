"""The MDACE reader (annotations + MIMIC-III NOTEEVENTS.csv) -> Document, and what the readers share (the
read report, split files); MIMIC-IV is read by sclcoder.data.mimic4.

The MIMIC text never ships with sclcoder: these readers join the user's own credentialed files.

MDACE facts the reader relies on (and checks):
* one JSON file per admission (``hadm_id``) with its notes (``note_id`` = NOTEEVENTS ``ROW_ID``) and their
  annotations ``begin``/``end`` (0-based, end-exclusive character offsets into the raw TEXT column),
  ``code`` and ``code_system`` (per annotation: never assume one code system per folder);
* ICD-10-CM and ICD-9 codes are dotted, PCS and CPT codes are not;
* prediction directories use the same layout and may omit ``comment``, ``description`` and ``type``.

Annotations whose code belongs to a *different diagnosis system* than the one read (the Inpatient
ICD-10 files carry two ICD-9-CM E-codes, E860 and E861) are dropped and counted in the report: a
Document holds one diagnosis system. Procedure annotations (ICD-10-PCS, ICD-9 procedures, CPT) are
dropped when the filters ask for diagnoses only.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document, Evidence, clean_evidence
from sclcoder.errors import CodeError, SclError, Skips
from sclcoder.files import parse_json, reading, require_dir, require_file, text_lines
from sclcoder.progress import Bar, bar
from sclcoder.recipe import MdaceFilters

DISCHARGE = "Discharge summary"
# MIMIC notes can be far longer than csv's default 128 KiB field limit.
csv.field_size_limit(sys.maxsize)


@dataclass
class ReadReport:
    """What a reader kept and dropped, so that nothing disappears silently."""

    charts: int = 0
    notes: int = 0
    evidence: int = 0
    dropped: Counter = field(default_factory=Counter)
    changed: Counter = field(default_factory=Counter)
    """What was kept but altered (e.g. line ends), and how often."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "charts": self.charts,
            "notes": self.notes,
            "evidence": self.evidence,
            "dropped": dict(self.dropped),
            "changed": dict(self.changed),
        }


# ----------------------------------------------------------------------------------------------- MDACE


def read_split(path: str | PathLike[str]) -> set[int]:
    """HADM ids from an MDACE split file (one id per line; a header line is tolerated)."""
    p = require_file(path, "split file")
    ids: set[int] = set()
    for lineno, line in text_lines(p):
        value = line.strip().split(",")[0].strip()
        if not value:
            continue
        try:
            ids.add(int(value))
        except ValueError:
            if lineno == 1:
                continue
            raise SclError(f"expected an HADM id, got {value!r}", path=p, line=lineno) from None
    if not ids:
        raise SclError("lists no HADM ids: every note would be left out", path=p)
    return ids


def whole_row(row: dict[Any, Any], path: str | PathLike[str], lineno: int) -> dict[str, str]:
    """A CSV row with exactly the header's columns; a row cut short (the file's end lost) or one with more
    fields than the header is one error naming its line."""
    if None in row:
        raise SclError("has more fields than the header", path=path, line=lineno)
    if any(v is None for v in row.values()):
        missing = [k for k, v in row.items() if v is None]
        raise SclError(f"ends before column {missing[0]!r}: is the file cut short?", path=path, line=lineno)
    return row


def mdace_annotation_files(annotations: str | PathLike[str]) -> list[Path]:
    """The chart JSON files of an MDACE annotation (or prediction) directory.

    Accepts the directory holding the JSON files, or its parent when that holds a single version
    folder (``data/Inpatient/ICD-10`` -> ``data/Inpatient/ICD-10/1.0``).
    """
    root = require_dir(annotations, "MDACE annotation directory")
    files = sorted(root.glob("*.json"))
    if not files:
        subdirs = [d for d in root.iterdir() if d.is_dir() and any(d.glob("*.json"))]
        if len(subdirs) == 1:
            files = sorted(subdirs[0].glob("*.json"))
        elif len(subdirs) > 1:
            names = ", ".join(sorted(d.name for d in subdirs))
            raise SclError(f"several annotation folders ({names}); name one", path=root)
    if not files:
        raise SclError("no MDACE chart JSON files here", path=root)
    return files


def load_chart(path: Path) -> dict[str, Any]:
    with reading(path):
        text = path.read_text(encoding="utf-8")
    chart = parse_json(text, path=path)
    if not isinstance(chart, dict) or not isinstance(chart.get("notes"), list) or "hadm_id" not in chart:
        raise SclError("not an MDACE chart (needs 'hadm_id' and a list of 'notes')", path=path)
    if not _is_id(chart["hadm_id"]):
        raise SclError(f"hadm_id must be a whole number, got {chart['hadm_id']!r}", path=path, field="hadm_id")
    for i, note in enumerate(chart["notes"]):
        if not isinstance(note, dict):
            raise SclError("a note is an object", path=path, field=f"notes[{i}]")
        for key in ("note_id", "annotations"):
            if key not in note:
                raise SclError("missing", path=path, field=f"notes[{i}].{key}")
        if not _is_id(note["note_id"]):
            raise SclError(
                f"note_id must be a whole number (a NOTEEVENTS ROW_ID), got {note['note_id']!r}",
                path=path,
                field=f"notes[{i}].note_id",
            )
        if not isinstance(note["annotations"], list) or not all(isinstance(a, dict) for a in note["annotations"]):
            raise SclError("a list of annotation objects is expected", path=path, field=f"notes[{i}].annotations")
    return chart


def _is_id(value: Any) -> bool:
    """A whole number, or a string of digits (MDACE writes ids as numbers; hand-made files may quote them)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, str) and value.isdigit())


def _infer_diagnosis_system(charts: Iterable[dict[str, Any]]) -> CodeSystem:
    votes: Counter = Counter()
    for chart in charts:
        for note in chart["notes"]:
            for ann in note["annotations"]:
                try:
                    system = CodeSystem.parse(ann.get("code_system", ""))
                except CodeError:
                    continue
                if system.is_diagnosis:
                    votes[system] += 1
    return votes.most_common(1)[0][0] if votes else CodeSystem.ICD10CM


def counted(lines: Iterable[str], progress: Bar) -> Iterator[str]:
    # Characters stand in for bytes: MIMIC text is nearly all ASCII and the bar is only a guide.
    for line in lines:
        progress.advance(len(line))
        yield line


def stream_noteevents(
    path: str | PathLike[str], wanted: set[int] | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """(ROW_ID, row) from a MIMIC-III NOTEEVENTS.csv, streamed; only `wanted` ids when given.

    The file is opened with newline="" so that the TEXT column keeps its exact characters: MDACE
    offsets count them.
    """
    p = require_file(path, "NOTEEVENTS.csv")
    size = p.stat().st_size
    with (
        reading(p),
        open(p, encoding="utf-8", newline="") as fh,
        bar(f"reading {p.name}", size, unit="bytes") as progress,
    ):
        reader = csv.DictReader(counted(fh, progress))
        header = {h.upper(): h for h in reader.fieldnames or []}
        for needed in ("ROW_ID", "TEXT"):
            if needed not in header:
                raise SclError(f"no {needed} column (is this MIMIC-III NOTEEVENTS.csv?)", path=p, line=1)
        row_key = header["ROW_ID"]
        remaining = set(wanted) if wanted is not None else None
        for raw in reader:
            row = whole_row(raw, p, reader.line_num)
            try:
                row_id = int(row[row_key])
            except (TypeError, ValueError):
                raise SclError(f"ROW_ID {row[row_key]!r} is not an integer", path=p, line=reader.line_num) from None
            if remaining is not None:
                if row_id not in remaining:
                    continue
                remaining.discard(row_id)
            yield row_id, {k.upper(): v for k, v in row.items() if k is not None}
            if remaining is not None and not remaining:
                return


def _parse_annotation(
    ann: dict[str, Any], *, system: CodeSystem, with_procedures: bool, report: ReadReport
) -> tuple[str, CodeSystem] | None:
    """Normalised (code, system) of an annotation, or None when it is dropped by policy."""
    for key in ("begin", "end", "code", "code_system"):
        if key not in ann:
            raise SclError("missing", field=key)
    try:
        ann_system = CodeSystem.parse(ann["code_system"])
    except CodeError as exc:
        raise exc.at(field="code_system") from None
    if ann_system.is_diagnosis and ann_system is not system:
        report.dropped[f"{ann_system.label} annotations in a {system.label} chart"] += 1
        return None
    if not ann_system.is_diagnosis:
        if ann_system not in system.procedure_systems:
            report.dropped[f"{ann_system.label} annotations in a {system.label} chart"] += 1
            return None
        if not with_procedures:
            report.dropped[f"{ann_system.label} procedure annotations"] += 1
            return None
    try:
        return codes_mod.validate(ann["code"], ann_system), ann_system
    except CodeError as exc:
        raise exc.at(field="code") from None


def read_mdace(
    annotations: str | PathLike[str],
    noteevents: str | PathLike[str] | None,
    *,
    split: str | PathLike[str] | set[int] | None = None,
    filters: MdaceFilters | None = None,
    code_system: str | CodeSystem | None = None,
    skips: Skips | None = None,
    report: ReadReport | None = None,
    texts: dict[int, str] | None = None,
    keep_empty: bool = False,
) -> list[Document]:
    """One Document per annotated MDACE note, its text joined from NOTEEVENTS.csv.

    `filters` chooses categories, codes, clean-ups and newlines (default: as the MDACE authors' scoring
    script reads them). ``texts`` (ROW_ID -> text) can stand in for the CSV, e.g. to read a prediction
    directory against notes already read; notes it has no text for are then passed over and counted.
    The clean-ups run in the MDACE authors' order: merge adjacent spans, then trim; a span trimmed to
    nothing is dropped and counted, or kept with zero length (`keep_empty`, as the authors' scoring does).
    """
    skips = skips or Skips()
    report = report if report is not None else ReadReport()
    files = mdace_annotation_files(annotations)
    hadm_ids = split if isinstance(split, set) else (read_split(split) if split is not None else None)
    filters = filters or MdaceFilters()
    categories = filters.categories
    wanted_categories = {c.strip().lower() for c in categories} if categories is not None else None

    charts: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        chart = load_chart(path)
        if hadm_ids is not None and int(chart["hadm_id"]) not in hadm_ids:
            continue
        charts.append((path, chart))
    system = CodeSystem.parse(code_system) if code_system else _infer_diagnosis_system(c for _, c in charts)

    selected: list[tuple[Path, dict[str, Any], dict[str, Any]]] = []
    seen: dict[int, Path] = {}
    for path, chart in charts:
        report.charts += 1
        for note in chart["notes"]:
            note_id = int(note["note_id"])
            if note_id in seen:
                raise SclError(
                    f"note_id {note_id} is annotated twice (also in {seen[note_id].name}): one note, one place",
                    path=path,
                    field="note_id",
                )
            seen[note_id] = path
            category = str(note.get("category", ""))
            if wanted_categories is not None and category.strip().lower() not in wanted_categories:
                report.dropped[f"notes of category {category!r}"] += 1
                continue
            selected.append((path, chart, note))

    texts_given = texts is not None
    if texts is None:
        if noteevents is None:
            raise SclError("MDACE annotations carry no note text: give the NOTEEVENTS.csv path")
        wanted = {int(note["note_id"]) for _, _, note in selected}
        texts = {row_id: row["TEXT"] for row_id, row in stream_noteevents(noteevents, wanted)}
    carriage_returns = sum(1 for t in texts.values() if "\r" in t)
    if carriage_returns and filters.newlines == "official":
        # the authors' injection opens NOTEEVENTS.csv in text mode: CR LF and lone CR arrive as LF
        texts = {k: t.replace("\r\n", "\n").replace("\r", "\n") for k, t in texts.items()}
        report.changed["notes whose CR LF became LF (newlines: official)"] += carriage_returns

    docs: list[Document] = []
    for path, chart, note in selected:
        note_id = int(note["note_id"])
        text = texts.get(note_id)
        if text is None and texts_given:
            report.dropped["notes without a given text"] += 1  # the caller chose which notes to read
            continue
        if text is None:
            skips.handle(
                SclError(
                    f"note_id {note_id} (hadm_id {chart['hadm_id']}) has no row in NOTEEVENTS.csv",
                    path=path,
                    hint="was NOTEEVENTS.csv cut short?",
                )
            )
            report.dropped["notes missing from NOTEEVENTS.csv"] += 1
            continue
        doc = Document(
            id=str(note_id),
            text=text,
            code_system=system,
            meta={
                "source": "mdace",
                "hadm_id": int(chart["hadm_id"]),
                "note_id": note_id,
                "category": note.get("category"),
                "description": note.get("description"),
            },
        )
        try:
            for i, ann in enumerate(note["annotations"]):
                where = f"notes[note_id={note_id}].annotations[{i}]"
                try:
                    parsed = _parse_annotation(
                        ann, system=system, with_procedures=not filters.diagnoses_only, report=report
                    )
                except SclError as exc:
                    inner = f"{where}.{exc.field}" if exc.field else where
                    raise SclError(exc.message, path=path, field=inner, hint=exc.hint) from None
                if parsed is None:
                    continue
                code, _ = parsed
                begin, end = ann["begin"], ann["end"]
                if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin < end <= len(text)):
                    raise SclError(
                        f"offsets [{begin}, {end}) for {code} fall outside note {note_id} (text length {len(text)})",
                        path=path,
                        field=where,
                    )
                doc.codes.add(code)
                doc.evidence.append(Evidence(begin, end, code))
        except SclError as exc:
            skips.handle(exc)
            report.dropped["notes with invalid annotations"] += 1
            continue
        doc = clean_evidence(doc, trim=filters.trim, merge_adjacent=filters.merge_adjacent, keep_empty=True)
        if not keep_empty and (empty := [ev for ev in doc.evidence if ev.begin == ev.end]):
            report.dropped["evidence spans trimmed to nothing"] += len(empty)
            doc.evidence = [ev for ev in doc.evidence if ev.begin < ev.end]
        doc.evidence.sort()
        report.notes += 1
        report.evidence += len(doc.evidence)
        docs.append(doc)
    return docs
