"""Coding notes with a trained model: the model's contract checked once (its prompt, its windows against the
context length), then for a batch of notes, windows cut exactly as training cut them, one constrained request
per window, one engine call, and one predictions line per note. `predict` writes what this returns; a Ray
actor or validation during training call it the same way."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sclcoder.artifacts import Adapter
from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Note
from sclcoder.data.windows import Window, split_windows
from sclcoder.errors import SclError
from sclcoder.infer.answers import note_line
from sclcoder.infer.engine import Engine, Request, Sampling
from sclcoder.infer.grounding import answer_grammar
from sclcoder.infer.predictions import PredictionLine, Usage
from sclcoder.infer.support import require_scorer, with_support
from sclcoder.recipe import PredictSection
from sclcoder.sft.answer import answer_schema
from sclcoder.sft.prompts import PROMPT_FILE, PromptTemplate, Renderer, load_prompt


def adapter_prompt(adapter: Adapter, override: str | None, allow_mismatch: bool) -> PromptTemplate:
    """The prompt the model was trained with; another one only when it matches, or when allowed."""
    trained = adapter.record.prompt
    template = load_prompt(override or adapter.path / PROMPT_FILE)
    same = (template.name, template.version, template.sha256) == (trained.name, trained.version, trained.sha256)
    if not same and not allow_mismatch:
        raise SclError(
            f"prompt {template.id} (sha {template.sha256[:12]}) differs from the one the adapter was trained "
            f"with, {trained.id} (sha {trained.sha256[:12]})",
            field="prompt",
            hint="use the adapter's prompt, or pass --allow-prompt-mismatch",
        )
    return template


def check_window_fits(renderer: Renderer, windows_max: int, settings: PredictSection) -> None:
    """Notes are cut exactly as training cut them, or not at all: a trained window that does not fit
    max_model_len with the prompt and the answer is an error (a smaller window would code other text)."""
    overhead = len(renderer.prompt_ids(""))
    needed = windows_max + overhead + settings.max_new_tokens
    if needed > settings.max_model_len:
        raise SclError(
            f"the adapter's {windows_max}-token windows need max_model_len >= {needed} (prompt {overhead} tokens, "
            f"answer up to {settings.max_new_tokens}); it is {settings.max_model_len}",
            field="predict.max_model_len",
            hint=f"set predict.max_model_len={needed} or more, or lower predict.max_new_tokens",
        )


class NoteCoder:
    """Everything about a model that does not change from note to note: tokenizer, prompt, code system,
    windows, the answer's constraints, and the identity every line it writes carries."""

    def __init__(
        self, adapter: Adapter, settings: PredictSection, *, prompt: str | None = None, allow_mismatch: bool = False
    ) -> None:
        from transformers import AutoTokenizer

        self.adapter = adapter
        self.settings = settings
        self.system = CodeSystem.parse(adapter.record.code_system)
        self.template = adapter_prompt(adapter, prompt, allow_mismatch)
        self.tokenizer = AutoTokenizer.from_pretrained(adapter.path)
        self.renderer = Renderer(self.tokenizer, self.template, self.system)
        self.windows_spec = adapter.record.windows
        check_window_fits(self.renderer, self.windows_spec.max_tokens, settings)
        self.schema = answer_schema(adapter.record.codes if settings.constrain_codes else None)
        self.grounded_codes: list[str] | None = None
        if settings.grounding == "substring":
            # the training list, or every code of the system: either way no invalid code can be written
            self.grounded_codes = (
                list(adapter.record.codes)
                if settings.grounded_codes == "adapter"
                else codes_mod.all_codes(self.system, billable_only=False, current_only=False)
            )
        self.identity = {"adapter": str(adapter.path.resolve()), "prompt_version": self.template.id}
        """What every line of one predictions file must share (resume refuses a file with another)."""

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def windows(self, note: Note) -> list[Window]:
        spec = self.windows_spec
        return split_windows(note.text, self.count_tokens, spec.max_tokens, spec.overlap_tokens)

    def request(self, note: Note, window: Window) -> Request:
        text = note.text[window.begin : window.end]
        grammar = answer_grammar(text, self.grounded_codes) if self.grounded_codes else None
        return Request(self.renderer.prompt_ids(text), self.renderer.messages(text), grammar)

    def code(self, notes: list[Note], engine: Engine, quote_counts: Counter[str] | None = None) -> list[PredictionLine]:
        """One predictions line per note, in order, from one engine call over all their windows."""
        quote_counts = Counter() if quote_counts is None else quote_counts
        windows = [self.windows(n) for n in notes]
        requests = [self.request(n, w) for n, ws in zip(notes, windows, strict=True) for w in ws]
        lora = str(self.adapter.path) if engine.mode == "lora" else None
        if self.settings.support:
            require_scorer(engine, lora)
        gens = engine.generate(requests, schema=self.schema, sampling=Sampling.of(self.settings), lora_path=lora)
        lines, k = [], 0
        run: dict[str, Any] = {
            "model": self.adapter.record.base_model,
            **self.identity,
            "engine": engine.mode,
            "grounding": self.settings.grounding,
        }
        for note, ws in zip(notes, windows, strict=True):
            note_gens = gens[k : k + len(ws)]
            k += len(ws)
            line = note_line(
                note,
                ws,
                note_gens,
                self.system,
                fuzzy_threshold=self.settings.fuzzy_threshold,
                drop_invalid_codes=self.settings.drop_invalid_codes,
                quote_counts=quote_counts,
                min_confidence=self.settings.min_confidence,
            )
            usage = Usage(
                prompt_tokens=sum(g.prompt_tokens for g in note_gens),
                completion_tokens=sum(g.completion_tokens for g in note_gens),
            )
            lines.append(line.model_copy(update={**run, "usage": usage}))
        if self.settings.support:
            lines = with_support(lines, self.renderer, engine, lora)
        return lines
