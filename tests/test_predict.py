"""`predict`: windows, validation, alignment, resumable output; real vLLM (in process and as a server)."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from sclcoder.artifacts import open_adapter
from sclcoder.data.codes import CodeSystem
from sclcoder.data.corpus_folder import read_demo
from sclcoder.data.documents import Note
from sclcoder.data.windows import Window
from sclcoder.errors import SclError
from sclcoder.infer.answers import note_line
from sclcoder.infer.engine import EndpointEngine, Generation, Sampling
from sclcoder.infer.predict import predict
from sclcoder.recipe import PredictSection
from tests.helpers import assert_same_codes, demo_notes, jsonl_rows, processes_with

LINE_SCHEMA = json.loads(resources.files("sclcoder").joinpath("schemas", "prediction.schema.json").read_text())


SETTINGS = PredictSection(max_model_len=2048, max_new_tokens=160, batch_size=4, merge_adapter="never")


# ------------------------------------------------------------------------------------ merge (no engine)


def test_merge_unions_windows_and_aligns_quotes_in_the_note() -> None:
    text = "PMH: HTN and T2DM.\nCourse: HTN controlled. Denies PE.\nDx: type 2 diabetes"
    note = Note("n", text)
    windows = [Window(0, 41), Window(19, len(text))]  # overlapping
    gens = [
        Generation('{"codes":[{"evidence":["HTN","T2DM"],"code":"I10"}]}', 10, 10, "stop"),
        Generation(
            '{"codes":[{"evidence":["HTN controlled"],"code":"i10"},{"evidence":["Type 2 Diabetes"],'
            '"code":"E119"},{"evidence":["heart attack"],"code":"I21.9"},{"evidence":["qqq"],"code":"ZZ9"}]}',
            10,
            30,
            "stop",
        ),
    ]
    counts: Counter[str] = Counter()
    row = note_line(
        note, windows, gens, CodeSystem.ICD10CM, fuzzy_threshold=90, drop_invalid_codes=False, quote_counts=counts
    ).to_json()
    by_code = {c["code"]: c for c in row["codes"]}
    assert set(by_code) == {"I10", "E11.9", "I21.9", "ZZ9"}
    assert [c for w in row["windows"] for c in w["codes"]] == ["I10", "I10", "E11.9", "I21.9", "ZZ9"]
    i10 = [(e["text"], e["begin"], e["match"]) for e in by_code["I10"]["evidence"]]
    assert i10 == [("HTN", 5, "exact"), ("T2DM", 13, "exact"), ("HTN controlled", 27, "exact")]
    assert [(e["text"], e["match"]) for e in by_code["E11.9"]["evidence"]] == [("type 2 diabetes", "normalized")]
    assert by_code["E11.9"]["evidence"][0]["begin"] == text.index("type 2 diabetes")
    assert by_code["I21.9"]["evidence"] == [{"text": "heart attack", "begin": None, "end": None, "match": None}]
    assert by_code["ZZ9"]["valid"] is False and by_code["I10"]["valid"] and by_code["I10"]["description"]
    assert counts == {"exact": 3, "normalized": 1, "unaligned": 2}
    dropped = note_line(
        note, windows, gens, CodeSystem.ICD10CM, fuzzy_threshold=90, drop_invalid_codes=True, quote_counts=Counter()
    ).to_json()
    assert {c["code"] for c in dropped["codes"]} == {"I10", "E11.9", "I21.9"}  # only ZZ9 fails validation


def test_invalid_answers_are_recorded_not_raised() -> None:
    note = Note("n", "HTN")
    gens = [Generation('{"codes":[{"evidence":["HTN"],"co', 5, 40, "length")]
    row = note_line(
        note,
        [Window(0, 3)],
        gens,
        CodeSystem.ICD10CM,
        fuzzy_threshold=90,
        drop_invalid_codes=False,
        quote_counts=Counter(),
    ).to_json()
    assert row["codes"] == [] and len(row["errors"]) == 2
    assert row["errors"][0].startswith("window 0: answer cut at max_new_tokens")
    assert "not valid JSON" in row["errors"][1]
    gens = [Generation('{"codes":[{"evidence":[],"code":"I10"}]}', 5, 10, "stop")]
    row = note_line(
        note,
        [Window(0, 3)],
        gens,
        CodeSystem.ICD10CM,
        fuzzy_threshold=90,
        drop_invalid_codes=False,
        quote_counts=Counter(),
    ).to_json()
    assert any("should be non-empty" in e or "too short" in e for e in row["errors"])


# ---------------------------------------------------------------------------------- real vLLM in process


@pytest.mark.engine
def test_predict_writes_one_schema_valid_line_per_note(tmp_path, demo_corpus, tiny_adapter, vllm_engine) -> None:
    notes = demo_notes(tmp_path, demo_corpus, 4)
    report = predict(
        notes, tmp_path / "p.jsonl", adapter=open_adapter(tiny_adapter), settings=SETTINGS, engine=vllm_engine
    )
    rows = jsonl_rows(tmp_path / "p.jsonl")
    assert [r["id"] for r in rows] == [json.loads(line)["id"] for line in notes.read_text().splitlines()]
    for row in rows:
        jsonschema.validate(row, LINE_SCHEMA)
        assert row["engine"] == "lora" and row["prompt_version"] == "evidence-coding@2"
        assert row["grounding"] == "substring"  # the default: quotes and codes constrained per window
        # the tiny random model rambles until it is cut: every window says so, and the line counts the tokens
        # the engine wrote (the codes and quotes of finished answers are checked in the tests of note_line)
        assert [e for e in row["errors"] if "answer cut at max_new_tokens (160 tokens)" in e] == [
            f"window {i}: answer cut at max_new_tokens (160 tokens)" for i in range(len(row["windows"]))
        ]
        assert row["usage"]["completion_tokens"] == 160 * len(row["windows"]) and row["usage"]["prompt_tokens"] > 0
    assert report.written == 4 and report.windows == sum(len(r["windows"]) for r in rows) > 4
    assert report.completion_tokens == 160 * report.windows


@pytest.mark.engine
def test_the_engine_writes_only_quotes_of_the_window_and_allowed_codes(demo_corpus, tiny_adapter, vllm_engine) -> None:
    from sclcoder.backbones import load_tokenizer
    from sclcoder.infer.engine import Request
    from sclcoder.infer.grounding import answer_grammar
    from sclcoder.sft.prompts import Renderer, load_prompt

    ad = open_adapter(tiny_adapter)
    renderer = Renderer(load_tokenizer(str(ad.path)), load_prompt(ad.path / "prompt.yaml"), "icd10cm")
    allowed = ["E66.9", "I10", "Z87.891"]  # fewer codes than the adapter knows: the grammar must narrow it
    windows = [d.text[i : i + 400] for d in read_demo(demo_corpus, split="test")[:3] for i in (0, 600)]
    requests = [Request(renderer.prompt_ids(w), renderer.messages(w), answer_grammar(w, allowed)) for w in windows]
    gens = vllm_engine.generate(requests, schema=None, sampling=Sampling(200, 0.0, 1.0), lora_path=str(ad.path))
    # the tiny adapter repeats itself until it is cut, so read the quotes and codes it closed
    item = re.compile(r'\{"evidence":\[((?:"(?:[^"\\]|\\.)*",?)+)\],"code":"([^"]*)"\}')
    seen = 0
    for window, gen in zip(windows, gens, strict=True):
        assert gen.text.startswith('{"codes":[')
        for quotes, code in item.findall(gen.text):
            assert code in allowed
            for quote in json.loads(f"[{quotes.rstrip(',')}]"):
                assert quote and quote in window
                seen += 1
    assert seen > 0


@pytest.mark.engine
def test_a_long_note_is_split_into_overlapping_windows(tmp_path, demo_corpus, tiny_adapter, vllm_engine) -> None:
    docs = read_demo(demo_corpus, split="test")
    long_text = docs[0].text  # a whole discharge summary of corpus v5: thousands of tokens, many 256-token windows
    (tmp_path / "long.jsonl").write_text(json.dumps({"id": "long", "text": long_text}) + "\n")
    predict(
        tmp_path / "long.jsonl",
        tmp_path / "p.jsonl",
        adapter=open_adapter(tiny_adapter),
        settings=SETTINGS,
        engine=vllm_engine,
    )
    (row,) = jsonl_rows(tmp_path / "p.jsonl")
    windows = row["windows"]
    assert len(windows) >= 4
    assert windows[0]["begin"] == 0 and windows[-1]["end"] == len(long_text)
    assert all(a["begin"] < b["begin"] < a["end"] for a, b in itertools.pairwise(windows))  # overlap
    # every window was decoded (how their codes are unioned: test_merge_unions_windows_and_aligns_quotes_...)
    assert row["usage"]["completion_tokens"] >= len(windows) and len(row["errors"]) >= len(windows)


@pytest.mark.engine
def test_cut_answers_are_errors_in_the_line(tmp_path, demo_corpus, tiny_adapter, vllm_engine) -> None:
    notes = demo_notes(tmp_path, demo_corpus, 2)
    settings = SETTINGS.model_copy(update={"max_new_tokens": 3})
    report = predict(
        notes, tmp_path / "p.jsonl", adapter=open_adapter(tiny_adapter), settings=settings, engine=vllm_engine
    )
    rows = jsonl_rows(tmp_path / "p.jsonl")
    assert len(rows) == 2 and report.invalid_answers == sum(len(r["windows"]) for r in rows)
    assert all(r["codes"] == [] and r["errors"] for r in rows)


@pytest.mark.engine
def test_endpoint_gives_the_same_answers(
    tmp_path, demo_corpus, tiny_adapter, vllm_engine, vllm_server, scoring_engine
) -> None:
    from sclcoder.infer.coder import NoteCoder
    from sclcoder.infer.merge import merged_weights, peft_model
    from sclcoder.infer.predictions import CodePrediction, PredictionLine, Quote
    from sclcoder.infer.support import with_support

    notes = demo_notes(tmp_path, demo_corpus, 2)
    predict(notes, tmp_path / "local.jsonl", adapter=open_adapter(tiny_adapter), settings=SETTINGS, engine=vllm_engine)
    remote = EndpointEngine(vllm_server.base_url, "adapter", SETTINGS)
    predict(notes, tmp_path / "remote.jsonl", adapter=open_adapter(tiny_adapter), settings=SETTINGS, engine=remote)
    keep = ("id", "windows", "errors")
    local, served = jsonl_rows(tmp_path / "local.jsonl"), jsonl_rows(tmp_path / "remote.jsonl")
    assert [{k: r[k] for k in keep} for r in local] == [{k: r[k] for k in keep} for r in served]
    assert_same_codes(local, served)  # the per-window grammar travels to the server too; confidences to 1e-3

    # support scores: the server's prompt log-probabilities are the in-process engine's, on merged weights both
    # ways (vLLM scores no prompt with LoRA enabled: one error naming the field)
    renderer = NoteCoder(open_adapter(tiny_adapter), SETTINGS).renderer
    texts = {json.loads(x)["id"]: json.loads(x)["text"] for x in notes.read_text().splitlines()}
    lines = [  # the tiny adapter's answers run until they are cut: codes with quotes are made here
        PredictionLine(
            id=i,
            codes=[
                CodePrediction(code=code, evidence=[Quote(text=text[b:e], begin=b, end=e, match="exact")])
                for code, (b, e) in (("I10", (0, 40)), ("E11.9", (100, 160)))
            ],
        )
        for i, text in texts.items()
    ]
    scoring_engine.load_weights(merged_weights(peft_model(open_adapter(tiny_adapter))))
    here = with_support(lines, renderer, scoring_engine, None)
    there = with_support(lines, renderer, remote, None)
    assert_same_codes([x.to_json() for x in here], [x.to_json() for x in there])
    supports = [c.support for x in here for c in x.codes]
    assert len(supports) == 4 and all(0.0 < s <= 1.0 for s in supports) and len(set(supports)) > 1
    with pytest.raises(SclError, match="merge_adapter") as err:
        with_support(lines, renderer, vllm_engine, None)
    assert err.value.field == "predict.support"
    assert {r["engine"] for r in jsonl_rows(tmp_path / "remote.jsonl")} == {"endpoint"}
    # the answers themselves, word for word: the lines alone could agree by both being empty
    from sclcoder.data.documents import read_notes
    from sclcoder.errors import Skips
    from sclcoder.infer.coder import NoteCoder

    coder = NoteCoder(open_adapter(tiny_adapter), SETTINGS)
    requests = [coder.request(n, w) for n in read_notes(notes, Skips()) for w in coder.windows(n)]
    sampling = Sampling(SETTINGS.max_new_tokens, 0.0, 1.0)
    here = vllm_engine.generate(requests, schema=None, sampling=sampling, lora_path=str(tiny_adapter))
    there = remote.generate(requests, schema=None, sampling=sampling, lora_path=None)
    assert [g.text for g in here] == [g.text for g in there]
    assert all(len(g.text) > 100 and g.text.startswith('{"codes":[{"evidence":["') for g in here)
    # and the log-probabilities confidences are made of: the same tokens, the same numbers to 1e-3 (float32)
    for a, b in zip(here, there, strict=True):
        assert a.tokens and b.tokens and [t for t, _ in a.tokens][: len(b.tokens)] == [t for t, _ in b.tokens]
        assert all(abs(x - y) < 1e-3 for (_, x), (_, y) in zip(a.tokens, b.tokens, strict=False))


# ------------------------------------------------------------------------------------- resumable output


@pytest.mark.engine
def test_kill_and_resume_writes_every_note_exactly_once(
    tmp_path, demo_corpus, tiny_adapter, scoring_engine, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from sclcoder.cli import app

    notes = demo_notes(tmp_path, demo_corpus, 6)
    marker = f"SCLCODER_TEST_RUN={tmp_path.name}"
    out = tmp_path / "notes.predictions.jsonl"  # the default output, beside the notes
    # `sclcoder predict notes.jsonl` as the design card writes it: the adapter comes from the environment
    cmd = [
        sys.executable,
        "-m",
        "sclcoder.cli",
        "predict",
        str(notes),
        "--set",
        "batch_size=1",
        "--set",
        "max_new_tokens=96",
        "--set",
        "max_model_len=2048",
    ]
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1], "SCLCODER_ADAPTER": str(tiny_adapter)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # no engine process outlives the killed parent (on CPU the engine runs inside it)
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_with(marker) == []
    before = len(jsonl_rows(out))
    assert 2 <= before < 6
    # started again the same way; the engine it starts is the session's on merged weights (what the killed
    # run served: an engine started in process by this test could not be closed without the session's)
    import sclcoder.infer.predict as predict_mod
    from sclcoder.infer.merge import merged_weights, peft_model

    scoring_engine.load_weights(merged_weights(peft_model(open_adapter(tiny_adapter))))
    monkeypatch.setattr(predict_mod, "open_engine", lambda *a, **k: _Unclosed(scoring_engine))
    monkeypatch.setenv("SCLCODER_ADAPTER", str(tiny_adapter))
    rerun = CliRunner().invoke(app, cmd[3:], env={"COLUMNS": "300"})
    assert rerun.exit_code == 0, rerun.output
    said = " ".join(rerun.output.split())
    assert str(tiny_adapter) in said and str(out) in said  # both defaults are printed
    ids = [r["id"] for r in jsonl_rows(out)]
    expected = [json.loads(line)["id"] for line in notes.read_text().splitlines()]
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    assert {r["engine"] for r in jsonl_rows(out)} == {"merged"}  # CPU default: the adapter merged into the base
    # started again with every note done: it says so, and starts no engine
    monkeypatch.setattr(predict_mod, "open_engine", lambda *a, **k: pytest.fail("engine started with nothing to do"))
    report = predict(notes, out, adapter=open_adapter(tiny_adapter))
    assert (report.written, report.already_done) == (0, 6) and len(jsonl_rows(out)) == 6


def test_the_newest_finished_run_is_the_default_adapter(tmp_path, monkeypatch) -> None:
    from sclcoder.artifacts import latest_adapter

    monkeypatch.delenv("SCLCODER_ADAPTER", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        SclError, match=r"no finished `sclcoder train` run under runs/.*--adapter DIR or set SCLCODER_ADAPTER"
    ):
        latest_adapter()
    for age, name in ((300, "old"), (100, "new"), (200, "team/middle")):
        record = tmp_path / "runs" / name / "adapter" / "sclcoder.json"
        record.parent.mkdir(parents=True)
        record.write_text("{}")
        os.utime(record, (time.time() - age, time.time() - age))
    (tmp_path / "runs" / "cut-short" / "checkpoint-4").mkdir(parents=True)  # no adapter record: not finished
    assert latest_adapter() == Path("runs/new/adapter")
    monkeypatch.setenv("SCLCODER_ADAPTER", "/somewhere/else")
    assert latest_adapter() == Path("/somewhere/else")


def test_model_merge_writes_a_model_that_loads_without_peft(tmp_path, tiny_adapter) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from typer.testing import CliRunner

    from sclcoder.artifacts import open_adapter
    from sclcoder.cli import app

    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["model", "merge", str(tiny_adapter), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").exists() and (out / "sclcoder.json").exists() and (out / "prompt.yaml").exists()
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template  # an OpenAI-compatible server renders requests with it
    ids = tok("Assessment: hypertension and type 2 diabetes.", return_tensors="pt")["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(open_adapter(tiny_adapter).base_model, dtype=torch.float32)
    with torch.no_grad():
        expected = PeftModel.from_pretrained(base, tiny_adapter)(ids).logits
        got = merged(ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    again = CliRunner().invoke(app, ["model", "merge", str(tiny_adapter), "-o", str(out)])
    assert again.exit_code == 2 and "pass --overwrite" in again.output


class _Unclosed:
    """A session engine handed to code that closes the engine it started: closing it is left to the session."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine
        self.mode = engine.mode

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.engine, name)

    def close(self) -> None:
        pass


