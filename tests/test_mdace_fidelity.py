"""`eval --benchmark mdace` scores what the MDACE authors' evaluate-predictions.py scores: its defaults (every
category, every code), its clean-ups (a span trimmed to nothing is kept), its text injection (CR LF read as
LF), and a clear error when predictions and gold use different ICD versions. Hand-built MDACE checkouts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sclcoder.cli import app
from sclcoder.data.readers import ReadReport, read_mdace
from sclcoder.recipe import MdaceFilters

runner = CliRunner()

DX = "Acute kidney failure -- see plan. Chest film clear."
RAD = "CT head: no bleed. Procedure: 0BH17EZ placed."


def _chart(hadm: int, notes: list[dict]) -> dict:
    return {"hadm_id": hadm, "comment": "", "notes": notes}


def _note(note_id: int, category: str, spans: list[tuple[int, int, str, str]]) -> dict:
    return {
        "note_id": note_id,
        "category": category,
        "description": "Report",
        "annotations": [
            {"begin": b, "end": e, "code": c, "code_system": s, "description": "", "type": "Human"}
            for b, e, c, s in spans
        ],
    }


def _checkout(root: Path, gold: list[dict], texts: dict[int, str], icd: int = 10) -> Path:
    folder = root / "data" / "Inpatient" / f"ICD-{icd}" / "1.0"
    folder.mkdir(parents=True)
    for chart in gold:
        (folder / f"{chart['hadm_id']}-ICD-{icd}.json").write_text(json.dumps(chart))
    (root / "splits" / "Inpatient").mkdir(parents=True)
    ids = "".join(f"{c['hadm_id']}\n" for c in gold)
    (root / "splits" / "Inpatient" / "MDace-ev-test.csv").write_text("hadm_id\n" + ids)
    with open(root / "NOTEEVENTS.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ROW_ID", "SUBJECT_ID", "HADM_ID", "CATEGORY", "DESCRIPTION", "TEXT"])
        for nid, text in texts.items():
            w.writerow([nid, 1, 1, "x", "Report", text])
    return root


def _predictions(root: Path, charts: list[dict], icd: int = 10) -> Path:
    out = root / "predictions"
    out.mkdir()
    for chart in charts:
        (out / f"{chart['hadm_id']}-ICD-{icd}.json").write_text(json.dumps(chart))
    return out


def _eval(root: Path, predictions: Path, *args: str) -> dict:
    out = root / "report"
    result = runner.invoke(
        app,
        ["eval", "--benchmark", "mdace", "--mdace-dir", str(root), "--noteevents", str(root / "NOTEEVENTS.csv"),
         "--predictions", str(predictions), "-o", str(out), *args],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def test_defaults_score_every_category_and_procedure_codes(tmp_path: Path) -> None:
    aki, pcs = (0, 20, "N17.9", "ICD-10-CM"), (30, 37, "0BH17EZ", "ICD-10-PCS")
    gold = [_chart(1, [_note(11, "Discharge summary", [aki]), _note(12, "Radiology", [pcs])])]
    root = _checkout(tmp_path, gold, {11: DX, 12: RAD})
    preds = _predictions(tmp_path, [_chart(1, [_note(11, "Discharge summary", [aki]), _note(12, "Radiology", [pcs])])])

    every = _eval(root, preds)["evidence_mdace"]["span_exact"]
    assert (every["actual"], every["tp"]) == (2, 2)  # the radiology note and its ICD-10-PCS code count

    paper = _eval(root, preds, "--category", "Discharge summary", "--diagnoses-only")
    assert (paper["evidence_mdace"]["span_exact"]["actual"], paper["gold"]["codes"]) == (1, 1)
    assert paper["settings"]["categories"] == ["Discharge summary"] and paper["settings"]["diagnoses_only"]


def test_a_span_trimmed_to_nothing_is_kept_and_counted(tmp_path: Path) -> None:
    dashes = DX.index("--")
    span = (dashes - 1, dashes + 3, "N17.9", "ICD-10-CM")  # " -- ": nothing left after trimming
    gold = [_chart(1, [_note(11, "Discharge summary", [(0, 20, "N17.9", "ICD-10-CM"), span])])]
    root = _checkout(tmp_path, gold, {11: DX})
    preds = _predictions(tmp_path, [_chart(1, [_note(11, "Discharge summary", [span])])])

    report = _eval(root, preds, "--preset", "paper-discharge")
    exact = report["evidence_mdace"]["span_exact"]
    # the authors' clean-up keeps the empty span: gold has 2 spans, and the predicted empty span matches one
    assert (exact["actual"], exact["predicted"], exact["tp"]) == (2, 1, 1)
    assert report["gold"]["evidence_spans_trimmed_to_nothing"] == 1
    assert report["predictions"]["evidence_spans_trimmed_to_nothing"] == 1
    assert report["evidence_mdace"]["token_exact"]["predicted"] == 0  # and it has no tokens
    assert "trimmed to nothing" in (root / "report" / "report.md").read_text()

    # converting for training drops it, and says so
    converted = runner.invoke(
        app,
        ["data", "convert", "mdace", "--annotations", str(root / "data/Inpatient/ICD-10/1.0"),
         "--noteevents", str(root / "NOTEEVENTS.csv"), "--trim", "-o", str(tmp_path / "gold.jsonl")],
    )  # fmt: skip
    assert converted.exit_code == 0, converted.output
    assert "dropped 1 evidence spans trimmed to nothing" in converted.output


def test_icd9_predictions_against_icd10_gold_are_an_error(tmp_path: Path) -> None:
    gold = [_chart(1, [_note(11, "Discharge summary", [(0, 20, "N17.9", "ICD-10-CM")])])]
    root = _checkout(tmp_path, gold, {11: DX})
    preds = _predictions(tmp_path, [_chart(1, [_note(11, "Discharge summary", [(0, 20, "584.9", "ICD-9-CM")])])])
    result = runner.invoke(
        app,
        ["eval", "--benchmark", "mdace", "--mdace-dir", str(root), "--noteevents", str(root / "NOTEEVENTS.csv"),
         "--predictions", str(preds), "-o", str(tmp_path / "r")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "another code system" in result.output and "--icd 9" in result.output
    assert "Traceback" not in result.output


def test_carriage_returns_are_read_as_the_authors_injection_reads_them(tmp_path: Path) -> None:
    crlf = "Admission Date: x\r\nDiagnosis:\r\nAcute kidney failure\r\n"
    lf = crlf.replace("\r\n", "\n")
    begin = lf.index("Acute")
    gold = [_chart(1, [_note(11, "Discharge summary", [(begin, begin + 20, "N17.9", "ICD-10-CM")])])]
    root = _checkout(tmp_path, gold, {11: crlf})
    folder, notes = root / "data/Inpatient/ICD-10/1.0", root / "NOTEEVENTS.csv"

    report = ReadReport()
    (doc,) = read_mdace(folder, notes, report=report)  # default: as inject-note-text.py reads the CSV
    assert doc.text == lf and doc.quote(doc.evidence[0]) == "Acute kidney failure"
    assert report.changed == {"notes whose CR LF became LF (newlines: official)": 1}
    (exact,) = read_mdace(folder, notes, filters=MdaceFilters(newlines="keep"))
    assert exact.text == crlf and exact.quote(exact.evidence[0]) != "Acute kidney failure"


def test_mdace_paths_come_from_the_environment_and_a_missing_one_is_named(tmp_path: Path, monkeypatch) -> None:
    gold = [_chart(1, [_note(11, "Discharge summary", [(0, 20, "N17.9", "ICD-10-CM")])])]
    root = _checkout(tmp_path, gold, {11: DX})
    preds = _predictions(tmp_path, gold)
    monkeypatch.setenv("SCLCODER_MDACE_DIR", str(root))
    monkeypatch.delenv("MIMIC3_NOTEEVENTS", raising=False)
    args = ["eval", "--benchmark", "mdace", "--predictions", str(preds), "-o", str(tmp_path / "r")]
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2
    assert "MIMIC3_NOTEEVENTS" in missing.output and "SCLCODER_MDACE_DIR" not in missing.output
    monkeypatch.setenv("MIMIC3_NOTEEVENTS", str(root / "NOTEEVENTS.csv"))
    found = runner.invoke(app, args)
    assert found.exit_code == 0, found.output
    assert json.loads((tmp_path / "r" / "report.json").read_text())["evidence_mdace"]["span_exact"]["f1"] == 1.0


@pytest.mark.parametrize("preset", ["official", "paper-discharge", "paper-codeable"])
def test_presets_are_the_published_settings(preset: str) -> None:
    f = MdaceFilters.preset(preset)
    assert (f.trim, f.merge_adjacent) == {
        "official": (False, False),
        "paper-discharge": (True, False),
        "paper-codeable": (True, True),
    }[preset]
    assert MdaceFilters.preset(preset, trim=False).trim is False  # a flag given wins over the preset


@pytest.mark.parametrize(("preset", "published"), [("official", None), ("paper-codeable", 1144)])
def test_the_jsonl_route_scores_what_the_mdace_route_scores(
    tmp_path: Path, mdace_dir: Path, mdace_notes, preset: str, published: int | None
) -> None:
    """Gold and the authors' baseline converted to evidence JSONL score exactly as read from MDACE itself."""
    noteevents, _ = mdace_notes
    split = mdace_dir / "splits/Inpatient/MDace-ev-test.csv"
    baseline = mdace_dir / "predictions/supervised_attn/Inpatient/ICD-9/Codeable"
    keep = ["--newlines", "keep"]  # the generated text has CR LF on purpose

    def convert(annotations: Path, out: Path) -> Path:  # no clean-ups here: eval applies them to both
        result = runner.invoke(
            app,
            ["data", "convert", "mdace", "--annotations", str(annotations), "--noteevents", str(noteevents),
             "--split", str(split), *keep, "-o", str(out)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return out

    gold = convert(mdace_dir / "data/Inpatient/ICD-9/1.0", tmp_path / "gold.jsonl")
    preds = convert(baseline, tmp_path / "baseline.jsonl")
    via_mdace = _eval_args(
        ["--benchmark", "mdace", "--mdace-dir", str(mdace_dir), "--noteevents", str(noteevents), "--icd", "9",
         "--predictions", str(baseline), "--preset", preset, *keep, "-o", str(tmp_path / "a")]
    )  # fmt: skip
    via_jsonl = _eval_args(
        ["--gold", str(gold), "--predictions", str(preds), "--preset", preset, *keep, "-o", str(tmp_path / "b")]
    )
    for key in ("codes", "evidence_mdace", "plausibility"):
        assert via_mdace[key] == via_jsonl[key], key
    assert via_jsonl["settings"]["grouping"] == "admission"
    if published is not None:  # the authors' results.md for this baseline and setting
        assert via_mdace["evidence_mdace"]["span_exact"]["predicted"] == published


def _eval_args(args: list[str]) -> dict:
    result = runner.invoke(app, ["eval", *args])
    assert result.exit_code == 0, result.output
    out = Path(args[args.index("-o") + 1])
    return json.loads((out / "report.json").read_text())
