"""The records one stage hands the next: typed, versioned, and refused with a clear error when they differ."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sclcoder.artifacts import METADATA, open_adapter, recipe_digest
from sclcoder.errors import SclError


def _edited(tmp_path: Path, adapter: Path, change) -> Path:  # type: ignore[no-untyped-def]
    copy = tmp_path / "adapter"
    shutil.copytree(adapter, copy, ignore=shutil.ignore_patterns("merged"))
    meta = json.loads((copy / METADATA).read_text())
    change(meta)
    (copy / METADATA).write_text(json.dumps(meta))
    return copy


def test_the_adapter_record_carries_what_predict_needs(tiny_adapter: Path) -> None:
    record = open_adapter(tiny_adapter).record
    assert (record.windows.max_tokens, record.windows.overlap_tokens) == (256, 32)  # the tiny recipe's windows
    assert record.prompt.id == "evidence-coding@2" and len(record.prompt.sha256) == 64
    assert record.recipe_sha256 == recipe_digest(record.recipe)
    assert record.precision is not None and record.precision.dtype in ("float32", "bfloat16")
    # the run's output_dir opens the same adapter
    assert open_adapter(tiny_adapter.parent).path == tiny_adapter


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["windows"].update(max_tokenz=9), r"field 'windows\.max_tokenz': unknown key"),
        (lambda m: m.pop("codes"), r"field 'codes': required key missing"),
        (lambda m: m.update(format="sclcoder-adapter/9"), r"unknown format 'sclcoder-adapter/9'"),
        (
            lambda m: m["prompt"].update(version=None),
            r"field 'prompt\.version': Input should be a valid string \(got None\)",
        ),
    ],
)
def test_a_record_from_another_writer_is_one_clear_error(tmp_path, tiny_adapter, change, message) -> None:
    with pytest.raises(SclError, match=message):
        open_adapter(_edited(tmp_path, tiny_adapter, change))


def test_no_record_at_all(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SclError, match=r"not an sclcoder adapter or merged model: no sclcoder\.json"):
        open_adapter(tmp_path / "empty")


# ---------------------------------------------------------------------------------- a merged model is a model


def _merged_folder(tmp_path: Path, tiny_model: Path, tiny_adapter: Path) -> Path:
    """What `sclcoder model merge` writes, assembled by hand: a model folder with the record and the prompt."""
    out = tmp_path / "merged"
    shutil.copytree(tiny_model, out)
    for name in (METADATA, "prompt.yaml"):
        shutil.copy2(tiny_adapter / name, out / name)
    return out


def test_a_merged_model_folder_opens_as_a_model_and_serves_without_lora(tmp_path, tiny_model, tiny_adapter) -> None:
    from sclcoder.infer.merge import merged_model, peft_model
    from sclcoder.infer.serve import server_spec

    merged = open_adapter(_merged_folder(tmp_path, tiny_model, tiny_adapter))
    assert merged.merged and merged.base_model == str(tmp_path / "merged")
    assert merged.record.codes == open_adapter(tiny_adapter).record.codes
    assert merged_model(merged) == merged.path  # served as it is, never merged again
    with pytest.raises(SclError, match="merged model already"):
        peft_model(merged)
    spec = server_spec(merged, host="127.0.0.1", port=8123, name="coder")
    assert (spec.model, spec.served_model_name, spec.lora_path) == (str(merged.path), "coder", None)
    assert "--enable-lora" not in spec.command()
    adapter = open_adapter(tiny_adapter)
    on_cpu = server_spec(adapter, host="127.0.0.1", port=8123, name="coder")  # auto: merged, as predict runs it
    assert (on_cpu.model, on_cpu.lora_path) == (str(merged_model(adapter)), None)
    assert "--enable-lora" not in on_cpu.command()
    lora = server_spec(adapter, host="127.0.0.1", port=8123, name="coder", merge_adapter="never")
    assert lora.lora_path == str(tiny_adapter) and "--enable-lora" in lora.command()


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (["config.json"], r"neither adapter_config\.json \(a LoRA adapter\) nor config\.json with safetensors"),
        (["model.safetensors"], r"neither adapter_config\.json .* nor config\.json with safetensors"),
        (["prompt.yaml"], r"incomplete: no prompt\.yaml"),
        (["tokenizer.json", "tokenizer_config.json"], r"incomplete: no tokenizer\.json or tokenizer_config\.json"),
    ],
)
def test_a_folder_that_is_not_a_model_names_what_it_lacks(tmp_path, tiny_model, tiny_adapter, remove, message) -> None:
    folder = _merged_folder(tmp_path, tiny_model, tiny_adapter)
    for name in remove:
        (folder / name).unlink()
    with pytest.raises(SclError, match=message) as err:
        open_adapter(folder)
    assert err.value.path == str(folder)


# ------------------------------------------------------------------------------------------ predictions line


def test_the_shipped_prediction_schema_is_the_one_the_model_generates() -> None:
    from sclcoder.infer.predictions import SCHEMA_FILE, prediction_schema

    shipped = json.loads(SCHEMA_FILE.read_text())
    assert shipped == prediction_schema(), "regenerate it: python -m sclcoder.infer.predictions"


def test_a_line_as_predict_writes_it_fits_the_schema_and_a_hand_made_one_still_reads() -> None:
    import jsonschema

    from sclcoder.infer.predictions import SCHEMA_FILE, CodePrediction, PredictionLine, Quote, Usage, parse_line

    schema = json.loads(SCHEMA_FILE.read_text())
    full = PredictionLine(
        id="n1",
        codes=[
            CodePrediction(
                code="I10",
                description="Essential hypertension",
                evidence=[Quote(text="HTN", begin=4, end=7, match="exact")],
            )
        ],
        model="m",
        adapter="/a",
        prompt_version="p@1",
        engine="merged",
        grounding="substring",
        usage=Usage(prompt_tokens=10, completion_tokens=5),
    ).to_json()
    jsonschema.validate(full, schema)
    hand_made = {"id": 7, "codes": [{"code": "I10"}]}  # what eval needs, no more
    with pytest.raises(jsonschema.ValidationError):  # not what predict writes ...
        jsonschema.validate(hand_made, schema)
    line = parse_line(hand_made, "p.jsonl", 3)  # ... but a file eval and report read
    assert line.id == "7" and line.codes[0].evidence == []
    for bad, field in (
        (
            {"id": "n", "codes": [{"code": "I10", "evidence": [{"text": "x", "begin": 9, "end": 4}]}]},
            "codes.0.evidence.0",
        ),
        ({"id": "n", "codes": [{"code": "I10", "evidence": [{"text": "x", "begin": 3}]}]}, "codes.0.evidence.0"),
        ({"id": "n", "codes": [{"code": "I10", "evidenc": []}]}, "codes.0.evidenc"),
    ):
        with pytest.raises(SclError) as err:
            parse_line(bad, "p.jsonl", 3)
        assert (err.value.path, err.value.line, err.value.field) == ("p.jsonl", 3, field)
