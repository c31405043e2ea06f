"""Readers: MDACE (annotations + MIMIC-III NOTEEVENTS.csv), MIMIC-IV (discharge + diagnoses) -> Document.

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
dropped unless ``with_procedures`` is set.
"""

from __future__ import annotations

import csv
import json
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
from sclcoder.files import require_dir, require_file
from sclcoder.progress import Bar, bar

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

    def as_dict(self) -> dict[str, Any]:
        return {
            "charts": self.charts,
            "notes": self.notes,
            "evidence": self.evidence,
            "dropped": dict(self.dropped),
        }


# ----------------------------------------------------------------------------------------------- MDACE


def read_split(path: str | PathLike[str]) -> set[int]:
    """HADM ids from an MDACE split file (one id per line; a header line is tolerated)."""
    p = require_file(path, "split file")
    ids: set[int] = set()
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            value = line.strip().split(",")[0].strip()
            if not value:
                continue
            try:
                ids.add(int(value))
            except ValueError:
                if lineno == 1:
                    continue
                raise SclError(f"expected an HADM id, got {value!r}", path=p, line=lineno) from None
    return ids


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


def _load_chart(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            chart = json.load(fh)
    except json.JSONDecodeError as exc:
        raise SclError(f"not valid JSON ({exc.msg})", path=path, line=exc.lineno) from None
    if not isinstance(chart, dict) or not isinstance(chart.get("notes"), list) or "hadm_id" not in chart:
        raise SclError("not an MDACE chart (needs 'hadm_id' and a list of 'notes')", path=path)
    for i, note in enumerate(chart["notes"]):
        for key in ("note_id", "annotations"):
            if key not in note:
                raise SclError("missing", path=path, field=f"notes[{i}].{key}")
    return chart


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


def _counted(lines: Iterable[str], progress: Bar) -> Iterator[str]:
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
        open(p, encoding="utf-8", newline="") as fh,
        bar(f"reading {p.name}", size, unit="bytes") as progress,
    ):
        reader = csv.DictReader(_counted(fh, progress))
        header = {h.upper(): h for h in reader.fieldnames or []}
        for needed in ("ROW_ID", "TEXT"):
            if needed not in header:
                raise SclError(f"no {needed} column (is this MIMIC-III NOTEEVENTS.csv?)", path=p, line=1)
        row_key = header["ROW_ID"]
        remaining = set(wanted) if wanted is not None else None
        for row in reader:
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
    categories: Iterable[str] | None = (DISCHARGE,),
    with_procedures: bool = False,
    trim: bool = False,
    merge_adjacent: bool = False,
    code_system: str | CodeSystem | None = None,
    skips: Skips | None = None,
    report: ReadReport | None = None,
    texts: dict[int, str] | None = None,
) -> list[Document]:
    """One Document per annotated MDACE note, its text joined from NOTEEVENTS.csv.

    ``categories=None`` keeps every note category. ``texts`` (ROW_ID -> text) can stand in for the
    CSV, e.g. to read a prediction directory against notes already read. The clean-ups run in the
    MDACE authors' order: merge adjacent spans, then trim.
    """
    skips = skips or Skips()
    report = report if report is not None else ReadReport()
    files = mdace_annotation_files(annotations)
    hadm_ids = split if isinstance(split, set) else (read_split(split) if split is not None else None)
    wanted_categories = {c.strip().lower() for c in categories} if categories is not None else None

    charts: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        chart = _load_chart(path)
        if hadm_ids is not None and int(chart["hadm_id"]) not in hadm_ids:
            continue
        charts.append((path, chart))
    system = CodeSystem.parse(code_system) if code_system else _infer_diagnosis_system(c for _, c in charts)

    selected: list[tuple[Path, dict[str, Any], dict[str, Any]]] = []
    for path, chart in charts:
        report.charts += 1
        for note in chart["notes"]:
            category = str(note.get("category", ""))
            if wanted_categories is not None and category.strip().lower() not in wanted_categories:
                report.dropped[f"notes of category {category!r}"] += 1
                continue
            selected.append((path, chart, note))

    if texts is None:
        if noteevents is None:
            raise SclError("MDACE annotations carry no note text: give the NOTEEVENTS.csv path")
        wanted = {int(note["note_id"]) for _, _, note in selected}
        texts = {row_id: row["TEXT"] for row_id, row in stream_noteevents(noteevents, wanted)}

    docs: list[Document] = []
    for path, chart, note in selected:
        note_id = int(note["note_id"])
        text = texts.get(note_id)
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
                    parsed = _parse_annotation(ann, system=system, with_procedures=with_procedures, report=report)
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
        doc = clean_evidence(doc, trim=trim, merge_adjacent=merge_adjacent)
        doc.evidence.sort()
        report.notes += 1
        report.evidence += len(doc.evidence)
        docs.append(doc)
    return docs


