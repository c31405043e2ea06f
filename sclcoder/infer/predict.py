"""`sclcoder predict NOTES.jsonl`: codes with evidence for every note, aligned back to character offsets.

The notes are read and checked first; then, batch by batch, a `NoteCoder` turns notes into constrained
requests and answers into predictions lines (vLLM in process, or any OpenAI-compatible endpoint), and a
`PredictionsWriter` makes each line durable as it comes. A run killed at any moment and started again with
the same arguments skips the notes already written, so every note is written exactly once; with
`overwrite`, the earlier file is replaced only once the new one holds every note.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from sclcoder.artifacts import Adapter
from sclcoder.data.documents import read_notes
from sclcoder.errors import SclError, Skips
from sclcoder.files import check_writable
from sclcoder.infer.coder import NoteCoder
from sclcoder.infer.engine import Engine
from sclcoder.infer.predictions import PredictionLine, PredictionsWriter
from sclcoder.infer.settings import open_engine, predict_settings
from sclcoder.progress import bar
from sclcoder.recipe import PredictSection


@dataclass
class PredictReport:
    output: Path
    written: int = 0
    already_done: int = 0
    skipped_input: int = 0
    windows: int = 0
    invalid_answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    quotes: Counter[str] = field(default_factory=Counter)

    def add(self, line: PredictionLine) -> None:
        """Count one line written."""
        self.written += 1
        self.windows += len(line.windows)
        self.invalid_answers += sum(1 for w in line.windows if not w.answer_valid)
        if line.usage is not None:
            self.prompt_tokens += line.usage.prompt_tokens
            self.completion_tokens += line.usage.completion_tokens

    @property
    def notes_per_second(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0


def default_output(notes: str | PathLike[str]) -> Path:
    """`notes.jsonl` -> `notes.predictions.jsonl`, beside it."""
    p = Path(notes)
    return p.with_name(f"{p.name.removesuffix('.jsonl')}.predictions.jsonl")


def predict(
    notes: str | PathLike[str],
    output: str | PathLike[str],
    *,
    adapter: Adapter,
    settings: PredictSection | None = None,
    engine: Engine | None = None,
    endpoint: str | None = None,
    endpoint_model: str | None = None,
    prompt: str | None = None,
    allow_prompt_mismatch: bool = False,
    skip_invalid: bool = False,
    overwrite: bool = False,
    limit: int | None = None,
) -> PredictReport:
    """Predict codes and evidence for every note in `notes` into `output` (see the module docstring). An
    `engine` handed in is used and left open; otherwise one is started (or `endpoint` is called) and closed."""
    started = time.perf_counter()
    if limit is not None and limit < 1:
        raise SclError(f"must be at least 1, got {limit}", field="limit")
    settings = settings or predict_settings(adapter)
    coder = NoteCoder(adapter, settings, prompt=prompt, allow_mismatch=allow_prompt_mismatch)
    out = check_writable(output)
    skips = Skips(skip_invalid)
    every_note = list(read_notes(notes, skips))  # read and checked whole before anything is written
    with PredictionsWriter(out, coder.identity, overwrite=overwrite, inputs=(notes,)) as writer:
        todo = [n for n in every_note if n.id not in writer.done]
        report = PredictReport(out, already_done=len(writer.done), skipped_input=skips.count)
        if limit is not None:
            todo = todo[:limit]
        if todo:  # a finished run started again has nothing to decode: no engine to start (~20 s on CPU)
            own = engine is None
            engine = engine or open_engine(adapter, settings, endpoint=endpoint, endpoint_model=endpoint_model)
            try:
                _code_all(coder, engine, todo, writer, report, started)
            finally:
                if own:
                    engine.close()
        if limit is None or len(writer.done) == len(every_note):
            writer.finish()  # with overwrite, a partial file (a --limit run) never replaces the old output
    report.seconds = time.perf_counter() - started
    return report


def _code_all(
    coder: NoteCoder, engine: Engine, todo: list, writer: PredictionsWriter, report: PredictReport, started: float
) -> None:
    batch_size = coder.settings.batch_size
    with bar("predict", len(todo), unit="notes", extra="{task.fields[rate]}") as progress:
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            for line in coder.code(batch, engine, report.quotes):
                writer.write(line)
                report.add(line)
            elapsed = time.perf_counter() - started
            progress.advance(len(batch))
            progress.update(
                rate=f"{report.written / elapsed:.2f} notes/s, {report.completion_tokens / elapsed:.0f} tok/s"
            )