class _BaseOnly:
    """The session's engine asked without LoRA: what the base model alone answers."""

    mode = "merged"

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine = engine

    def generate(self, requests, *, schema, sampling, lora_path):  # type: ignore[no-untyped-def]
        return self.engine.generate(requests, schema=schema, sampling=sampling, lora_path=None)


@pytest.mark.engine
def test_a_merged_model_predicts_what_its_adapter_predicts(
    tmp_path, demo_corpus, tiny_adapter, vllm_engine, scoring_engine, monkeypatch
) -> None:
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    import sclcoder.infer.settings as settings_mod
    from sclcoder.cli import app

    out = tmp_path / "merged"
    assert CliRunner().invoke(app, ["model", "merge", str(tiny_adapter), "-o", str(out)]).exit_code == 0
    merged = open_adapter(out)
    # predict starts its engine on the folder itself, without LoRA (vLLM loading such a folder is what the
    # session's server does: `serve` merges the adapter on CPU)
    started = []
    monkeypatch.setattr(settings_mod, "VllmEngine", lambda model, settings, **kw: started.append((model, kw)))
    settings_mod.engine_for(merged, SETTINGS)
    assert started == [(str(out), {"max_lora_rank": None})]
    # its weights in the session's engine on the base model: what the folder answers
    scoring_engine.load_weights(load_file(out / "model.safetensors").items())
    notes = demo_notes(tmp_path, demo_corpus, 3)
    predict(notes, tmp_path / "m.jsonl", adapter=merged, settings=SETTINGS, engine=scoring_engine)
    adapter = open_adapter(tiny_adapter)
    predict(notes, tmp_path / "lora.jsonl", adapter=adapter, settings=SETTINGS, engine=vllm_engine)
    predict(notes, tmp_path / "base.jsonl", adapter=adapter, settings=SETTINGS, engine=_BaseOnly(vllm_engine))
    merged_rows, lora, base = (jsonl_rows(tmp_path / f"{n}.jsonl") for n in ("m", "lora", "base"))
    assert {r["engine"] for r in merged_rows} == {"merged"}
    assert {r["adapter"] for r in merged_rows} == {str(out.resolve())}
    keep = ("id", "codes", "windows", "errors")

    def answers(rows: list[dict]) -> list[dict]:
        return [{k: r[k] for k in keep} for r in rows]

    # float32 both ways: the merged weights answer as the adapter on its base does, and not as the base alone
    assert_same_codes(merged_rows, lora)
    assert [r["windows"] for r in merged_rows] == [r["windows"] for r in lora]
    assert answers(merged_rows) != answers(base)


