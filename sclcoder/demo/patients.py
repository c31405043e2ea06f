"""The admission behind one demo chart: its conditions sampled by prevalence from the conditions table
(sclcoder.demo.conditions), its negated mentions, medications and lab values, drawn before any text is
written so that the chart writer (sclcoder.demo.charts) only has to put them into words.

The draws happen in a fixed order from the writer's `random.Random`; changing that order changes the
corpus byte for byte (bump `demo.corpus.GENERATOR_VERSION`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sclcoder.demo.conditions import BY_CODE, COMPANIONS, CONDITIONS, PREVALENCE, TAIL, Condition

_RANK = {code: i for i, code in enumerate(PREVALENCE)}
_COMPANION_ONLY = set(COMPANIONS.values())
_SPECIAL = {"Z66"} | {c.code for c in CONDITIONS if c.group == "tobacco"}


def _slots(rng: random.Random) -> dict[str, object]:
    return {
        "a1c": round(rng.uniform(6.2, 9.8), 1),
        "cr": round(rng.uniform(1.3, 3.4), 1),
        "hr": rng.choice([70, 80, 90]),
        "score": rng.randint(2, 6),
        "kg": rng.randint(58, 110),
        "tsh": round(rng.uniform(0.8, 6.5), 1),
        "bmi": rng.randint(31, 44),
        "vitd": rng.randint(8, 19),
        "hgb": round(rng.uniform(8.1, 10.9), 1),
        "lact": round(rng.uniform(2.1, 5.0), 1),
        "na": rng.randint(121, 129),
        "na2": rng.randint(132, 136),
        "k": round(rng.uniform(2.6, 3.2), 1),
        "o2": rng.randint(2, 6),
        "lipase": rng.randint(400, 3000),
        "tmax": round(rng.uniform(38.3, 39.6), 1),
    }


def _weighted_sample(rng: random.Random, pool: list[Condition], k: int) -> list[Condition]:
    """k distinct conditions, each draw weighted by 1 / prevalence rank within the pool."""
    ranked = sorted(pool, key=lambda c: _RANK[c.code])
    weights = [1.0 / (i + 1) for i in range(len(ranked))]
    out = []
    for _ in range(min(k, len(ranked))):
        i = rng.choices(range(len(ranked)), weights=weights)[0]
        out.append(ranked.pop(i))
        weights.pop(i)
    return out


@dataclass
class Patient:
    """What one chart says about one admission, sampled before any text is written."""

    sex: str
    age: int
    acute: list[Condition]
    chronic: list[Condition]
    extras: list[Condition]
    negated: list[Condition]
    dnr: bool
    slots: dict[str, object]
    meds: dict[str, str]
    year: int = 0
    month: int = 0
    day: int = 0

    @property
    def he(self) -> str:
        return "he" if self.sex == "M" else "she"

    @property
    def primary(self) -> Condition:
        return self.acute[0]


def sample_patient(rng: random.Random, *, tail: tuple[str, ...] = ()) -> Patient:
    """One admission, with the codes of the tail it is given (the corpus places them: sclcoder.demo.corpus)."""
    sex = rng.choice("MF")
    age = rng.randint(38, 92)
    acute_pool = [c for c in CONDITIONS if c.acute and c.code not in TAIL]
    chronic_pool = [
        c
        for c in CONDITIONS
        if not c.acute and c.code not in _COMPANION_ONLY | _SPECIAL | TAIL and c.sex in (None, sex)
    ]
    acute = _weighted_sample(rng, acute_pool, rng.choice([1, 2, 2, 2, 3, 3]))
    chronic = _weighted_sample(rng, chronic_pool, rng.randint(4, 10))
    for pick in (BY_CODE[code] for code in tail):
        if pick.sex in (None, sex):
            (acute if pick.acute else chronic).append(pick)
    extras: list[Condition] = []
    for cond in acute + chronic:
        companion = COMPANIONS.get(cond.code)
        if companion and rng.random() < 0.6 and BY_CODE[companion] not in extras:
            extras.append(BY_CODE[companion])
    tobacco = rng.random()
    if tobacco < 0.2:
        extras.append(BY_CODE["F17.210"])
    elif tobacco < 0.45:
        extras.append(BY_CODE["Z87.891"])
    dnr = rng.random() < (0.35 if age > 80 else 0.08)
    if dnr:
        extras.append(BY_CODE["Z66"])
    present = {c.code for c in acute + chronic + extras}
    negatable = [c for c in CONDITIONS if (c.negations or c.acute) and c.code not in present]
    negated = rng.sample(negatable, rng.randint(1, 3))
    slots = _slots(rng)
    meds = {c.code: rng.choice(c.meds) for c in acute + chronic if c.meds}
    return Patient(sex, age, acute, chronic, extras, negated, dnr, slots, meds)
