"""The command line: thin, clear errors, lists only commands that work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from sclcoder import __version__
from sclcoder.cli import app
from sclcoder.data.documents import read_documents

runner = CliRunner()


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"sclcoder {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "data" in result.stdout


def test_help_is_fast_and_does_not_import_torch() -> None:
    code = "import sys; from sclcoder.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_demo_then_convert(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    result = runner.invoke(app, ["data", "demo", str(corpus), "--charts", "20", "--seed", "3"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "test.jsonl"
    result = runner.invoke(app, ["data", "convert", "demo", "--corpus", str(corpus), "--split", "test", "-o", str(out)])
    assert result.exit_code == 0, result.output
    docs = list(read_documents(out))
    assert len(docs) == 3 and all(d.evidence for d in docs)


def test_convert_mdace_cli(tmp_path: Path, mdace_dir: Path, mdace_notes) -> None:
    noteevents, _ = mdace_notes
    out = tmp_path / "mdace.jsonl"
    args = [
        "data",
        "convert",
        "mdace",
        "--annotations",
        str(mdace_dir / "data/Inpatient/ICD-10"),
        "--noteevents",
        str(noteevents),
        "--split",
        str(mdace_dir / "splits/Inpatient/MDace-ev-test.csv"),
        "--preset",
        "paper-discharge",
        "--newlines",
        "keep",  # the generated text has CR LF on purpose
        "-o",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    docs = list(read_documents(out))
    assert docs and all(d.meta["category"] == "Discharge summary" for d in docs)
    # the preset's trim: no kept span starts or ends with a trimmed character
    assert all(
        d.text[e.begin] not in " \n\t-.,/)" and d.text[e.end - 1] not in " \n\t-.,/(" for d in docs for e in d.evidence
    )


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "missing.csv"
    (tmp_path / "o.jsonl").write_text("earlier output\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sclcoder.cli",
            "data",
            "convert",
            "mdace",
            "--annotations",
            str(tmp_path),
            "--noteevents",
            str(bad),
            "-o",
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no MDACE chart JSON files here" in lines[0]
    assert (tmp_path / "o.jsonl").read_text() == "earlier output\n"  # nothing already written is lost