# --------------------------------------------------------------------------------------------- MIMIC-IV


def _csv_rows(
    path: Path, required: tuple[str, ...], progress: Bar | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(_counted(fh, progress) if progress else fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise SclError(f"missing column(s) {', '.join(missing)}", path=path, line=1)
        for row in reader:
            yield reader.line_num, row


def read_mimic4_codes(
    path: str | PathLike[str], system: CodeSystem, *, version: int, skips: Skips | None = None
) -> dict[int, list[str]]:
    """hadm_id -> normalised codes (in seq_num order) from diagnoses_icd.csv or procedures_icd.csv."""
    skips = skips or Skips()
    p = require_file(path, f"MIMIC-IV {'diagnoses' if system.is_diagnosis else 'procedures'} table")
    by_hadm: dict[int, list[tuple[int, str]]] = {}
    for lineno, row in _csv_rows(p, ("hadm_id", "icd_code", "icd_version")):
        if row["icd_version"].strip() != str(version):
            continue
        try:
            code = codes_mod.validate(row["icd_code"], system)
            hadm = int(row["hadm_id"])
        except CodeError as exc:
            skips.handle(exc.at(path=p, line=lineno, field="icd_code"))
            continue
        except ValueError:
            skips.handle(SclError(f"hadm_id {row['hadm_id']!r} is not an integer", path=p, line=lineno))
            continue
        seq = int(row.get("seq_num") or 0)
        by_hadm.setdefault(hadm, []).append((seq, code))
    return {h: list(dict.fromkeys(c for _, c in sorted(v))) for h, v in by_hadm.items()}


def read_mimic4(
    discharge: str | PathLike[str],
    diagnoses: str | PathLike[str],
    *,
    version: int = 10,
    procedures: str | PathLike[str] | None = None,
    hadm_ids: set[int] | None = None,
    skips: Skips | None = None,
    report: ReadReport | None = None,
) -> Iterator[Document]:
    """Discharge notes (MIMIC-IV-Note ``discharge.csv``) with their ICD codes and no evidence.

    MIMIC-IV codes are never dotted: they are dotted here with the version and the table they come
    from. Notes of admissions with no code of the requested version are skipped and counted.
    """
    if version not in (9, 10):
        raise SclError(f"ICD version must be 9 or 10, not {version}", field="version")
    skips = skips or Skips()
    report = report if report is not None else ReadReport()
    dx_system = CodeSystem.ICD10CM if version == 10 else CodeSystem.ICD9CM
    px_system = CodeSystem.ICD10PCS if version == 10 else CodeSystem.ICD9PCS
    dx = read_mimic4_codes(diagnoses, dx_system, version=version, skips=skips)
    px = read_mimic4_codes(procedures, px_system, version=version, skips=skips) if procedures else {}
    p = require_file(discharge, "MIMIC-IV discharge.csv")
    size = p.stat().st_size
    with bar(f"reading {p.name}", size, unit="bytes") as progress:
        for lineno, row in _csv_rows(p, ("note_id", "hadm_id", "text"), progress):
            report.charts += 1
            try:
                hadm = int(row["hadm_id"])
            except ValueError:
                skips.handle(SclError(f"hadm_id {row['hadm_id']!r} is not an integer", path=p, line=lineno))
                continue
            if hadm_ids is not None and hadm not in hadm_ids:
                continue
            codes = dx.get(hadm, [])
            if not codes:
                report.dropped[f"notes without ICD-{version} diagnoses"] += 1
                continue
            doc = Document(
                id=row["note_id"],
                text=row["text"],
                codes=set(codes) | set(px.get(hadm, [])),
                code_system=dx_system,
                meta={
                    "source": "mimic4",
                    "hadm_id": hadm,
                    "subject_id": row.get("subject_id"),
                    "note_id": row["note_id"],
                    "category": row.get("note_type") or DISCHARGE,
                },
            )
            report.notes += 1
            yield doc
