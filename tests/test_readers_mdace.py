"""The MDACE reader on the real MDACE annotation files, joined to generated note text."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from sclcoder.data import codes
from sclcoder.data.readers import ReadReport, read_mdace, read_split
from sclcoder.errors import SclError, Skips
from sclcoder.recipe import MdaceFilters

# the generated note text carries CR LF on purpose: read it as it is
KEEP = MdaceFilters(newlines="keep")
DISCHARGE_DX = MdaceFilters(categories=["Discharge summary"], diagnoses_only=True, newlines="keep")


def _raw_annotations(folder: Path, hadm_ids: set[int] | None, categories: set[str] | None, systems: set[str]):
    """Independent count from the raw JSON: (notes with a kept annotation or in scope, annotation rows)."""
    notes, rows = set(), 0
    for path in folder.glob("*.json"):
        chart = json.loads(path.read_text())
        if hadm_ids is not None and chart["hadm_id"] not in hadm_ids:
            continue
        for note in chart["notes"]:
            if categories is not None and note["category"] not in categories:
                continue
            notes.add(note["note_id"])
            rows += sum(1 for a in note["annotations"] if a["code_system"] in systems)
    return notes, rows


@pytest.mark.parametrize(
    ("setting", "charts", "spans"),
    [
        ("Inpatient/ICD-10", 302, 3934),
        ("Inpatient/ICD-9", 302, 3934),
        ("Profee/ICD-10", 52, 5563),
        ("Profee/ICD-9", 52, 5563),
    ],
)
def test_published_totals(mdace_dir: Path, mdace_notes, setting: str, charts: int, spans: int) -> None:
    noteevents, texts = mdace_notes
    report = ReadReport()
    docs = read_mdace(mdace_dir / "data" / setting, noteevents, filters=KEEP, report=report)
    assert report.charts == charts
    assert len({d.meta["hadm_id"] for d in docs}) == charts
    assert sum(len(d.evidence) for d in docs) == spans
    for doc in docs:
        # the joined text is exactly the TEXT column of the right row, CRLF and accents included
        assert doc.text == texts[int(doc.id)]
        doc.check()
    if setting == "Inpatient/ICD-10":
        # 3,936 rows in these files: the two ICD-9-CM E-codes are dropped and counted, not kept
        assert report.dropped == {"ICD-9-CM annotations in a ICD-10-CM chart": 2}


@pytest.mark.parametrize("setting", ["Inpatient/ICD-10", "Inpatient/ICD-9", "Profee/ICD-10"])
@pytest.mark.parametrize("split", ["MDace-ev-train", "MDace-ev-val", "MDace-ev-test", "MDace-code-ev-test"])
def test_split_counts_match_raw_json(mdace_dir: Path, mdace_notes, setting: str, split: str) -> None:
    noteevents, _ = mdace_notes
    kind = setting.split("/")[0]
    split_file = mdace_dir / "splits" / kind / f"{split}.csv"
    hadm = read_split(split_file)
    diagnosis = "ICD-10-CM" if "ICD-10" in setting else "ICD-9-CM"
    docs = read_mdace(mdace_dir / "data" / setting, noteevents, split=split_file, filters=DISCHARGE_DX)
    notes, rows = _raw_annotations(mdace_dir / "data" / setting / "1.0", hadm, {"Discharge summary"}, {diagnosis})
    assert notes and {int(d.id) for d in docs} == notes
    assert sum(len(d.evidence) for d in docs) == rows
    assert all(d.meta["category"] == "Discharge summary" for d in docs)
    assert all(d.meta["hadm_id"] in hadm for d in docs)


def test_codes_are_normalised_and_known(mdace_dir: Path, mdace_notes) -> None:
    noteevents, _ = mdace_notes
    docs = read_mdace(mdace_dir / "data/Inpatient/ICD-9", noteevents, filters=KEEP)
    systems = Counter(d.system_of(c).value for d in docs for c in d.codes)
    assert set(systems) == {"icd9cm", "icd9pcs"}
    for doc in docs:
        for code in doc.codes:
            system = doc.system_of(code)
            assert codes.normalize(code, system) == code


def test_procedures_and_categories_are_options(mdace_dir: Path, mdace_notes) -> None:
    noteevents, _ = mdace_notes
    folder = mdace_dir / "data/Inpatient/ICD-10"
    report = ReadReport()
    dx_only = read_mdace(folder, noteevents, filters=KEEP.model_copy(update={"diagnoses_only": True}), report=report)
    assert report.dropped["ICD-10-PCS procedure annotations"] == 272
    assert all(d.system_of(c).value == "icd10cm" for d in dx_only for c in d.codes)
    radiology = read_mdace(folder, noteevents, filters=MdaceFilters(categories=["Radiology"], newlines="keep"))
    assert radiology and all(d.meta["category"] == "Radiology" for d in radiology)


def test_clean_ups_follow_the_authors_order(mdace_dir: Path, mdace_notes) -> None:
    noteevents, _ = mdace_notes
    folder = mdace_dir / "data/Inpatient/ICD-9"
    test = mdace_dir / "splits/Inpatient/MDace-ev-test.csv"
    cats = ["Discharge summary", "Radiology", "Physician"]
    plain = read_mdace(folder, noteevents, split=test, filters=MdaceFilters(categories=cats, newlines="keep"))
    merged = read_mdace(
        folder, noteevents, split=test, filters=MdaceFilters(categories=cats, newlines="keep", merge_adjacent=True)
    )
    assert sum(len(d.evidence) for d in merged) < sum(len(d.evidence) for d in plain)
    trimmed = read_mdace(
        folder, noteevents, split=test, filters=MdaceFilters(categories=cats, newlines="keep", trim=True)
    )
    for doc in trimmed:
        for ev in doc.evidence:
            quote = doc.quote(ev)
            assert quote[0] not in "-.,/ \n\t)" and quote[-1] not in "-.,/ \n\t("


# ----------------------------------------------------------------------------------------------- bad input


def _small_corpus(tmp_path: Path, mdace_dir: Path, mdace_notes, n: int = 3) -> tuple[Path, Path, list[Path]]:
    noteevents, _ = mdace_notes
    folder = tmp_path / "ann"
    folder.mkdir()
    files = sorted((mdace_dir / "data/Inpatient/ICD-10/1.0").glob("*.json"))[:n]
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder, noteevents, [folder / f.name for f in files]


def test_missing_noteevents_row_names_the_note(tmp_path: Path, mdace_dir: Path, mdace_notes) -> None:
    folder, _, files = _small_corpus(tmp_path, mdace_dir, mdace_notes)
    chart = json.loads(files[1].read_text())
    missing_id = chart["notes"][0]["note_id"]
    _, texts = mdace_notes
    partial = tmp_path / "NOTEEVENTS.csv"
    with open(partial, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["ROW_ID", "TEXT"])
        for f in files:
            for note in json.loads(f.read_text())["notes"]:
                if note["note_id"] != missing_id:
                    w.writerow([note["note_id"], texts[note["note_id"]]])
    with pytest.raises(SclError, match=rf"{files[1].name}: note_id {missing_id} .* has no row in NOTEEVENTS.csv"):
        read_mdace(folder, partial, filters=KEEP)
    skips, report = Skips(allowed=True), ReadReport()
    docs = read_mdace(folder, partial, filters=KEEP, skips=skips, report=report)
    assert skips.count == 1 and report.dropped["notes missing from NOTEEVENTS.csv"] == 1
    assert missing_id not in {int(d.id) for d in docs}


def test_offset_past_text_names_file_and_annotation(tmp_path: Path, mdace_dir: Path, mdace_notes) -> None:
    folder, noteevents, files = _small_corpus(tmp_path, mdace_dir, mdace_notes)
    chart = json.loads(files[0].read_text())
    note = chart["notes"][0]
    note["annotations"][2]["end"] = 10_000_000
    files[0].write_text(json.dumps(chart))
    with pytest.raises(
        SclError,
        match=rf"{files[0].name}: field 'notes\[note_id={note['note_id']}\]\.annotations\[2\]': "
        r"offsets .* fall outside",
    ):
        read_mdace(folder, noteevents, filters=KEEP)


def test_unknown_code_names_the_field(tmp_path: Path, mdace_dir: Path, mdace_notes) -> None:
    folder, noteevents, files = _small_corpus(tmp_path, mdace_dir, mdace_notes)
    chart = json.loads(files[0].read_text())
    chart["notes"][0]["annotations"][0]["code"] = "Q99.999"
    files[0].write_text(json.dumps(chart))
    with pytest.raises(SclError, match=r"annotations\[0\]\.code': unknown ICD-10-CM code 'Q99.999'"):
        read_mdace(folder, noteevents, filters=KEEP)


def test_malformed_chart_and_missing_paths(tmp_path: Path, mdace_dir: Path, mdace_notes) -> None:
    folder, noteevents, files = _small_corpus(tmp_path, mdace_dir, mdace_notes)
    files[0].write_text('{"hadm_id": 1, "notes": [')
    with pytest.raises(SclError, match=rf"{files[0].name}:1: not valid JSON"):
        read_mdace(folder, noteevents, filters=KEEP)
    with pytest.raises(SclError, match="MDACE annotation directory not found"):
        read_mdace(tmp_path / "nowhere", noteevents)
    files[0].unlink()
    with pytest.raises(SclError, match=r"NOTEEVENTS\.csv not found"):
        read_mdace(folder, tmp_path / "NOTEEVENTS.csv")
    with pytest.raises(SclError, match="split file not found"):
        read_mdace(folder, noteevents, split=tmp_path / "x.csv")
