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
        (lambda m: m["windows"].update(max_tokenz=9), r"field 'windows\.max_tokenz': Extra inputs are not permitted"),
        (lambda m: m.pop("codes"), r"field 'codes': Field required"),
        (lambda m: m.update(format="sclcoder-adapter/9"), r"unknown format 'sclcoder-adapter/9'"),
        (lambda m: m["prompt"].update(version=None), r"field 'prompt\.version': Input should be a valid string"),
    ],
)
def test_a_record_from_another_writer_is_one_clear_error(tmp_path, tiny_adapter, change, message) -> None:
    with pytest.raises(SclError, match=message):
        open_adapter(_edited(tmp_path, tiny_adapter, change))


def test_no_record_at_all(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SclError, match="not an adapter written by `sclcoder train`"):
        open_adapter(tmp_path / "empty")
