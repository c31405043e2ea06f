"""The second hostile-input round, case by case as the issue lists them: nothing a user already has is lost,
no traceback, and nothing wrong is accepted in silence. Each test asserts the error line, or that what was
there before is byte for byte what is there after the failed command."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sclcoder.cli import app
from sclcoder.errors import SclError

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    if result.exit_code not in (0, 2) or (result.exception and not isinstance(result.exception, SystemExit)):
        raise AssertionError(f"not a clean exit: {result.exit_code} {result.exception!r}\n{result.output}")
    return result.exit_code, " ".join(result.output.split())


def _error(*args: str) -> str:
    """The error line of a command that must fail cleanly (what it printed before the error aside)."""
    code, said = _run(*args)
    assert code == 2 and "error:" in said, said
    return said[said.index("error:") :]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------- data lost


def test_data_demo_refuses_a_folder_of_the_users_own_files(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "thesis.txt").write_text("three years of work")
    said = _error("data", "demo", str(folder), "--charts", "10")
    assert "holds files sclcoder did not write" in said and "--overwrite" in said
    assert _snapshot(folder) == {"thesis.txt": b"three years of work"}
    # a corpus it wrote is its own to replace; with --overwrite the user's folder is replaced too
    assert _run("data", "demo", str(tmp_path / "ours"), "--charts", "10")[0] == 0
    assert _run("data", "demo", str(tmp_path / "ours"), "--charts", "10", "--seed", "2")[0] == 0
    assert _run("data", "demo", str(folder), "--charts", "10", "--overwrite")[0] == 0
    assert not (folder / "thesis.txt").exists() and (folder / "NOTEEVENTS.csv").exists()


def test_predict_overwrite_keeps_the_old_predictions_when_the_notes_are_bad(tmp_path: Path, tiny_adapter) -> None:
    notes = _jsonl(tmp_path / "notes.jsonl", [{"id": "a", "text": "HTN"}])
    notes.write_text(notes.read_text() + "{not json\n")
    out = tmp_path / "p.jsonl"
    out.write_bytes(b'{"id": "earlier", "codes": []}\n')
    said = _error("predict", str(notes), "--adapter", str(tiny_adapter), "-o", str(out), "--overwrite")
    assert f"{notes}:2: not valid JSON" in said
    assert out.read_bytes() == b'{"id": "earlier", "codes": []}\n'


def test_predict_refuses_to_write_over_its_own_notes(tmp_path: Path, tiny_adapter) -> None:
    notes = _jsonl(tmp_path / "notes.jsonl", [{"id": "a", "text": "HTN"}])
    before = notes.read_bytes()
    said = _error("predict", str(notes), "--adapter", str(tiny_adapter), "-o", str(notes), "--overwrite")
    assert f"{notes}: is also an input of this run" in said
    assert notes.read_bytes() == before


def test_an_overwrite_run_cut_short_leaves_the_old_output_in_place(tmp_path: Path, tiny_adapter) -> None:
    from sclcoder.artifacts import open_adapter
    from sclcoder.infer.engine import Generation
    from sclcoder.infer.predict import predict
    from sclcoder.recipe import PredictSection

    class DiesOnTheSecondBatch:  # a machine that fails midway: the edge the writer must survive
        mode = "merged"
        calls = 0

        def generate(self, requests, *, schema, sampling, lora_path):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 2:
                raise OSError("the machine went away")
            return [Generation('{"codes":[]}', 10, 4, "stop") for _ in requests]

    notes = _jsonl(tmp_path / "notes.jsonl", [{"id": str(i), "text": "HTN"} for i in range(4)])
    out = tmp_path / "p.jsonl"
    out.write_bytes(b'{"id": "earlier", "codes": []}\n')
    settings = PredictSection(max_model_len=2048, batch_size=2)
    adapter = open_adapter(tiny_adapter)
    with pytest.raises(OSError):
        predict(notes, out, adapter=adapter, settings=settings, engine=DiesOnTheSecondBatch(), overwrite=True)
    assert out.read_bytes() == b'{"id": "earlier", "codes": []}\n'
    partial = tmp_path / "p.jsonl.partial"
    assert [json.loads(x)["id"] for x in partial.read_text().splitlines()] == ["0", "1"]
    # started again, the overwrite run resumes its own partial file and replaces the old output at the end
    engine = DiesOnTheSecondBatch()
    engine.calls = 5
    report = predict(notes, out, adapter=adapter, settings=settings, engine=engine, overwrite=True)
    assert (report.already_done, report.written) == (2, 2) and not partial.exists()
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["0", "1", "2", "3"]


def test_train_overwrite_with_a_broken_source_keeps_the_finished_run(tmp_path: Path, tiny_adapter: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_adapter.parent, run)
    before = _snapshot(run / "adapter")
    record = json.loads((run / "adapter" / "sclcoder.json").read_text())
    recipe = record["recipe"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "n1", "text": "HTN", "codes": ["I10"]}\n{"id": "n2", "text": \n')
    recipe["train"]["output_dir"] = str(run)
    recipe["data"]["train"] = [{"jsonl": str(bad)}]
    recipe["data"]["validation"] = []
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    said = _error("train", str(path), "--overwrite")
    assert f"{bad}:2: not valid JSON" in said
    assert _snapshot(run / "adapter") == before


# ------------------------------------------------------------------------------------------ tracebacks


@pytest.mark.parametrize("command", ["predict", "data build", "train", "demo"])
def test_a_set_value_that_is_not_yaml_is_one_line(tmp_path: Path, tiny_adapter: Path, command: str) -> None:
    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "smollm2_cpu.yaml")
    notes = _jsonl(tmp_path / "notes.jsonl", [{"id": "a", "text": "HTN"}])
    args = {
        "predict": ["predict", str(notes), "--adapter", str(tiny_adapter), "--set", "batch_size=[1"],
        "data build": ["data", "build", recipe, "--set", "data.seed=[1"],
        "train": ["train", recipe, "--set", "train.max_steps=[1"],
        "demo": ["demo", "-o", str(tmp_path / "d"), "--set", "train.max_steps=[1"],
    }[command]
    said = _error(*args)
    assert "the value '[1' is not valid YAML" in said


@pytest.mark.parametrize("inherit", [["a.yaml", "b.yaml"], 7, ""])
def test_inherit_names_one_file(tmp_path: Path, inherit: object) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"inherit": inherit, "train": {"output_dir": "x"}}))
    said = _error("train", str(path), "--dry-run")
    assert f"{path}: field 'inherit': names one recipe file to build on, got {inherit!r}" in said


@pytest.mark.parametrize("command", ["predict", "model merge"])
def test_an_adapter_with_damaged_weights_is_one_line(tmp_path: Path, tiny_adapter: Path, command: str) -> None:
    damaged = tmp_path / "adapter"
    shutil.copytree(tiny_adapter, damaged, ignore=shutil.ignore_patterns("merged"))
    weights = damaged / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    notes = _jsonl(tmp_path / "notes.jsonl", [{"id": "a", "text": "HTN"}])
    args = (
        ["predict", str(notes), "--adapter", str(damaged)] if command == "predict" else ["model", "merge", str(damaged)]
    )
    said = _error(*args)
    assert f"{weights}: weights file is damaged" in said and "cut short" in said


@pytest.mark.engine
def test_an_endpoint_model_the_server_does_not_serve(tmp_path: Path, tiny_adapter, vllm_server) -> None:
    notes = _jsonl(tmp_path / "notes.jsonl", [{"id": "a", "text": "HTN"}])
    args = ["predict", str(notes), "--adapter", str(tiny_adapter), "--endpoint", vllm_server.base_url]
    said = _error(*args, "--endpoint-model", "gpt-5", "-o", str(tmp_path / "p.jsonl"))
    assert f"field 'endpoint_model': the endpoint {vllm_server.base_url} serves" in said and "not 'gpt-5'" in said
    assert not (tmp_path / "p.jsonl").exists()


def _notes_and_preds(tmp_path: Path) -> tuple[Path, Path]:
    notes = _jsonl(tmp_path / "notes.jsonl", [{"id": "a", "text": "HTN and T2DM."}, {"id": "b", "text": "CHF."}])
    line = {"id": "a", "codes": [{"code": "I10", "evidence": [{"text": "HTN", "begin": 0, "end": 3}]}]}
    return notes, _jsonl(tmp_path / "p.jsonl", [line])


def test_report_gold_that_is_empty_or_partial(tmp_path: Path) -> None:
    notes, preds = _notes_and_preds(tmp_path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    said = _error("report", str(preds), "--notes", str(notes), "--gold", str(empty), "-o", str(tmp_path / "r.html"))
    assert f"{empty}: has no gold for 2 of the 2 notes (e.g. 'a')" in said
    partial = _jsonl(tmp_path / "partial.jsonl", [{"id": "a", "text": "HTN and T2DM.", "codes": ["I10"]}])
    said = _error("report", str(preds), "--notes", str(notes), "--gold", str(partial), "-o", str(tmp_path / "r.html"))
    assert f"{partial}: has no gold for 1 of the 2 notes (e.g. 'b')" in said
    assert not (tmp_path / "r.html").exists()


def test_a_negated_mentions_file_with_missing_keys(tmp_path: Path) -> None:
    from sclcoder.demo.corpus import generate_demo

    corpus = tmp_path / "corpus"
    generate_demo(corpus, n_charts=10, seed=1)
    (corpus / "negated_mentions.jsonl").write_text('{"note_id": 5000000, "code": "I10"}\n{"note": 5}\n')
    preds = _jsonl(tmp_path / "p.jsonl", [{"id": "5000000", "codes": []}])
    said = _error(
        "eval", "--benchmark", "demo", "--corpus", str(corpus), "--predictions", str(preds), "-o", str(tmp_path / "e")
    )
    assert f"{corpus / 'negated_mentions.jsonl'}:2: field 'note_id': missing or not a note id / code" in said


def test_a_demo_folder_with_a_hash_in_its_name_is_a_path(tmp_path: Path) -> None:
    from sclcoder.demo.run import demo_recipe

    root = tmp_path / "runs" / "demo #1"
    recipe = demo_recipe(root, seed=3, overrides=["train.max_steps=2"])
    assert recipe.data.train[0].demo.corpus == str(root / "corpus")  # type: ignore[union-attr]
    assert recipe.train.output_dir == str(root / "run") and recipe.train.max_steps == 2


def _mimic4(tmp_path: Path, diagnoses_rows: list[list[object]], *, truncate: bool = False) -> tuple[Path, Path]:
    discharge = tmp_path / "discharge.csv"
    with open(discharge, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerows([["note_id", "subject_id", "hadm_id", "text"], ["1-DS", 1, 201, "HTN."], ["2-DS", 2, 202, "CHF."]])
    diagnoses = tmp_path / "diagnoses_icd.csv"
    with open(diagnoses, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerows([["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"], *diagnoses_rows])
    if truncate:  # the copy stopped in the middle of its last row
        diagnoses.write_bytes(diagnoses.read_bytes().rstrip(b"\r\n")[:-4])
    return discharge, diagnoses


@pytest.mark.parametrize(
    ("rows", "truncate", "expected"),
    [
        (
            [[1, 201, "first", "I10", 10]],
            False,
            "diagnoses_icd.csv:2: field 'seq_num': seq_num 'first' is not an integer",
        ),
        ([[1, 201, 1, "I10", 10], [2, 202, 1, "I50.9", 10]], True, "diagnoses_icd.csv:3: ends before column"),
    ],
)
def test_a_damaged_mimic4_diagnoses_file(tmp_path: Path, rows, truncate: bool, expected: str) -> None:
    discharge, diagnoses = _mimic4(tmp_path, rows, truncate=truncate)
    said = _error(
        "data",
        "convert",
        "mimic4",
        "--discharge",
        str(discharge),
        "--diagnoses",
        str(diagnoses),
        "-o",
        str(tmp_path / "o.jsonl"),
    )
    assert expected in said
    assert not (tmp_path / "o.jsonl").exists()


# ------------------------------------------------------------------------------------ accepted silently


def _gold(tmp_path: Path) -> Path:
    return _jsonl(
        tmp_path / "gold.jsonl",
        [
            {
                "id": "a",
                "text": "HTN and T2DM.",
                "codes": ["I10", "E11.9"],
                "evidence": [{"begin": 0, "end": 3, "code": "I10"}],
            },
            {"id": "b", "text": "CHF.", "codes": ["I50.9"]},
        ],
    )


def _eval(tmp_path: Path, gold: Path, rows: list[dict]) -> tuple[int, str]:
    preds = _jsonl(tmp_path / "p.jsonl", rows)
    return _run("eval", "--gold", str(gold), "--predictions", str(preds), "-o", str(tmp_path / "e"))


I10 = {"code": "I10", "evidence": [{"text": "HTN", "begin": 0, "end": 3}]}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"id": "z", "codes": [I10]}], "p.jsonl: none of its 1 notes is in the gold standard (e.g. 'z')"),
        (
            [{"id": "a", "codes": [I10]}, {"id": "a", "codes": []}],
            "p.jsonl:2: field 'id': a second line for note 'a' (the first is line 1)",
        ),
        (
            [{"id": "b", "codes": [{"code": "I50.9", "evidence": [{"text": "CHF", "begin": 0, "end": 30}]}]}],
            "p.jsonl:1: field 'codes.0.evidence.0': [0, 30) falls outside note 'b' (4 characters)",
        ),
        (
            [{"id": "a", "codes": [{"code": "I10", "evidence": [{"text": "HTN", "begin": 3, "end": 0}]}]}],
            "p.jsonl:1: field 'codes.0.evidence.0': not a predictions line: begin 3 is after end 0",
        ),
        (
            [{"id": "a", "codes": [{"code": "401.9"}, {"code": "250.00"}]}],
            "p.jsonl: its codes are ICD-9-CM codes, the gold standard's are ICD-10-CM",
        ),
        (
            [{"id": "a", "codes": [{"code": "I10", "evidence": [{"text": "hypertension", "begin": 0, "end": 3}]}]}],
            "p.jsonl:1: field 'codes.0.evidence.0': quotes 'hypertension' at [0, 3), where note 'a' reads 'HTN'",
        ),
    ],
)
def test_eval_says_what_is_wrong_instead_of_scoring_it(tmp_path: Path, rows: list[dict], expected: str) -> None:
    code, said = _eval(tmp_path, _gold(tmp_path), rows)
    assert code == 2 and expected in said, said
    assert not (tmp_path / "e" / "report.json").exists()


def test_eval_warns_and_counts_predictions_for_notes_the_gold_lacks(tmp_path: Path) -> None:
    code, said = _eval(tmp_path, _gold(tmp_path), [{"id": "a", "codes": [I10]}, {"id": "zz", "codes": [I10]}])
    assert code == 0, said
    assert "1 of 2 predicted notes are not in the gold standard and are not scored (e.g. 'zz')" in said
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["predictions"]["notes_not_in_gold"] == 1 and report["codes"]["micro"]["fp"] == 0


def test_eval_refuses_an_empty_gold_standard(tmp_path: Path) -> None:
    empty = tmp_path / "gold.jsonl"
    empty.write_text("\n")
    code, said = _eval(tmp_path, empty, [{"id": "a", "codes": [I10]}])
    assert code == 2 and f"{empty}: the gold standard holds no notes to score" in said


def test_report_refuses_predictions_made_on_other_notes(tmp_path: Path) -> None:
    notes, preds = _notes_and_preds(tmp_path)
    _jsonl(notes, [{"id": "a", "text": "Hypertension."}, {"id": "b", "text": "CHF."}])  # the text has changed
    said = _error("report", str(preds), "--notes", str(notes), "-o", str(tmp_path / "r.html"))
    assert "p.jsonl:1: field 'codes.0.evidence.0': quotes 'HTN' at [0, 3), where note 'a' reads 'Hyp'" in said
    _jsonl(preds, [{"id": "a", "codes": []}, {"id": "a", "codes": []}])
    said = _error("report", str(preds), "--notes", str(notes), "-o", str(tmp_path / "r.html"))
    assert "p.jsonl:2: field 'id': a second line for note 'a'" in said


@pytest.mark.parametrize(("args", "option"), [(["predict", "n.jsonl", "--limit", "-1"], "--limit"),
                                               (["train", "r.yaml", "--dry-run", "--devices", "0"], "--devices"),
                                               (["serve", "--adapter", "a", "--port", "70000"], "--port")])  # fmt: skip
def test_numeric_options_are_range_checked(args: list[str], option: str) -> None:
    result = runner.invoke(app, args)
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"Invalid value for '{option}': Input should be" in said, said


def test_one_writer_per_predictions_file(tmp_path: Path, tiny_adapter: Path) -> None:
    notes = _jsonl(tmp_path / "notes.jsonl", [{"id": "a", "text": "HTN"}])
    out = tmp_path / "p.jsonl"
    # another predict holds the output: a process that takes the lock and waits
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sclcoder.files import exclusive\n"
         f"with exclusive({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        said = _error("predict", str(notes), "--adapter", str(tiny_adapter), "-o", str(out))
        assert f"{out}: another sclcoder process (pid {holder.pid}) is writing this predictions file" in said
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    from sclcoder.files import exclusive

    with exclusive(out):  # the kernel let go of the dead holder's lock: nothing stale blocks the next run
        pass


def test_a_second_server_on_a_busy_port_fails_in_one_line(tmp_path: Path, tiny_adapter: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "sclcoder.cli", "serve", "--adapter", str(tiny_adapter), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
    said = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2 and f"error: field 'port': cannot listen on 127.0.0.1:{port}" in said
    assert "Traceback" not in said


def _mdace_folder(tmp_path: Path, note_ids: list[int]) -> tuple[Path, Path]:
    charts = tmp_path / "charts"
    charts.mkdir()
    for i, note_id in enumerate(note_ids):
        chart = {
            "hadm_id": 100 + i,
            "notes": [{"note_id": note_id, "category": "Discharge summary", "annotations": []}],
        }
        (charts / f"{100 + i}-ICD-10.json").write_text(json.dumps(chart))
    notes = tmp_path / "NOTEEVENTS.csv"
    with open(notes, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerows(
            [["ROW_ID", "HADM_ID", "CATEGORY", "TEXT"], *([n, 100, "Discharge summary", "HTN."] for n in set(note_ids))]
        )
    return charts, notes


def test_mdace_inputs_with_duplicate_notes_a_cut_short_csv_or_an_empty_split(tmp_path: Path) -> None:
    charts, notes = _mdace_folder(tmp_path, [7, 7])
    args = [
        "data",
        "convert",
        "mdace",
        "--annotations",
        str(charts),
        "--noteevents",
        str(notes),
        "-o",
        str(tmp_path / "o.jsonl"),
    ]
    assert "field 'note_id': note_id 7 is annotated twice (also in 100-ICD-10.json)" in _error(*args)
    shutil.rmtree(charts)
    charts, notes = _mdace_folder(tmp_path, [7, 8])
    notes.write_bytes(notes.read_bytes().rstrip(b"\r\n")[:-5])  # the copy stopped inside its last row
    assert "NOTEEVENTS.csv:3: ends before column" in _error(*args)
    empty = tmp_path / "split.csv"
    empty.write_text("HADM_ID\n")
    assert f"{empty}: lists no HADM ids" in _error(*args, "--split", str(empty))


def test_mimic4_notes_with_duplicate_ids(tmp_path: Path) -> None:
    discharge, diagnoses = _mimic4(tmp_path, [[1, 201, 1, "I10", 10]])
    discharge.write_text(discharge.read_text() + "1-DS,1,201,again\n")
    said = _error(
        "data",
        "convert",
        "mimic4",
        "--discharge",
        str(discharge),
        "--diagnoses",
        str(diagnoses),
        "-o",
        str(tmp_path / "o.jsonl"),
    )
    assert "discharge.csv:4: field 'note_id': note_id '1-DS' appears twice (first at line 2)" in said


def test_the_library_refuses_what_the_cli_range_checks(tmp_path: Path, tiny_adapter: Path) -> None:
    from sclcoder.artifacts import open_adapter
    from sclcoder.infer.predict import predict

    notes = _jsonl(tmp_path / "notes.jsonl", [{"id": "a", "text": "HTN"}])
    with pytest.raises(SclError, match="field 'limit': must be at least 1, got 0"):
        predict(notes, tmp_path / "p.jsonl", adapter=open_adapter(tiny_adapter), limit=0)
