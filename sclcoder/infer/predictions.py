"""The predictions file: one typed line per note (`PredictionLine`), what `predict` writes and what eval, the
audit view, faithfulness and the review app read. `sclcoder/schemas/prediction.schema.json` is generated
from the model (`python -m sclcoder.infer.predictions` rewrites it; a test checks it is current).

Writing is resumable and never destroys what is there: lines are appended and made durable one by one; a
run started again skips the notes already written; `overwrite` writes a new file beside the old one and
renames it over the old only once every note is in; one writer at a time holds the output's lock.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sclcoder.errors import SclError, validation_error
from sclcoder.files import JsonlAppender, exclusive, parse_json, same_file, text_lines

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "prediction.schema.json"
SCHEMA_ID = "https://sclcoder.dev/schemas/prediction-1.json"
PARTIAL_SUFFIX = ".partial"
"""An --overwrite run writes OUTPUT.partial and renames it over OUTPUT when every note is in."""


class Line(BaseModel):
    # what predict writes has every field; a hand-made line needs only what eval reads (`id`, `codes[].code`)
    model_config = ConfigDict(
        extra="forbid", json_schema_serialization_defaults_required=True, use_attribute_docstrings=True
    )


class Quote(Line):
    """A verbatim quote and where it was placed in the note (`[begin, end)`), or null offsets if nowhere."""

    text: str = ""
    begin: int | None = Field(default=None, ge=0)
    end: int | None = Field(default=None, ge=0)
    match: Literal["exact", "normalized", "fuzzy"] | None = None

    @model_validator(mode="after")
    def _span(self) -> Quote:
        if (self.begin is None) != (self.end is None):
            raise ValueError("begin and end are both offsets or both null")
        if self.begin is not None and self.end is not None and self.begin > self.end:
            raise ValueError(f"begin {self.begin} is after end {self.end}")
        return self

    @property
    def placed(self) -> bool:
        return self.begin is not None


class CodePrediction(Line):
    code: str
    description: str | None = None
    valid: bool = True
    """The code exists in the code system (a model may write one that does not)."""
    problem: str | None = None
    """Why `valid` is false."""
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    """The probability the model gave to writing this code where it wrote it, the highest over the windows that
    name it (sclcoder.infer.confidence); null when the engine reported no token log-probabilities."""
    support: float | None = Field(default=None, ge=0.0, le=1.0)
    """The probability the model gives this code with only its quoted evidence as the note (sclcoder.infer.support);
    0 for a code with no quote in the note; null unless predict computed it (`predict.support`)."""
    evidence: list[Quote] = []


class WindowResult(Line):
    begin: int
    end: int
    codes: list[str]
    answer_valid: bool = Field(description="the model's answer parsed and fitted the answer schema")


class Usage(Line):
    prompt_tokens: int
    completion_tokens: int


class PredictionLine(Line):
    """The codes predicted for one note, each with its evidence aligned to character offsets in the note."""

    id: str
    codes: list[CodePrediction]
    withheld: list[CodePrediction] = []
    """Codes the model wrote with a confidence below `min_confidence`: not predicted, kept for review."""
    min_confidence: float | None = None
    """The threshold this line was written with (predict.min_confidence), if any."""
    windows: list[WindowResult] = []
    errors: list[str] = []
    model: str | None = None
    adapter: str | None = None
    """The adapter (or merged model) folder that predicted, resolved."""
    prompt_version: str | None = None
    engine: Literal["lora", "merged", "endpoint", "transformers"] | None = None
    grounding: Literal["substring", "schema"] | None = Field(
        default=None,
        description="substring: every quote was constrained to be text of its window, every code to the allowed codes",
    )
    usage: Usage | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        # hand-made files often number their notes; a number and its string name the same note
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def prediction_schema() -> dict[str, Any]:
    """The JSON Schema of a predictions line as predict writes it (every field present)."""
    schema = PredictionLine.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "sclcoder predictions line",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def parse_line(row: Any, path: str | PathLike[str], lineno: int) -> PredictionLine:
    """One predictions line, or one SclError naming file, line and field."""
    if not isinstance(row, dict):
        raise SclError("not a predictions line (a JSON object)", path=path, line=lineno)
    try:
        return PredictionLine.model_validate(row)
    except ValidationError as exc:
        error = validation_error(exc, path=path, line=lineno)
        raise SclError(f"not a predictions line: {error.message}", path=path, line=lineno, field=error.field) from None


def read_predictions(path: str | PathLike[str]) -> Iterator[tuple[int, PredictionLine]]:
    """(line number, line) of a predictions JSONL; blank lines are passed over."""
    from sclcoder.files import read_jsonl

    for lineno, row in read_jsonl(path, what="predictions file"):
        yield lineno, parse_line(row, path, lineno)


# ------------------------------------------------------------------------------------------------ writing


def _written(path: Path, identity: dict[str, str]) -> tuple[set[str], str | None]:
    """Ids already in `path`, and the first identity field (adapter, prompt) that differs from this run's."""
    done: set[str] = set()
    if not path.exists():
        return done, None
    for lineno, text in text_lines(path):
        if not text.strip():
            continue
        try:
            row = parse_json(text, path=path, line=lineno)
        except SclError:
            continue  # a line cut by a kill; the appender trims it
        line = parse_line(row, path, lineno)
        for key, value in identity.items():
            if getattr(line, key) != value:
                return done, f"was written with {key} {getattr(line, key)!r}, this run uses {value!r}"
        done.add(line.id)
    return done, None


class PredictionsWriter:
    """Appends predictions lines to `output` and knows which notes are done (see the module docstring).

    `identity` (adapter, prompt version) must match the lines already in the file: a run never mixes the
    answers of two models in one file."""

    def __init__(
        self,
        output: str | PathLike[str],
        identity: dict[str, str],
        *,
        overwrite: bool,
        inputs: tuple[str | PathLike[str], ...] = (),
    ) -> None:
        self.output = Path(output)
        for source in inputs:
            if same_file(source, self.output):
                raise SclError("is also an input of this run; write the predictions elsewhere", path=self.output)
        self.overwrite = overwrite
        self.target = self.output.with_name(self.output.name + PARTIAL_SUFFIX) if overwrite else self.output
        self.identity = identity
        self._lock = exclusive(self.output, what="predictions file")
        self._sink: JsonlAppender | None = None

    def __enter__(self) -> PredictionsWriter:
        self._lock.__enter__()
        try:
            done, problem = _written(self.target, self.identity)
            if problem and self.overwrite:  # a partial file of another model: never the user's output, start over
                self.target.unlink()
                done, problem = set(), None
            if problem:
                raise SclError(problem, path=self.target, hint="write to another file, or pass --overwrite")
            self.done = done
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def write(self, line: PredictionLine) -> None:
        if self._sink is None:
            self._sink = JsonlAppender(self.target)
        self._sink.write(line.to_json())
        self.done.add(line.id)

    def finish(self) -> None:
        """Every note is in: an --overwrite run's file replaces the old output now, and not before."""
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if self.overwrite:
            if not self.target.exists():
                self.target.touch()
            os.replace(self.target, self.output)

    def __exit__(self, *exc: object) -> None:
        try:
            if self._sink is not None:
                self._sink.close()
        finally:
            self._lock.__exit__(None, None, None)


def main() -> None:
    """Rewrite the shipped schema from the model."""
    with contextlib.suppress(FileNotFoundError):
        SCHEMA_FILE.unlink()
    SCHEMA_FILE.write_text(json.dumps(prediction_schema(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")


if __name__ == "__main__":
    main()
