"""The demo corpus's conditions: the table in `demo_conditions.yaml` (package data) loaded once and
checked against its schema, with the prevalence order and the companions of each condition."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sclcoder.errors import SclError


@dataclass(frozen=True)
class Condition:
    code: str
    names: tuple[str, ...]
    acute: bool
    unseen_names: tuple[str, ...] = ()
    meds: tuple[str, ...] = ()
    complaint: tuple[str, ...] = ()
    course: tuple[str, ...] = ()
    negations: tuple[str, ...] = ()
    sex: str | None = None
    group: str | None = None  # conditions of one group exclude each other


CONDITIONS_FILE = "demo_conditions.yaml"


class _ConditionSpec(BaseModel):
    """One entry of the conditions file; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    code: str
    names: list[str] = Field(min_length=1)
    unseen_names: list[str] = Field(min_length=1)
    """Surface forms used only in the phrase-disjoint test split, never in the other splits."""
    acute: bool
    meds: list[str] = []
    complaint: list[str] = []
    course: list[str] = []
    negations: list[str] = []
    sex: Literal["M", "F"] | None = None
    group: str | None = None


class _ConditionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conditions: list[_ConditionSpec] = Field(min_length=1)
    prevalence: list[str]
    companions: dict[str, str]


def load_conditions(text: str | None = None) -> tuple[tuple[Condition, ...], list[str], dict[str, str]]:
    """The conditions table, prevalence order and companions, checked: every code named in `prevalence` or
    `companions` must be a condition of the table, and no code may appear twice."""
    text = text if text is not None else resources.files("sclcoder.data").joinpath(CONDITIONS_FILE).read_text("utf-8")
    try:
        spec = _ConditionsFile.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise SclError(err["msg"], path=CONDITIONS_FILE, field=where) from None
    conditions = tuple(
        Condition(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.model_dump().items()})
        for c in spec.conditions
    )
    known = [c.code for c in conditions]
    shared = [(c.code, n) for c in conditions for n in c.unseen_names if n.lower() in {m.lower() for m in c.names}]
    if shared:
        raise SclError(f"{shared[0][1]!r} of {shared[0][0]} is both a seen and an unseen name", path=CONDITIONS_FILE)
    duplicated = {code for code in known if known.count(code) > 1}
    unknown = [code for code in [*spec.prevalence, *spec.companions, *spec.companions.values()] if code not in known]
    if duplicated or unknown:
        problem = f"codes listed twice: {sorted(duplicated)}" if duplicated else f"codes not in the table: {unknown}"
        raise SclError(problem, path=CONDITIONS_FILE)
    return conditions, spec.prevalence, spec.companions


# `{X}` marks the annotated mention; `{med}` a medication; other slots are filled with numbers.
CONDITIONS, PREVALENCE, COMPANIONS = load_conditions()
BY_CODE = {c.code: c for c in CONDITIONS}
