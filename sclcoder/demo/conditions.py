"""The demo corpus's conditions: the table in `conditions.yaml` (package data) loaded once and
checked against its schema, with the prevalence order and the companions of each condition.

The surface forms written in the table (clinical wording and shorthand) are widened with those the
ICD-10-CM tabular list gives each code (title and inclusion terms, in simple-icd-10-cm), shared
alternately between the seen names and the held-out ones, so that both test splits meet the code
system's own wording as well as ours."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sclcoder.data import codes
from sclcoder.errors import SclError, validation_error


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


CONDITIONS_FILE = "conditions.yaml"
MAX_FORM_WORDS = 5  # longer titles ("... without current pathological fracture") are not what notes say


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def says(text: str, phrase: str, *, folded: bool = False) -> bool:
    """Whether `text` holds `phrase` as whole words, case aside: how the demo decides that a note (or a
    longer name) already uses a surface form ("esophageal reflux" in "gastro-esophageal reflux disease").
    `folded`: the text is case-folded already (a corpus's worth of text is folded once, not per phrase)."""
    text = text if folded else text.casefold()
    phrase = phrase.casefold()
    start = text.find(phrase)
    while start != -1:  # str.find, then the word boundaries: far faster than a regex over megabytes
        end = start + len(phrase)
        if (start == 0 or not _word(text[start - 1])) and (end == len(text) or not _word(text[end])):
            return True
        start = text.find(phrase, start + 1)
    return False


def package_forms(code: str) -> list[str]:
    """The code's ICD-10-CM title and inclusion terms, and those of its parent subcategory, as a clinician
    might write them (`codes.clean_term`), in tabular-list order, at most MAX_FORM_WORDS words each.
    A category's terms are left out (F32's "single episode of major depression" is not F32.A), and so
    are terms that list alternatives ("cardiac, heart or myocardial failure") or qualify by a clause."""
    info = codes.lookup(code, "icd10cm")
    if info is None:
        return []
    terms = [info.description or "", *codes.inclusion_terms(code, "icd10cm")]
    if info.parent and "." in info.parent:  # a subcategory, not a category
        terms += codes.inclusion_terms(info.parent, "icd10cm")
    forms = (codes.clean_term(t) for t in terms)
    return list(
        dict.fromkeys(
            f for f in forms if len(f) >= 3 and len(f.split()) <= MAX_FORM_WORDS and not re.search(r" or |, with", f)
        )
    )


def _widened(spec: _ConditionSpec) -> _ConditionSpec:
    """The spec with the package forms it lacks shared out: the first to `names`, the next to
    `unseen_names`, and so on (a code with one new form gets it for training)."""
    known = {n.lower() for n in [*spec.names, *spec.unseen_names]}
    new = [f for f in package_forms(spec.code) if f.lower() not in known]
    names = [*spec.names, *new[0::2]]

    def inside_a_name(form: str) -> bool:  # "esophageal reflux" is read in every "gastro-esophageal reflux ..."
        return any(says(n, form) for n in names)

    held_out = [f for f in new[1::2] if not inside_a_name(f)]
    names += [f for f in new[1::2] if inside_a_name(f)]
    return spec.model_copy(update={"names": names, "unseen_names": [*spec.unseen_names, *held_out]})


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
    rare: list[str] = []
    held_out_codes: list[str] = []


@dataclass(frozen=True)
class Table:
    conditions: tuple[Condition, ...]
    prevalence: list[str]
    companions: dict[str, str]
    rare: tuple[str, ...]
    """Codes a training chart holds only now and then (a few training spans each)."""
    held_out: tuple[str, ...]
    """Codes no training chart holds (validation and test charts do)."""


def load_conditions(text: str | None = None) -> Table:
    """The conditions table, prevalence order, companions and the tail, checked: every code named anywhere must
    be a condition of the table, no code may appear twice, and the rare and held-out codes are distinct."""
    text = text if text is not None else resources.files("sclcoder.demo").joinpath(CONDITIONS_FILE).read_text("utf-8")
    try:
        spec = _ConditionsFile.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        raise validation_error(exc, path=CONDITIONS_FILE) from None
    conditions = tuple(
        Condition(**{k: tuple(v) if isinstance(v, list) else v for k, v in _widened(c).model_dump().items()})
        for c in spec.conditions
    )
    known = [c.code for c in conditions]
    shared = [(c.code, n) for c in conditions for n in c.unseen_names if n.lower() in {m.lower() for m in c.names}]
    if shared:
        raise SclError(f"{shared[0][1]!r} of {shared[0][0]} is both a seen and an unseen name", path=CONDITIONS_FILE)
    owner: dict[str, str] = {}
    for c in conditions:
        for form in {n.lower() for n in [*c.names, *c.unseen_names]}:
            if owner.setdefault(form, c.code) != c.code:
                raise SclError(f"{form!r} names both {owner[form]} and {c.code}", path=CONDITIONS_FILE)
    duplicated = {code for code in known if known.count(code) > 1}
    named = [*spec.prevalence, *spec.companions, *spec.companions.values(), *spec.rare, *spec.held_out_codes]
    unknown = [code for code in named if code not in known]
    if duplicated or unknown:
        problem = f"codes listed twice: {sorted(duplicated)}" if duplicated else f"codes not in the table: {unknown}"
        raise SclError(problem, path=CONDITIONS_FILE)
    if both := set(spec.rare) & set(spec.held_out_codes):
        raise SclError(f"codes both rare and held out: {sorted(both)}", path=CONDITIONS_FILE)
    return Table(conditions, spec.prevalence, spec.companions, tuple(spec.rare), tuple(spec.held_out_codes))


# `{X}` marks the annotated mention; `{med}` a medication; other slots are filled with numbers.
TABLE = load_conditions()
CONDITIONS, PREVALENCE, COMPANIONS = TABLE.conditions, TABLE.prevalence, TABLE.companions
TAIL = frozenset(TABLE.rare) | frozenset(TABLE.held_out)
BY_CODE = {c.code: c for c in CONDITIONS}
