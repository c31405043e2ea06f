"""The prediction settings of a model and the engine they start: the `predict` section of the recipe the
adapter was trained with, with the user's overrides put over it, and the in-process vLLM engine for it."""

from __future__ import annotations

from typing import Any

from sclcoder.artifacts import Adapter
from sclcoder.device import has_gpu
from sclcoder.errors import validation_error
from sclcoder.infer.engine import EndpointEngine, Engine, VllmEngine
from sclcoder.infer.merge import merged_model
from sclcoder.recipe import PredictSection


def predict_settings(
    adapter: Adapter, overrides: dict[str, Any] | None = None, assignments: list[str] | tuple[str, ...] = ()
) -> PredictSection:
    """The predict section of the recipe the adapter was trained with, with `overrides` (None values
    ignored) and `--set predict.KEY=VALUE` assignments put over it; a bad value is one error naming it."""
    from pydantic import ValidationError

    from sclcoder.recipe.loading import apply_override

    values = dict(adapter.record.recipe.get("predict", {}))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    recipe = {"predict": values}
    for assignment in assignments:  # `--set batch_size=8` and `--set predict.batch_size=8` alike
        key = assignment.strip()
        name, sep, _ = key.partition("=")
        bare = sep and name.strip() and not key.startswith("predict.")
        apply_override(recipe, f"predict.{key}" if bare else key)
    try:
        return PredictSection.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc, prefix=("predict",)) from None


def base_engine(model: str, settings: PredictSection, gpu_memory_utilization: float | None = None) -> VllmEngine:
    """An engine on the base weights without LoRA, for merged weights handed in later (`load_weights`):
    validation while training, and sweeps that score many adapters on one engine."""
    return VllmEngine(model, settings, max_lora_rank=None, gpu_memory_utilization=gpu_memory_utilization)


def merges(settings: PredictSection) -> bool:
    """Whether an adapter is served merged into its base weights (in process and by `sclcoder serve`).

    `merge_adapter: auto` merges on CPU, where vLLM's LoRA kernels are several times slower than plain
    weights, and keeps LoRA on GPUs, where one base model can serve many adapters."""
    return settings.merge_adapter == "always" or (settings.merge_adapter == "auto" and not has_gpu())


def engine_for(adapter: Adapter, settings: PredictSection) -> VllmEngine:
    """The in-process engine for a model: a merged model as it is; an adapter merged into its base weights,
    or with LoRA per request (see `merges`)."""
    if adapter.merged:
        return VllmEngine(adapter.base_model, settings, max_lora_rank=None)
    if merges(settings):
        return VllmEngine(str(merged_model(adapter)), settings, max_lora_rank=None)
    return VllmEngine(adapter.base_model, settings, max_lora_rank=settings.max_lora_rank or adapter.lora_rank)


def open_engine(
    adapter: Adapter, settings: PredictSection, *, endpoint: str | None = None, endpoint_model: str | None = None
) -> Engine:
    """An OpenAI-compatible endpoint when one is named, else the in-process engine for the model."""
    if endpoint:
        from sclcoder import defaults

        return EndpointEngine(endpoint, endpoint_model or defaults.SERVED_MODEL_NAME, settings)
    return engine_for(adapter, settings)
