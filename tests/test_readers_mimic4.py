"""The MIMIC-IV reader on generated files shaped like discharge.csv and diagnoses_icd.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sclcoder.data.mimic4 import read_mimic4
from sclcoder.data.readers import ReadReport
from sclcoder.errors import SclError, Skips


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def mimic4(tmp_path: Path) -> tuple[Path, Path, Path]:
    discharge = _write_csv(
        tmp_path / "discharge.csv",
        ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"],
        [
            [
                "10-DS-1",
                10,
                201,
                "DS",
                1,
                "",
                "",
                'Discharge summary one.\nT2DM, HTN, "quoted", line\r\nbreaks',
            ],
            ["11-DS-1", 11, 202, "DS", 1, "", "", "ICD-9 era admission"],
            ["12-DS-1", 12, 203, "DS", 1, "", "", "an admission without codes"],
        ],
    )
    diagnoses = _write_csv(
        tmp_path / "diagnoses_icd.csv",
        ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"],
        [
            [10, 201, 2, "I10", 10],
            [10, 201, 1, "E119", 10],
            [10, 201, 3, "Z7984", 10],
            [11, 202, 1, "4019", 9],
            [11, 202, 2, "25000", 9],
            [11, 202, 3, "V5861", 9],
        ],
    )
    procedures = _write_csv(
        tmp_path / "procedures_icd.csv",
        ["subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"],
        [[10, 201, 1, "", "5A1935Z", 10], [11, 202, 1, "", "9671", 9]],
    )
    return discharge, diagnoses, procedures


def test_icd10_notes_get_dotted_codes_and_no_evidence(mimic4) -> None:
    discharge, diagnoses, _ = mimic4
    report = ReadReport()
    docs = list(read_mimic4(discharge, diagnoses, version=10, report=report))
    assert [d.id for d in docs] == ["10-DS-1"]
    (doc,) = docs
    assert doc.codes == {"E11.9", "I10", "Z79.84"}
    assert doc.evidence == [] and doc.code_system.value == "icd10cm"
    assert doc.text.endswith('"quoted", line\r\nbreaks')  # exact characters, CRLF kept
    assert doc.meta["hadm_id"] == 201
    assert report.dropped == {"notes without ICD-10 diagnoses": 2}


def test_icd9_version_and_procedures(mimic4) -> None:
    discharge, diagnoses, procedures = mimic4
    (doc,) = read_mimic4(discharge, diagnoses, version=9, procedures=procedures)
    assert doc.codes == {"401.9", "250.00", "V58.61", "96.71"}  # the procedure is dotted after 2 digits
    assert doc.system_of("96.71").value == "icd9pcs"
    assert doc.diagnosis_codes == {"401.9", "250.00", "V58.61"}


def test_hadm_filter(mimic4) -> None:
    discharge, diagnoses, _ = mimic4
    assert list(read_mimic4(discharge, diagnoses, version=10, hadm_ids={999})) == []


def test_bad_code_names_file_line_and_field(mimic4, tmp_path: Path) -> None:
    discharge, diagnoses, _ = mimic4
    with open(diagnoses, "a", newline="") as fh:
        csv.writer(fh).writerow([10, 201, 4, "Q9999X", 10])
    with pytest.raises(SclError, match=r"diagnoses_icd\.csv:8: field 'icd_code': .*'Q9999X'"):
        list(read_mimic4(discharge, diagnoses, version=10))
    skips = Skips(allowed=True)
    (doc,) = read_mimic4(discharge, diagnoses, version=10, skips=skips)
    assert skips.count == 1 and doc.codes == {"E11.9", "I10", "Z79.84"}


def test_missing_columns_and_files(mimic4, tmp_path: Path) -> None:
    discharge, diagnoses, _ = mimic4
    bad = _write_csv(tmp_path / "d.csv", ["hadm_id", "code"], [[1, "I10"]])
    with pytest.raises(SclError, match=r"d\.csv:1: missing column\(s\) icd_code, icd_version"):
        list(read_mimic4(discharge, bad))
    with pytest.raises(SclError, match=r"MIMIC-IV discharge\.csv not found"):
        list(read_mimic4(tmp_path / "none.csv", diagnoses))
    with pytest.raises(SclError, match="ICD version must be 9 or 10"):
        list(read_mimic4(discharge, diagnoses, version=11))