@pytest.mark.parametrize("when", ["SIGKILL once the engine runs", "SIGTERM while loading"])
def test_serve_leaves_no_process_behind(tmp_path, tiny_adapter, when) -> None:
    from tests.helpers import free_port

    marker = f"SCLCODER_TEST_RUN=serve-{tmp_path.name}"
    env = {**os.environ, "SCLCODER_TEST_RUN": f"serve-{tmp_path.name}"}
    port = free_port()
    cmd = [sys.executable, "-m", "sclcoder.cli", "serve", "--adapter", str(tiny_adapter), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(processes_with(marker)) < 2:
            time.sleep(0.2)
        assert len(processes_with(marker)) >= 2  # sclcoder and its vLLM server
        if when.startswith("SIGKILL"):
            # once vLLM's engine core runs beside its API server: the deepest tree serve ever has
            while time.monotonic() < deadline + 240 and len(processes_with(marker)) < 3:
                time.sleep(0.2)
            assert len(processes_with(marker)) >= 3
            proc.send_signal(signal.SIGKILL)
        else:
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert processes_with(marker) == []
    finally:
        for pid in processes_with(marker):  # whatever happens, make test leaves nothing running
            os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------- bad input


def test_bad_input_lines(tmp_path, tiny_adapter) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": "a", "text": "HTN"}\n{"id": "b"}\n')
    with pytest.raises(SclError, match=r"notes\.jsonl:2: field 'text': missing"):
        predict(path, tmp_path / "p.jsonl", adapter=open_adapter(tiny_adapter), settings=SETTINGS, engine=_NoEngine())


def test_a_trained_window_that_does_not_fit_is_refused_not_shrunk(tmp_path, tiny_adapter) -> None:
    # a smaller window would cut notes differently from training: predict says what to raise instead
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": "a", "text": "HTN"}\n')
    tight = SETTINGS.model_copy(update={"max_model_len": 300})
    with pytest.raises(SclError, match=r"field 'predict\.max_model_len': the adapter's 256-token windows need"):
        predict(path, tmp_path / "p.jsonl", adapter=open_adapter(tiny_adapter), settings=tight, engine=_NoEngine())


def test_prompt_mismatch_is_an_error(tmp_path, tiny_adapter) -> None:
    other = tmp_path / "prompt.yaml"
    other.write_text((tiny_adapter / "prompt.yaml").read_text().replace("clinical coder", "medical coder"))
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": "a", "text": "HTN"}\n')
    with pytest.raises(SclError, match=r"field 'prompt': prompt evidence-coding@2 .* differs"):
        predict(
            path,
            tmp_path / "p.jsonl",
            adapter=open_adapter(tiny_adapter),
            settings=SETTINGS,
            engine=_NoEngine(),
            prompt=str(other),
        )


def test_a_file_from_another_adapter_is_not_appended_to(tmp_path, tiny_adapter) -> None:
    out = tmp_path / "p.jsonl"
    line = {"id": "a", "codes": [], "adapter": "/elsewhere", "prompt_version": "evidence-coding@2"}
    out.write_text(json.dumps(line) + "\n")
    path = tmp_path / "notes.jsonl"
    path.write_text('{"id": "a", "text": "HTN"}\n')
    with pytest.raises(SclError, match="was written with adapter '/elsewhere'"):
        predict(path, out, adapter=open_adapter(tiny_adapter), settings=SETTINGS, engine=_NoEngine())


class _NoEngine:
    """Stands where an engine would be in tests that must fail before any generation."""

    mode = "merged"

    def generate(self, *a, **k):  # pragma: no cover - reaching it is a test failure
        raise AssertionError("no generation expected")

    def close(self) -> None:
        pass
