"""The synthetic chart writer behind the demo corpus: one admission (sampled first, in
sclcoder.demo.patients) put into words as a discharge summary, section by section, with the offsets of
every annotated mention and every negated (uncoded) one.

Every random draw happens in a fixed order from one `random.Random`, so a seed fixes the corpus byte for
byte; a change to that order is a change of the corpus (bump `demo.corpus.GENERATOR_VERSION`).
"""

from __future__ import annotations

import contextvars
import random
from dataclasses import dataclass

from sclcoder.demo import filler
from sclcoder.demo.conditions import BY_CODE, TAIL, Condition
from sclcoder.demo.patients import Patient, sample_patient


class _Text:
    """Accumulates note text, the offsets of annotated mentions and of negated (uncoded) ones."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[tuple[int, int, str]] = []
        self.negated: list[tuple[int, int, str]] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def template(
        self,
        template: str,
        mention: str | None = None,
        code: str | None = None,
        *,
        negated: str | None = None,
        **slots: object,
    ) -> None:
        """Add a template whose `{X}` is the mention: annotated with `code`, or recorded as a negated
        mention of the condition `negated` (which must not be coded)."""
        filled = template.format(X="\0", **slots) if slots else template.replace("{X}", "\0")
        before, sep, after = filled.partition("\0")
        self.add(before)
        if sep:
            assert mention is not None
            if self._tail().endswith(("\n", ". ", "# ")) or self.length == 0:
                mention = _cap(mention)
            if code is not None:
                self.spans.append((self.length, self.length + len(mention), code))
            if negated is not None:
                self.negated.append((self.length, self.length + len(mention), negated))
            self.add(mention)
        self.add(after)

    def _tail(self) -> str:
        return "".join(self.parts[-2:])[-2:]

    def value(self) -> str:
        return "".join(self.parts)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s[:1].islower() else s


_FIRST_NAMES = ("Brown", "Lee", "Patel", "Garcia", "Nguyen", "Smith", "Cohen", "Okafor", "Rossi", "Kim")
_FILLER_HISTORY = (
    "s/p appendectomy",
    "s/p cholecystectomy",
    "cataracts",
    "s/p right knee replacement",
    "remote tonsillectomy",
    "hearing loss",
    "s/p hernia repair",
)
_ALLERGIES = (
    "No Known Allergies / Adverse Drug Reactions",
    "Penicillins",
    "Sulfa (Sulfonamide Antibiotics)",
    "Codeine",
    "Patient recorded as having No Known Allergies to Drugs",
)
_EXAM = (
    "General: NAD, resting comfortably",
    "HEENT: MMM, oropharynx clear",
    "Neck: supple, no JVD",
    "CV: RRR, no murmurs",
    "Lungs: CTAB, no wheezes",
    "Abd: soft, NT/ND, +BS",
    "Ext: warm, no edema",
    "Neuro: A&Ox3, moving all extremities",
)


# Cues that keep a mention of an acute condition from being coded, whatever the condition: ruled out during
# the stay, or a past episode that has resolved (ICD-10-CM codes neither as the condition).
_RULED_OUT = (
    "{X} was ruled out.",
    "Initial concern for {X}, subsequently ruled out.",
    "Workup negative for {X}.",
)
_RESOLVED = ("Remote history of {X}, resolved.", "Prior episode of {X} several years ago, resolved.")
# Inpatient guidelines code a diagnosis still uncertain at discharge as if it were established, so these
# qualified problem headings are annotated like plain ones.
_UNCERTAIN = ("# Likely {X}: ", "# Presumed {X}: ", "# Probable {X}: ")


def negation_cues(cond: Condition) -> tuple[str, ...]:
    """The templates that may mention `cond` without it being coded."""
    return cond.negations + ((*_RULED_OUT, *_RESOLVED) if cond.acute else ())


# Which surface forms mentions draw from: a chart of the phrase-disjoint test split words every condition
# only with its `unseen_names`, which no other chart uses. Set for one write_chart call, read by _mention.
_UNSEEN_PHRASES = contextvars.ContextVar("unseen_phrases", default=False)


def _mention(rng: random.Random, cond: Condition) -> str:
    return rng.choice(cond.unseen_names if _UNSEEN_PHRASES.get() else cond.names)


def write_chart(rng: random.Random, *, unseen_phrases: bool = False, tail: tuple[str, ...] = ()) -> list[ChartNote]:
    """One discharge summary (and sometimes a radiology report) with annotated spans, section by section;
    with `unseen_phrases`, every mention uses the conditions' held-out surface forms; `tail`: rare or held-out
    codes the admission has besides those it draws (the corpus decides which chart gets which)."""
    token = _UNSEEN_PHRASES.set(unseen_phrases)
    try:
        return _write_chart(rng, tail)
    finally:
        _UNSEEN_PHRASES.reset(token)


def _write_chart(rng: random.Random, tail: tuple[str, ...]) -> list[ChartNote]:
    p = sample_patient(rng, tail=tail)
    t = _Text()
    # lengths of stay with a long tail: long stays make the long notes (labs by day, events by day)
    stay = rng.choice([2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 12, 16, 20, 25])
    dates = [f"{p.year if p.year else 2150}-{p.month or 1}-{p.day + i}" for i in range(min(stay, 25) + 1)]
    _header(rng, t, p)
    filler.procedures(rng, t.add)
    _present_illness(rng, t, p)
    _past_history(rng, t, p)
    filler.surgical_history(rng, t.add)
    _social_and_family(rng, t, p)
    filler.review_of_systems(rng, t.add)
    filler.exam(rng, t.add, "Physical Exam on admission", filler.vitals(rng))
    filler.results(rng, t.add, dates)
    _hospital_course(rng, t, p)
    filler.daily_events(rng, t.add, stay)
    filler.consults(rng, t.add)
    filler.inpatient_medications(rng, t.add)
    _medications(rng, t, p)
    filler.exam(rng, t.add, "Physical Exam on discharge", filler.vitals(rng))
    _discharge(rng, t, p)
    filler.instructions(rng, t.add)
    filler.follow_up(rng, t.add, f"[**Last Name (STitle) {rng.choice(_FIRST_NAMES)}**]")
    notes = [ChartNote("Discharge summary", "Report", t.value(), t.spans, t.negated)]
    if rng.random() < 0.2:
        notes.append(_radiology(rng, p))
    return notes


def _header(rng: random.Random, t: _Text, p: Patient) -> None:
    """Dates, sex, service, allergies, attending and chief complaint."""
    p.month, p.day = rng.randint(1, 12), rng.randint(1, 20)
    p.year = rng.randint(2110, 2190)
    t.add(
        f"Admission Date:  [**{p.year}-{p.month}-{p.day}**]              Discharge Date:   "
        f"[**{p.year}-{p.month}-{p.day + rng.randint(2, 8)}**]\n\n"
        f"Date of Birth:  [**{p.year - p.age}-{rng.randint(1, 12)}-{rng.randint(1, 28)}**]"
        f"             Sex:   {p.sex}\n\n"
        f"Service: {rng.choice(['MEDICINE', 'MEDICINE', 'NEUROLOGY', 'SURGERY'])}\n\n"
    )
    t.add(f"Allergies:\n{rng.choice(_ALLERGIES)}\n\nAttending:[**First Name3 (LF) {rng.randint(100, 999)}**]\n\n")
    t.add(f"Chief Complaint:\n{rng.choice(p.primary.complaint)}\n\n")


def _present_illness(rng: random.Random, t: _Text, p: Patient) -> None:
    """Age, a few comorbidities, the presenting story, maybe one negated condition."""
    # History of present illness: p.age, a few comorbidities, the presenting story.
    t.add(rng.choice(["History of Present Illness:\n", "HPI:\n", "HISTORY OF PRESENT ILLNESS:\n"]))
    intro = rng.choice(
        [
            "{age} yo {sx} with PMH of ",
            "{age} year old {sx2} with a history of ",
            "Pt is a {age} y/o {sx} with ",
            "This is a {age} yo {sx} w/ ",
        ]
    )
    t.add(intro.format(age=p.age, sx=p.sex, sx2="man" if p.sex == "M" else "woman"))
    # one comorbidity named here at most: the list below names them all (about one span per code, as MDACE)
    if rng.random() < 0.3:
        t.template("{X}", _mention(rng, p.chronic[0]), p.chronic[0].code)
        t.add(" and other chronic problems")
    else:
        t.add("several chronic medical problems")
    t.add(f" who presents with {rng.choice(p.primary.complaint)}")
    t.add(rng.choice([f" x{rng.randint(1, 5)} days.", " since yesterday.", " for the past week."]))
    filler.hpi_story(rng, t.add, p.he)
    for cond in p.negated[:1]:
        t.add(" ")
        t.template(rng.choice(negation_cues(cond)), _mention(rng, cond), negated=cond.code)
    t.add("\n\n")


def _past_history(rng: random.Random, t: _Text, p: Patient) -> None:
    """Past medical history as a list, with fillers that are not codeable conditions here."""
    # Past medical history as a list, with fillers that are not codeable conditions here.
    t.add(rng.choice(["Past Medical History:\n", "PMH:\n", "PAST MEDICAL HISTORY:\n", "Medical History:\n"]))
    pmh = [
        c
        for c in p.chronic + [e for e in p.extras if e.code in ("Z79.01", "Z79.4")]
        if rng.random() < 0.95 or c.code in TAIL  # a code of the tail is always named somewhere
    ]
    fillers = rng.sample(_FILLER_HISTORY, rng.randint(0, 2))
    items: list[Condition | str] = [*pmh, *fillers]
    rng.shuffle(items)
    for item in items:
        bullet = rng.choice(["- ", "# ", "* ", ""])
        if isinstance(item, str):
            t.add(f"{bullet}{item}\n")
            continue
        extra = ""
        if item.code in p.meds and rng.random() < 0.4:
            extra = f", on {p.meds[item.code].split(' ')[0]}"
        t.template(f"{bullet}{{X}}{extra}\n", _cap(_mention(rng, item)), item.code)
    if not items:
        t.add("None\n")
    t.add("\n")


def _social_and_family(rng: random.Random, t: _Text, p: Patient) -> None:
    """Tobacco and alcohol, living situation; family history (maybe a negated condition)."""
    t.add("Social History:\n")
    tob = next((e for e in p.extras if e.group == "tobacco"), None)
    if tob is not None:
        t.template(
            rng.choice(["{X}, 20 pack-years. ", "Patient is a {X}. ", "Tobacco: {X}. "]),
            _mention(rng, tob),
            tob.code,
        )
    else:
        t.add(rng.choice(["Never smoker. ", "Denies tobacco. ", "No tobacco use. "]))
    if any(c.code == "F10.20" for c in p.chronic):
        t.template("History of {X}, last drink two days prior. ", _mention(rng, BY_CODE["F10.20"]), "F10.20")
    else:
        t.add(rng.choice(["Occasional EtOH. ", "Denies EtOH or illicit drug use. ", "Drinks socially. "]))
    t.add(rng.choice(["Lives with wife.", "Lives alone.", "Lives with daughter.", "Resides at a nursing facility."]))
    t.add("\n\nFamily History:\n")
    family = [c for c in p.negated[1:] if any("{X}" in n and ("Father" in n or "Family" in n) for n in c.negations)]
    if family:
        cond = family[0]
        template = next(n for n in cond.negations if "Father" in n or "Family" in n)
        t.template(template, _mention(rng, cond), negated=cond.code)
    else:
        t.add(rng.choice(["Noncontributory.", "Mother with breast cancer.", "No family history of early MI."]))
    t.add("\n\n")


def _hospital_course(rng: random.Random, t: _Text, p: Patient) -> None:
    """Problem-based: acute problems first, negated ones, then chronic issues and companions."""
    # Hospital course: problem-based, p.acute first, then p.chronic issues.
    t.add(rng.choice(["Brief Hospital Course:\n", "Hospital Course:\n", "Assessment and Plan by problem:\n"]))
    t.add(f"{p.age} yo {p.sex} admitted with {rng.choice(p.primary.complaint)}.\n\n")
    for cond in p.acute:
        heading = rng.choice(["# {X}: ", "#{X}: ", "{X}: ", rng.choice(_UNCERTAIN)])
        mention = _mention(rng, cond)
        t.template(heading, _cap(mention) if heading.index("{X}") < 3 else mention, cond.code)
        t.add(rng.choice(cond.course).format(med=p.meds.get(cond.code, ""), **p.slots) + "\n")
    for cond in p.negated[1:]:
        t.template(rng.choice(negation_cues(cond)), _mention(rng, cond), negated=cond.code)
        t.add("\n")
    course_chronic = [c for c in p.chronic if c.course and rng.random() < 0.1]
    if course_chronic:
        t.add(rng.choice(["\nCHRONIC ISSUES:\n", "\nChronic problems:\n", "\n"]))
        for cond in course_chronic:
            t.template(rng.choice(["# {X}: ", "{X} - "]), _cap(_mention(rng, cond)), cond.code)
            t.add(rng.choice(cond.course).format(med=p.meds.get(cond.code, "home medications"), **p.slots) + "\n")
    anticoag = next((e for e in p.extras if e.code == "Z79.01"), None)
    if anticoag is not None and rng.random() < 0.3:
        t.template(
            rng.choice(["Continued {X}.\n", "Remains on {X} at discharge.\n"]),
            _mention(rng, anticoag),
            anticoag.code,
        )
    insulin = next((e for e in p.extras if e.code == "Z79.4"), None)
    if insulin is not None and rng.random() < 0.3:
        t.template(
            rng.choice(["History notable for {X}; continued glargine.\n", "Note {X}, resumed glargine.\n"]),
            _mention(rng, insulin),
            insulin.code,
        )
    t.add("\n")


def _medications(rng: random.Random, t: _Text, p: Patient) -> None:
    """Home and discharge medications with doses and frequencies, the changes, and the disposition."""
    home = [m for c, m in p.meds.items() if not BY_CODE[c].acute]
    taken = filler.medication_list(rng, t.add, "Medications on Admission", home)
    filler.medication_list(
        rng, t.add, "Discharge Medications", home + [p.meds[c.code] for c in p.acute if c.code in p.meds]
    )
    filler.medication_changes(rng, t.add, taken)
    t.add(f"Discharge Disposition:\n{rng.choice(['Home', 'Home With Service', 'Extended Care'])}\n\n")


def _discharge(rng: random.Random, t: _Text, p: Patient) -> None:
    """Discharge diagnoses, condition, code status and follow-up."""
    t.add(rng.choice(["Discharge Diagnosis:\n", "Discharge Diagnoses:\n", "DISCHARGE DIAGNOSES:\n"]))
    t.add(rng.choice(["Primary: ", "Primary diagnosis:\n", "PRIMARY: "]))
    t.template("{X}", _mention(rng, p.primary), p.primary.code)
    secondary = p.chronic[-1:] if rng.random() < 0.2 else []
    if secondary:
        t.add(rng.choice(["\nSecondary: ", "\n\nSecondary diagnoses:\n", "\nSECONDARY: "]))
        for i, cond in enumerate(secondary):
            t.template(("" if not i else ", ") + "{X}", _mention(rng, cond), cond.code)
    t.add(
        "\n\nDischarge Condition:\nMental Status: Clear and coherent.\nActivity Status: "
        + rng.choice(["Ambulatory - Independent", "Ambulatory - requires assistance or aid (walker or cane)"])
        + ".\n"
    )
    if p.dnr:
        t.template(rng.choice(["Code status: {X}\n", "CODE STATUS: {X}\n"]), _mention(rng, BY_CODE["Z66"]), "Z66")
    else:
        t.add(rng.choice(["Code status: Full code\n", "CODE STATUS: Full\n"]))
    t.add("\n")


def _radiology(rng: random.Random, p: Patient) -> ChartNote:
    """A chest X-ray report; pneumonia, when present, is quoted in its impression."""
    r = _Text()
    r.add(
        f"[**{p.year}-{p.month}-{p.day}**] 9:{rng.randint(10, 59)} AM\nCHEST (PA & LAT)\n\n"
        "REASON FOR THIS EXAMINATION:\n"
        f"eval for acute process\n\nFINDINGS: Heart size normal. No effusion.\n\nIMPRESSION:\n"
    )
    pna = next((c for c in p.acute if c.code == "J18.9"), None)
    if pna is not None:
        r.template(
            rng.choice(["Right lower lobe opacity consistent with {X}.", "Left basilar {X}."]),
            _mention(rng, pna),
            pna.code,
        )
    else:
        r.add("No acute cardiopulmonary process.")
    r.add("\n")
    return ChartNote("Radiology", "CHEST (PA & LAT)", r.value(), r.spans, r.negated)


@dataclass
class ChartNote:
    category: str
    description: str
    text: str
    spans: list[tuple[int, int, str]]
    negated: list[tuple[int, int, str]]
