"""The recipe's `data` section: where training notes come from (JSONL, MDACE + MIMIC-III, the demo corpus),
how MDACE evidence is filtered and cleaned, and the span-centric mixture (spans, documents, synthesis)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from sclcoder import defaults
from sclcoder.errors import SclError, validation_error
from sclcoder.recipe.base import Fraction, NonNegativeInt, PositiveInt, Section

DEFAULT_PROMPT = "prompts/evidence-coding-v2.yaml"
"""The prompt template new datasets are rendered with (older adapters keep the copy they were trained on)."""


class DemoSpec(Section):
    split: Literal["train", "val", "test"]
    corpus: str = defaults.DEMO_CORPUS
    """Generated here (deterministically, from `charts` and `seed`) when missing."""
    charts: Annotated[int, Field(ge=10)] = defaults.DEMO_CHARTS
    seed: int = defaults.DEMO_SEED


class MdaceFilters(Section):
    """Which MDACE evidence is read and how it is cleaned up. The defaults are those of the MDACE authors'
    evaluate-predictions.py: every note category, every code (procedures too), no clean-up, and note text
    as their inject-note-text.py reads it (NOTEEVENTS.csv opened in text mode, so CR LF becomes LF)."""

    categories: list[str] | None = None
    """Note categories kept; None keeps all (e.g. ["Discharge summary"])."""
    diagnoses_only: bool = False
    """Drop procedure codes (ICD-10-PCS, ICD-9 procedures, CPT) and their evidence."""
    trim: bool = False
    """Trim punctuation and whitespace at span ends (the authors' --trim-annotations)."""
    merge_adjacent: bool = False
    """Merge same-code spans separated only by punctuation or whitespace (--merge-adjacent)."""
    newlines: Literal["official", "keep"] = "official"
    """`official`: CR LF and lone CR in TEXT become LF, as the authors' injection reads them; `keep`: the
    TEXT column's exact characters."""

    @classmethod
    def preset(cls, name: str = "official", **overrides: Any) -> MdaceFilters:
        """A named setting of `MDACE_PRESETS`, with the values given (not None) put over it."""
        if name not in MDACE_PRESETS:
            raise SclError(f"unknown MDACE preset {name!r}; choose one of {', '.join(MDACE_PRESETS)}", field="preset")
        try:
            return cls(**(MDACE_PRESETS[name] | {k: v for k, v in overrides.items() if v is not None}))
        except ValidationError as exc:
            raise validation_error(exc) from None


MDACE_CODEABLE = ["Discharge summary", "Radiology", "Physician"]
"""The MDACE authors' "all codeable notes" categories."""

MDACE_PRESETS: dict[str, dict[str, Any]] = {
    "official": {},
    "paper-discharge": {"categories": ["Discharge summary"], "trim": True},
    "paper-codeable": {"categories": MDACE_CODEABLE, "trim": True, "merge_adjacent": True},
}
"""`official`: the scoring script's defaults; `paper-*`: the settings of the MDACE paper's tables (the
commands in the authors' README: discharge summaries, or all codeable notes, with their clean-ups)."""


class MdaceSpec(MdaceFilters):
    annotations: str
    noteevents: str
    split: str | None = None


class CorrectionsSpec(Section):
    file: str
    """The corrections JSONL `sclcoder review` wrote."""
    notes: str
    """The notes JSONL the reviewed predictions were made on (the corrections are checked against it)."""


class CorrectionsSource(Section):
    corrections: CorrectionsSpec
    """A coder's review decisions: accepted or re-highlighted evidence becomes span examples, rejected codes hard
    negatives on the quoted text, added codes spans, and a note marked done a document example."""


class DemoSource(Section):
    demo: DemoSpec


class MdaceSource(Section):
    mdace: MdaceSpec


class JsonlSource(Section):
    jsonl: str


Source = JsonlSource | DemoSource | MdaceSource | CorrectionsSource
_SOURCE_KINDS = {"jsonl": JsonlSource, "demo": DemoSource, "mdace": MdaceSource, "corrections": CorrectionsSource}


class SpanSection(Section):
    fraction: Fraction = 1.0
    """Share of candidate span examples kept."""
    max_examples: NonNegativeInt | None = None
    context: Literal["tokens", "sentences"] = "tokens"
    context_size: NonNegativeInt = 32
    """Tokens (or sentences) of context on each side of the evidence span."""
    negative_rate: Fraction = 0.25
    """Evidence-free windows per positive span example, answered with {"codes": []}."""


class DocumentSection(Section):
    fraction: Fraction = 0.1
    """Share of annotated training notes also used whole (windowed) as document examples."""
    max_examples: NonNegativeInt | None = None
    empty_window_rate: Fraction = 1.0
    """Share of a document's windows without evidence that are kept ("no codes" answers). Most windows of a
    long note have none: kept all, and grouped by length, they made whole batches of "no codes" and a demo model
    that answered "no codes" everywhere (micro F1 0.0, corpus v5, 256-token windows)."""


class TeacherSection(Section):
    endpoint: str
    """Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."""
    model: str
    api_key_env: str | None = None
    """Environment variable holding the API key (none for a local vLLM server)."""
    concurrency: PositiveInt = 4
    max_retries: NonNegativeInt = 3
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.7
    max_tokens: PositiveInt = 512
    send_notes: bool = False
    """Allow note text (example spans, whole notes for rationales) to go to a non-loopback endpoint."""


class SynthesisSection(Section):
    fraction: Fraction = 1.0
    max_examples: NonNegativeInt | None = None
    rare_threshold: NonNegativeInt = 2
    """Codes with fewer real evidence spans than this (including `codes` never seen) get synthesised spans."""
    per_code: PositiveInt = 3
    codes: list[str] = []
    """Extra codes to widen the code space beyond those in the training notes."""
    teacher: TeacherSection | None = None
    offline_fallback: bool = True
    """Without a teacher (or where it gives nothing usable), write spans from code descriptions and
    inclusion terms: clearly weaker, but the pipeline runs with no LLM at all."""
    rationales: bool = False
    """Ask the teacher to quote evidence for notes that have codes but no evidence (MIMIC-IV)."""
    min_quote_chars: PositiveInt = 3
    max_quote_chars: PositiveInt = 200
    cache_dir: str | None = None
    """Where teacher answers are cached by request (default: <sclcoder cache>/teacher)."""


class DataSection(Section):
    train: list[Source] = Field(min_length=1)
    validation: list[Source] = []
    validation_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    """Share of training notes held out for validation when no validation source is given."""
    code_system: Literal["icd10cm", "icd9cm"] = defaults.CODE_SYSTEM  # type: ignore[assignment]
    prompt: str = DEFAULT_PROMPT
    span: SpanSection = SpanSection()
    document: DocumentSection = DocumentSection()
    synthesis: SynthesisSection = SynthesisSection()
    seed: int = 13
    dataset_dir: str | None = None
    """A dataset written by `sclcoder data build`; when unset, `train` builds one into output_dir/dataset."""

    @field_validator("train", "validation", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(JsonlSource(jsonl=item))
                continue
            if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in _SOURCE_KINDS:
                raise ValueError(
                    f"item {i}: a source is a JSONL path or one of {{jsonl: PATH}}, "
                    "{demo: {split: ...}}, {mdace: {annotations: ..., noteevents: ...}}, "
                    "{corrections: {file: ..., notes: ...}}"
                )
            kind = next(iter(item))
            try:
                out.append(_SOURCE_KINDS[kind].model_validate(item))
            except ValidationError as exc:
                problem = validation_error(exc)
                raise ValueError(f"item {i}: {problem.field}: {problem.message}") from None
        return out
