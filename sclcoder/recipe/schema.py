"""The recipe schema: every section of a run, validated, with every default in this package (the `data`
section in sclcoder.recipe.data).

A recipe has the sections `model`, `quantization`, `lora`, `windows`, `data`, `train`, `deepspeed`,
`predict` and `task_eval`; every section forbids unknown keys. Paths are taken as given, relative to the working
directory; prompt templates and DeepSpeed configs fall back to the copies shipped with sclcoder. How a
YAML file becomes a `Recipe` (inheritance, `--set`, error messages) is in sclcoder.recipe.loading.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from sclcoder import defaults
from sclcoder.errors import SclError
from sclcoder.files import reading, require_file, resource_path
from sclcoder.recipe.base import Fraction, NonNegativeInt, PositiveInt, Section
from sclcoder.recipe.data import DataSection

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
    min_confidence: Fraction | None = None
    """Withhold codes the model wrote with a confidence below this (moved to the line's `withheld`); choose it on
    validation notes: `sclcoder eval` reports the threshold that maximises micro F1 there."""
    support: bool = False
    """Score every code's evidence alone (sclcoder.infer.support): one short prefill per code, no decoding; needs
    vLLM, in process or as an endpoint."""
    fuzzy_threshold: Annotated[float, Field(ge=50.0, le=100.0)] = defaults.FUZZY_THRESHOLD
    tensor_parallel_size: PositiveInt = 1
    gpu_memory_utilization: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    cpu_kv_cache_gb: Annotated[float, Field(gt=0.0)] = 2.0
    """vLLM's KV cache on CPU (VLLM_CPU_KVCACHE_SPACE, whole GiB)."""
    max_lora_rank: PositiveInt | None = None
    """The largest LoRA rank the engine accepts when it serves adapters per request; unset: the adapter's own."""
    seed: int = 0
    """vLLM's sampling seed (matters only with temperature above 0)."""
    endpoint_concurrency: PositiveInt = 8
    """Requests in flight at once to an OpenAI-compatible endpoint (`predict --endpoint`)."""
    endpoint_timeout_s: Annotated[float, Field(gt=0)] = 600.0
    endpoint_max_retries: NonNegativeInt = 3
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """vLLM's weights dtype, resolved by the same rule as training's precision: on a CPU without native
    bf16, bf16 weights send vllm-cpu to its slow torch-linear fallback."""
    enforce_eager: bool = False
    merge_adapter: Literal["auto", "always", "never"] = "auto"
    """Serve the adapter merged into the base weights; `auto` merges on CPU, where vLLM's LoRA kernels
    are several times slower than plain weights (measured: 8.5 vs 49 tok/s), and uses LoRA on GPUs."""
    ray_actors: PositiveInt = 1
    """`predict --ray`: engines over the cluster, one per actor (one per GPU on GPUs)."""
    ray_cpus_per_actor: Annotated[float, Field(gt=0.0)] = 1.0
    ray_gpus_per_actor: Annotated[float, Field(ge=0.0)] | None = None
    """GPUs each actor reserves; unset: tensor_parallel_size where the cluster has GPUs, else 0."""


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


class ParentSection(Section):
    """Continue an adapter instead of starting new LoRA weights (`sclcoder train RECIPE --from ADAPTER`), e.g. on a
    coder's corrections; a share of the parent's own training examples is mixed in so that it does not forget."""

    adapter: str
    """The adapter (or run) directory to continue; its LoRA settings are kept (the recipe's `lora` is not used)."""
    replay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    """Share of this run's training examples drawn from the parent's dataset (0: the new data only)."""


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
    parent: ParentSection | None = None

    def deepspeed_config(self) -> dict[str, Any] | None:
        if self.deepspeed is None:
            return None
        return load_deepspeed_config(self.deepspeed)
