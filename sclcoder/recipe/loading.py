"""Reading a recipe: YAML, `inherit:` composition (deep-merged, the child wins), `--set` overrides, and
validation against the schema with one error that names the key, its path and the closest valid key.
"""

from __future__ import annotations

import difflib
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sclcoder.errors import SclError, first_problem, union_tags_dropped, validation_error
from sclcoder.files import reading, require_file
from sclcoder.recipe.schema import Recipe


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    p = require_file(path, "recipe")
    try:
        with reading(p):
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SclError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}", path=p, line=mark.line + 1 if mark else None
        ) from None
    if not isinstance(data, dict):
        raise SclError("a recipe is a YAML mapping", path=p)
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent.strip():
        raise SclError(f"names one recipe file to build on, got {parent!r}", path=p, field="inherit")
    parent_path = Path(parent) if Path(parent).is_absolute() else p.parent / parent
    if parent_path.resolve() in seen:
        raise SclError("recipes inherit from each other in a loop", path=p, field="inherit")
    return _deep_merge(_read_yaml(parent_path, (*seen, p.resolve())), data)


def apply_override(data: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise SclError(f"--set expects KEY=VALUE, got {assignment!r}")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SclError(f"cannot set {key}: {part} is not a section", field=key)
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SclError(
            f"--set {key.strip()}: the value {raw!r} is not valid YAML ({problem})", field=key.strip()
        ) from None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of an error location."""
    model: Any = Recipe
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = None
        for cand in candidates:
            for sub in (cand, *getattr(cand, "__args__", ())):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    nxt = sub
                    break
            if nxt:
                break
        model = nxt
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


# Names other fine-tuning tools use for our keys (axolotl, LLaMA-Factory, HF), which plain string similarity
# misses ("rank" is not close to "r").
_ALIASES = {
    "rank": "r",
    "lora_r": "r",
    "lora_rank": "r",
    "alpha": "lora_alpha",
    "dropout": "lora_dropout",
    "lora_target": "target_modules",
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "num_epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "micro_batch_size": "per_device_train_batch_size",
    "sequence_len": "max_length",
    "max_seq_length": "max_length",
    "cutoff_len": "max_length",
    "base_model": "model_name_or_path",
    "model_name": "model_name_or_path",
}


def _suggest(key: str, valid: list[str]) -> str | None:
    alias = _ALIASES.get(key.lower())
    if alias in valid:
        return alias
    close = difflib.get_close_matches(key, valid, n=1)
    return close[0] if close else None


def _explain(exc: ValidationError, path: Path) -> SclError:
    err = first_problem(exc)
    if err["type"] != "extra_forbidden":
        return validation_error(exc, path=path, count_more=True)
    loc = union_tags_dropped(err["loc"])
    owner = _model_at(loc)
    valid = sorted(owner.model_fields) if owner else []
    close = _suggest(str(loc[-1]), valid)
    hint = f"did you mean '{close}'?" if close else (f"valid keys: {', '.join(valid)}" if valid else None)
    return SclError("unknown key", path=path, field=".".join(str(p) for p in loc), hint=hint)


def load_recipe(
    path: str | PathLike[str], overrides: list[str] | tuple[str, ...] = (), *, values: dict[str, Any] | None = None
) -> Recipe:
    """Read, compose, override and validate a recipe; every mistake is one SclError naming the key. `values`
    (a program's own, e.g. the demo's paths) go over the file, and the user's `--set` overrides over them."""
    p = Path(path)
    data = _deep_merge(_read_yaml(p), values or {})
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, p) from None
    if recipe.deepspeed is not None:
        try:
            recipe.deepspeed_config()
        except SclError as exc:
            raise exc.at(field="deepspeed") from None
    return recipe


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    """The fully resolved recipe (defaults filled in), as saved with datasets and adapters."""
    return recipe.model_dump(mode="json")
