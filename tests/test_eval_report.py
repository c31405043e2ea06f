"""`sclcoder eval` and `sclcoder report` end to end from the command line, and the audit view in a real
headless browser (Debian's chromium)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sclcoder.cli import app
from sclcoder.data.corpus_folder import read_demo
from sclcoder.data.documents import write_documents
from tests.helpers import headless_chromium

runner = CliRunner()


def _perfect_predictions(docs, path: Path, drop_code: str | None = None) -> Path:
    lines = []
    for d in docs:
        codes = []
        for code, spans in d.evidence_by_code().items():
            if code == drop_code:
                continue
            codes.append(
                {
                    "code": code,
                    "description": None,
                    "valid": True,
                    "evidence": [{"text": d.quote(e), "begin": e.begin, "end": e.end, "match": "exact"} for e in spans],
                }
            )
        lines.append({"id": d.id, "codes": codes})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_eval_demo_perfect_and_imperfect(tmp_path: Path, demo_corpus: Path) -> None:
    docs = read_demo(demo_corpus, split="test")
    perfect = _perfect_predictions(docs, tmp_path / "p.jsonl")
    result = runner.invoke(
        app,
        [
            "eval",
            "--benchmark",
            "demo",
            "--corpus",
            str(demo_corpus),
            "--predictions",
            str(perfect),
            "-o",
            str(tmp_path / "eval"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["codes"]["micro"]["f1"] == 1.0 and report["evidence_mdace"]["span_exact"]["f1"] == 1.0
    assert report["negated_mentions"]["coded_anyway"] == 0 and report["settings"]["split"] == "test"
    assert (tmp_path / "eval" / "report.md").read_text().startswith("# sclcoder evaluation: demo")
    csv_lines = (tmp_path / "eval" / "per_code.csv").read_text().splitlines()
    assert (
        csv_lines[0].startswith("code,description,support") and len(csv_lines) == 1 + report["gold"]["distinct_codes"]
    )
    # the phrase-disjoint split is its own gold: the seen split's answers are refused there, its own score
    unseen = read_demo(demo_corpus, split="test-unseen")
    args = ["eval", "--benchmark", "demo", "--corpus", str(demo_corpus), "--demo-split", "test-unseen"]
    result = runner.invoke(app, [*args, "--predictions", str(perfect), "-o", str(tmp_path / "eval-u")])
    assert result.exit_code == 2 and f"none of its {len(docs)} notes is in the gold standard" in result.output
    own = _perfect_predictions(unseen, tmp_path / "u.jsonl")
    result = runner.invoke(app, [*args, "--predictions", str(own), "-o", str(tmp_path / "eval-u")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval-u" / "report.json").read_text())
    assert report["settings"]["split"] == "test-unseen" and report["gold"]["notes"] == len(unseen)
    assert report["codes"]["micro"]["f1"] == 1.0
    # leave one frequent code out: its support becomes false negatives, nothing else moves
    worst = max({c for d in docs for c in d.codes}, key=lambda c: sum(c in d.codes for d in docs))
    _perfect_predictions(docs, tmp_path / "q.jsonl", drop_code=worst)
    write_documents(tmp_path / "gold.jsonl", docs)
    result = runner.invoke(
        app,
        [
            "eval",
            "--gold",
            str(tmp_path / "gold.jsonl"),
            "--predictions",
            str(tmp_path / "q.jsonl"),
            "-o",
            str(tmp_path / "eval2"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval2" / "report.json").read_text())
    support = sum(worst in d.codes for d in docs)
    assert (report["codes"]["micro"]["fp"], report["codes"]["micro"]["fn"]) == (0, support)
    assert report["benchmark"] == "jsonl"


def test_eval_mdace_baseline_from_the_command_line(tmp_path: Path, mdace_dir: Path, mdace_notes) -> None:
    noteevents, _ = mdace_notes
    result = runner.invoke(
        app,
        [
            "eval",
            "--benchmark",
            "mdace",
            "--mdace-dir",
            str(mdace_dir),
            "--noteevents",
            str(noteevents),
            "--icd",
            "9",
            "--category",
            "Discharge summary",
            "--newlines",
            "keep",
            "--predictions",
            str(mdace_dir / "predictions/supervised_attn/Inpatient/ICD-9/Discharge"),
            "-o",
            str(tmp_path / "mdace"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "mdace" / "report.json").read_text())
    assert report["settings"]["split"] == "MDace-ev-test" and report["settings"]["grouping"] == "admission"
    assert report["evidence_mdace"]["span_exact"]["predicted"] == 1636  # as published by the MDACE authors
    assert "exact span" in result.output


def test_eval_needs_its_inputs(monkeypatch) -> None:
    monkeypatch.delenv("SCLCODER_MDACE_DIR", raising=False)
    monkeypatch.delenv("MIMIC3_NOTEEVENTS", raising=False)
    result = runner.invoke(app, ["eval", "--benchmark", "mdace"])
    assert result.exit_code == 2
    assert "--mdace-dir or SCLCODER_MDACE_DIR" in result.output and "--noteevents or MIMIC3_NOTEEVENTS" in result.output


# ------------------------------------------------------------------------------------------ audit view


@pytest.fixture
def audit(tmp_path: Path) -> Path:
    text = "PMH: HTN, T2DM.\nCourse: HTN controlled. No PE."
    notes = tmp_path / "notes.jsonl"
    notes.write_text(json.dumps({"id": "n1", "text": text}) + "\n")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps(
            {
                "id": "n1",
                "text": text,
                "codes": ["I10", "E11.9", "J18.9"],
                "evidence": [{"begin": 5, "end": 8, "code": "I10"}, {"begin": 10, "end": 14, "code": "E11.9"}],
            }
        )
        + "\n"
    )
    preds = tmp_path / "p.jsonl"
    row = {
        "id": "n1",
        "errors": [],
        "windows": [],
        "codes": [
            {
                "code": "I10",
                "description": "Essential (primary) hypertension",
                "valid": True,
                "evidence": [
                    {"text": "HTN", "begin": 5, "end": 8, "match": "exact"},
                    {"text": "HTN controlled", "begin": 24, "end": 38, "match": "exact"},
                ],
            },
            {
                "code": "I26.99",
                "description": "Other pulmonary embolism",
                "valid": True,
                "evidence": [{"text": "pulmonary embolus", "begin": None, "end": None, "match": None}],
            },
            {"code": "ZZ9", "description": None, "valid": False, "problem": "malformed", "evidence": []},
        ],
    }
    preds.write_text(json.dumps(row) + "\n")
    out = tmp_path / "audit.html"
    result = runner.invoke(app, ["report", str(preds), "--notes", str(notes), "--gold", str(gold), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_audit_view_is_one_self_contained_file(audit: Path) -> None:
    page = audit.read_text()
    assert "http://" not in page and "https://" not in page and "<link" not in page
    data = json.loads(page.split("id='data'>")[1].split("</script>")[0])
    (note,) = data
    status = {c["code"]: c["status"] for c in note["codes"]}
    assert status == {"I10": "correct", "I26.99": "spurious", "ZZ9": "spurious", "E11.9": "missed", "J18.9": "missed"}
    assert next(c for c in note["codes"] if c["code"] == "I26.99")["unaligned"] == ["pulmonary embolus"]
    assert next(c for c in note["codes"] if c["code"] == "ZZ9")["valid"] is False


def test_audit_view_in_a_real_browser(audit: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser = headless_chromium()
    try:
        browser.get(audit.as_uri())
        codes = {el.get_attribute("data-code"): el for el in browser.find_elements(By.CSS_SELECTOR, ".code")}
        assert set(codes) == {"I10", "I26.99", "ZZ9", "E11.9", "J18.9"}
        assert "invalid code" in codes["ZZ9"].text and "unaligned" in codes["I26.99"].text
        assert "missed" in codes["E11.9"].text and "correct" in codes["I10"].text
        assert browser.find_elements(By.CSS_SELECTOR, ".ev.hl") == []
        codes["I10"].click()
        lit = [el.text for el in browser.find_elements(By.CSS_SELECTOR, ".ev.hl")]
        assert "".join(lit).replace("\n", "") == "HTNHTN controlled"  # both quotes of I10, nothing else
        assert "active" in codes["I10"].get_attribute("class")
        shot = tmp_path / "audit.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 5000
        artifacts = Path(__file__).resolve().parents[1] / "runs" / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, artifacts / "audit-view.png")
    finally:
        browser.quit()
