"""The output contract: the JSON answer the model is trained to emit and constrained to at inference.

One schema file in the package (``schemas/answer.schema.json``) is the single source for training
targets (every target is validated against it when a dataset is built), constrained decoding (vLLM gets
it, optionally with the code field narrowed to a code list) and validation of every decoded answer
(jsonschema, because a grammar backend may not enforce every keyword).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable
from importlib import resources
from typing import Any

import jsonschema

from sclcoder.errors import SclError

SCHEMA_ID = "answer-1"


@functools.cache
def _base_schema() -> dict[str, Any]:
    text = resources.files("sclcoder").joinpath("schemas", "answer.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def answer_schema(codes: Iterable[str] | None = None) -> dict[str, Any]:
    """The answer schema; with `codes`, the code field is narrowed to that list (an enum)."""
    schema = copy.deepcopy(_base_schema())
    if codes is not None:
        code_field = schema["properties"]["codes"]["items"]["properties"]["code"]
        code_field.pop("pattern", None)
        code_field["enum"] = sorted(set(codes))
    return schema


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_base_schema())


def answer_errors(answer: Any) -> list[str]:
    """Schema violations of a decoded answer, as short readable messages (empty when valid)."""
    out = []
    for err in sorted(_validator().iter_errors(answer), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message}")
    return out


def parse_answer(raw: str) -> tuple[dict[str, Any] | None, list[str]]:
    """(answer, errors) from the model's raw text; answer is None when it is not valid JSON."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, [f"not valid JSON: {exc.msg} at char {exc.pos} (output {len(raw)} chars)"]
    errors = answer_errors(obj)
    return (obj if isinstance(obj, dict) else None), errors


def make_answer(code_quotes: Iterable[tuple[str, list[str]]]) -> dict[str, Any]:
    """A training target from (code, quotes) pairs, in the order given; raises if it breaks the schema."""
    answer = {"codes": [{"evidence": list(quotes), "code": code} for code, quotes in code_quotes]}
    errors = answer_errors(answer)
    if errors:
        raise SclError(f"training target breaks the answer schema: {errors[0]}")
    return answer


def dump_answer(answer: dict[str, Any]) -> str:
    """Compact JSON, exactly as the model is trained to write it (no free whitespace)."""
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
