"""The MIMIC-IV reader: discharge notes (MIMIC-IV-Note) joined to their ICD codes (hosp/diagnoses_icd.csv,
optionally procedures_icd.csv) -> Document. Codes only: MIMIC-IV has no evidence annotation. The text
never ships with sclcoder; this reads the user's own credentialed files."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

from sclcoder import defaults
from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document
from sclcoder.data.readers import DISCHARGE, ReadReport, counted, whole_row
from sclcoder.errors import CodeError, SclError, Skips
from sclcoder.files import reading, require_file
from sclcoder.progress import Bar, bar


def _csv_rows(
    path: Path, required: tuple[str, ...], progress: Bar | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    with reading(path), open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(counted(fh, progress) if progress else fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise SclError(f"missing column(s) {', '.join(missing)}", path=path, line=1)
        for row in reader:
            yield reader.line_num, whole_row(row, path, reader.line_num)


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
        try:
            seq = int(row.get("seq_num") or 0)
        except ValueError:
            skips.handle(
                SclError(f"seq_num {row['seq_num']!r} is not an integer", path=p, line=lineno, field="seq_num")
            )
            continue
        by_hadm.setdefault(hadm, []).append((seq, code))
    return {h: list(dict.fromkeys(c for _, c in sorted(v))) for h, v in by_hadm.items()}


def read_mimic4(
    discharge: str | PathLike[str],
    diagnoses: str | PathLike[str],
    *,
    version: int = defaults.ICD_VERSION,
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
    seen: dict[str, int] = {}
    with bar(f"reading {p.name}", size, unit="bytes") as progress:
        for lineno, row in _csv_rows(p, ("note_id", "hadm_id", "text"), progress):
            report.charts += 1
            if row["note_id"] in seen:
                raise SclError(
                    f"note_id {row['note_id']!r} appears twice (first at line {seen[row['note_id']]})",
                    path=p,
                    line=lineno,
                    field="note_id",
                )
            seen[row["note_id"]] = lineno
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
