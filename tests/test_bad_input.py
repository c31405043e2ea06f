"""Every user mistake is one clear line, never a traceback: a matrix of bad files and bad outputs over the
commands as users type them, and random bytes and random JSON fed to every reader (hypothesis)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sclcoder.cli import app
from sclcoder.data.documents import Document, read_documents, read_notes
from sclcoder.data.readers import load_chart, read_split
from sclcoder.errors import SclError, Skips
from sclcoder.files import read_jsonl
from sclcoder.infer.predictions import parse_line

runner = CliRunner()

GOOD_NOTE = {
    "id": "n1",
    "text": "Hypertension.",
    "codes": ["I10"],
    "evidence": [{"begin": 0, "end": 12, "code": "I10"}],
}
GOOD_PRED = {"id": "n1", "codes": [{"code": "I10", "evidence": [{"text": "Hypertension", "begin": 0, "end": 12}]}]}

# name -> bytes of a bad input file (None: the file does not exist; "dir": a directory stands there)
BAD_FILES: dict[str, bytes | str | None] = {
    "missing": None,
    "directory": "dir",
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "utf16": json.dumps(GOOD_NOTE).encode("utf-16"),
    "latin1": '{"id": "n1", "text": "caf\xe9"}\n'.encode("latin-1"),
    "deep": b"[" * 200_000 + b"]" * 200_000 + b"\n",
    "not an object": b"[1, 2, 3]\n",
    "wrong types": b'{"id": 5, "text": 7, "codes": "I10", "evidence": {"begin": "x"}}\n',
    "bad offsets": b'{"id": "n1", "text": "HTN", "codes": ["I10"], '
    b'"evidence": [{"begin": 2, "end": 99, "code": "I10"}]}\n',
    "unknown code": b'{"id": "n1", "text": "HTN", "codes": ["Q99.999"]}\n',
    "prediction of the wrong shape": b'{"id": "n1", "codes": [{"code": 10, "evidence": "HTN"}]}\n',
    "ids that are not numbers": b'{"hadm_id": "x1", "notes": [{"note_id": "abc", "annotations": []}]}',
    # a good line, then one cut short: skipped in silence, the rest would be read as if nothing happened
    "a line cut short": json.dumps(GOOD_NOTE).encode() + b'\n{"id": "n2", "text": "Hypertens\n',
}


def _make(tmp_path: Path, kind: str, name: str) -> Path:
    path = tmp_path / name
    content = BAD_FILES[kind]
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)  # type: ignore[arg-type]
    return path


def _good(tmp_path: Path, name: str, row: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(row) + "\n")
    return path


def _commands(tmp_path: Path, bad: Path) -> dict[str, list[str]]:
    notes, preds, out = _good(tmp_path, "notes.jsonl", GOOD_NOTE), _good(tmp_path, "p.jsonl", GOOD_PRED), tmp_path / "o"
    mdace = tmp_path / "mdace"
    mdace.mkdir(exist_ok=True)
    if bad.is_file():
        (mdace / "1-ICD-10.json").write_bytes(bad.read_bytes())
    return {
        "eval gold": ["eval", "--gold", str(bad), "--predictions", str(preds), "-o", str(out)],
        "eval predictions": ["eval", "--gold", str(notes), "--predictions", str(bad), "-o", str(out)],
        "report predictions": ["report", str(bad), "--notes", str(notes), "-o", str(tmp_path / "r.html")],
        "report notes": ["report", str(preds), "--notes", str(bad), "-o", str(tmp_path / "r.html")],
        "convert mdace annotations": ["data", "convert", "mdace", "--annotations", str(mdace),
                                      "--noteevents", str(bad), "-o", str(out / "x.jsonl")],
        "convert mimic4": ["data", "convert", "mimic4", "--discharge", str(bad), "--diagnoses", str(bad),
                           "-o", str(out / "x.jsonl")],
        "train recipe": ["train", str(bad), "--dry-run"],
        "data build recipe": ["data", "build", str(bad)],
        "data stats": ["data", "stats", str(bad)],
    }  # fmt: skip


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_files_are_one_clear_line_in_every_command(tmp_path: Path, kind: str) -> None:
    bad = _make(tmp_path, kind, "input.jsonl")
    tracebacks = []
    for name, args in _commands(tmp_path, bad).items():
        result = runner.invoke(app, args)
        # every one of these files is wrong for every command: accepted without a word is a failure too
        if not isinstance(result.exception, SystemExit) or result.exit_code != 2 or "error:" not in result.output:
            tracebacks.append(f"{name}: exit {result.exit_code}, {type(result.exception).__name__}: {result.exception}")
    assert tracebacks == []


def test_a_line_cut_short_is_named_or_counted(tmp_path: Path) -> None:
    bad = _make(tmp_path, "a line cut short", "input.jsonl")
    said = runner.invoke(app, _commands(tmp_path, bad)["eval gold"])
    assert said.exit_code == 2 and "input.jsonl:2" in " ".join(said.output.split())
    skips = Skips(allowed=True)
    assert [d.id for d in read_documents(bad, skips=skips)] == ["n1"] and skips.count == 1  # --skip-invalid counts it


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_unwritable_outputs_fail_before_any_work(tmp_path: Path, where: str) -> None:
    notes, preds = _good(tmp_path, "notes.jsonl", GOOD_NOTE), _good(tmp_path, "p.jsonl", GOOD_PRED)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    target = tmp_path / "taken" if where == "a directory" else blocker / "out.jsonl"
    if where == "a directory":
        target.mkdir()
        (target / "keep").write_text("mine")
    for args in (
        ["report", str(preds), "--notes", str(notes), "-o", str(target)],
        ["data", "convert", "mimic4", "--discharge", str(notes), "--diagnoses", str(notes), "-o", str(target)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        assert str(target) in " ".join(result.output.split()) or "blocker" in result.output
    if where == "under a file":
        result = runner.invoke(app, ["eval", "--gold", str(notes), "--predictions", str(preds), "-o", str(target)])
        assert result.exit_code == 2 and "is a file" in result.output
    assert blocker.read_text() == "a file"  # nothing already there was touched


# ------------------------------------------------------------------------------------------ hypothesis

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
json_objects = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "text": json_values | st.text(max_size=40),
        "codes": json_values | st.lists(st.sampled_from(["I10", "E11.9", "X", ""]), max_size=3),
        "evidence": json_values,
        "code_system": json_values | st.sampled_from(["icd10cm", "icd9cm"]),
        "meta": json_values,
    },
)


def _clean_or_error(call) -> None:  # type: ignore[no-untyped-def]
    # a clear error is a right answer; any other exception fails the test
    with contextlib.suppress(SclError):
        call()


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_to_every_file_reader(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "input"
    path.write_bytes(data)
    _clean_or_error(lambda: list(read_jsonl(path)))
    _clean_or_error(lambda: list(read_documents(path)))
    _clean_or_error(lambda: list(read_notes(path, Skips())))
    _clean_or_error(lambda: read_split(path))
    _clean_or_error(lambda: load_chart(path))


@FUZZ
@given(obj=json_objects)
def test_random_json_to_every_line_reader(tmp_path_factory: pytest.TempPathFactory, obj: dict) -> None:
    _clean_or_error(lambda: Document.from_json(obj))
    _clean_or_error(lambda: parse_line(obj, "p.jsonl", 1))
    path = tmp_path_factory.mktemp("fuzz") / "lines.jsonl"
    path.write_text(json.dumps(obj) + "\n")
    _clean_or_error(lambda: list(read_documents(path)))
    _clean_or_error(lambda: list(read_notes(path, Skips())))


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [("--newlines", "sometimes", "newlines"), ("--preset", "paper-2024", "preset"), ("--icd", "11", "icd")],
)
def test_bad_option_values_are_one_clear_line(tmp_path: Path, option: str, value: str, field: str) -> None:
    args = ["eval", "--benchmark", "mdace", "--mdace-dir", str(tmp_path), "--noteevents", str(tmp_path / "n.csv")]
    result = runner.invoke(app, [*args, option, value, "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"field '{field}'" in result.output
