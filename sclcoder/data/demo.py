"""A synthetic discharge-summary corpus for the demo and the tests, written in MDACE layout.

The notes are made up from scratch (no MIMIC text): sections, history, hospital course, medications and
discharge diagnoses, MIMIC-style de-identification brackets and abbreviations, and *negated or family*
mentions ("CTA negative for PE", "mother with CAD") that must not be coded. Every affirmed mention of a
coded condition is annotated with its character offsets, as MDACE coders did. The output goes through
the very same MDACE reader a user runs on real data:

    OUT/data/Inpatient/ICD-10/1.0/<hadm_id>-ICD-10.json   annotations, one file per admission
    OUT/NOTEEVENTS.csv                                     note text, joined on ROW_ID = note_id
    OUT/splits/demo-{train,val,test}.csv                   HADM ids per split
    OUT/negated_mentions.jsonl                             negated or family mentions (not coded)

Generation is deterministic for a seed. Phrasing varies along several axes (synonyms and abbreviations
per condition, sentence templates, section order details, which sections mention a condition, filler
findings) so that memorising a template is not enough.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document
from sclcoder.data.readers import DISCHARGE, ReadReport, read_mdace
from sclcoder.errors import SclError
from sclcoder.files import atomic_dir

SPLITS = ("train", "val", "test")
GENERATOR_VERSION = 2  # bump when the generator changes: corpora written by another version are rebuilt
DEMO_ANNOTATIONS = Path("data/Inpatient/ICD-10/1.0")


@dataclass(frozen=True)
class Condition:
    code: str
    names: tuple[str, ...]
    acute: bool
    meds: tuple[str, ...] = ()
    complaint: tuple[str, ...] = ()
    course: tuple[str, ...] = ()
    negations: tuple[str, ...] = ()
    sex: str | None = None
    group: str | None = None  # conditions of one group exclude each other


# `{X}` marks the annotated mention; `{med}` a medication; other slots are filled with numbers.
CONDITIONS: tuple[Condition, ...] = (
    # ----------------------------------------------------------------------------- chronic comorbidities
    Condition(
        "I10",
        ("hypertension", "HTN", "essential hypertension", "high blood pressure"),
        False,
        (
            "lisinopril 20 mg daily",
            "amlodipine 5 mg daily",
            "hydrochlorothiazide 25 mg daily",
            "losartan 50 mg daily",
        ),
        course=(
            "Blood pressure well controlled on home {med}.",
            "Home {med} was held on admission for soft pressures and restarted prior to discharge.",
            "Continued {med}.",
        ),
        negations=("No history of {X}.",),
    ),
    Condition(
        "E11.9",
        (
            "type 2 diabetes mellitus",
            "T2DM",
            "diabetes mellitus type 2",
            "type II diabetes",
            "DM2",
            "non-insulin dependent diabetes",
        ),
        False,
        ("metformin 500 mg twice daily", "glipizide 5 mg daily", "metformin 1000 mg twice daily"),
        course=(
            "Home {med} held while inpatient; covered with sliding scale insulin. HbA1c {a1c}%.",
            "Glucose well controlled, resumed {med} at discharge.",
            "Last HbA1c {a1c}%; continued {med}.",
        ),
        negations=("Fasting glucose normal, no history of {X}.",),
    ),
    Condition(
        "E78.5",
        ("hyperlipidemia", "HLD", "high cholesterol", "dyslipidemia"),
        False,
        ("atorvastatin 40 mg daily", "simvastatin 20 mg daily", "pravastatin 40 mg daily"),
        course=("Continued {med}.", "On {med}; lipid panel deferred to PCP."),
    ),
    Condition(
        "I25.10",
        ("coronary artery disease", "CAD", "coronary atherosclerosis"),
        False,
        ("aspirin 81 mg daily", "metoprolol succinate 50 mg daily"),
        course=("No chest pain this admission. Continued {med}.", "Troponins negative x2. Continued {med}."),
        negations=("Father with {X}.", "Family history of premature {X}."),
    ),
    Condition(
        "I48.91",
        ("atrial fibrillation", "afib", "AF", "a-fib"),
        False,
        (
            "apixaban 5 mg twice daily",
            "metoprolol tartrate 25 mg twice daily",
            "diltiazem 120 mg daily",
            "warfarin 5 mg daily",
        ),
        course=(
            "Rate controlled on {med}; CHA2DS2-VASc {score}.",
            "Remained in sinus rhythm on telemetry. Continued {med}.",
            "Rates in the {hr}s, continued {med}.",
        ),
        negations=("Telemetry without {X}.", "No {X} on telemetry."),
    ),
    Condition(
        "I50.9",
        ("heart failure", "CHF", "congestive heart failure"),
        False,
        ("furosemide 40 mg daily", "carvedilol 6.25 mg twice daily"),
        course=(
            "Euvolemic on exam; continued {med}. Discharge weight {kg} kg.",
            "Diuresed with IV furosemide, then transitioned back to {med}.",
        ),
        negations=("BNP normal, doubt {X}.",),
    ),
    Condition(
        "J44.9",
        ("COPD", "chronic obstructive pulmonary disease"),
        False,
        ("tiotropium 18 mcg inhaled daily", "albuterol inhaler as needed", "fluticasone-salmeterol 250/50"),
        course=("No wheezing; continued {med}.", "Stable on home {med}, no exacerbation."),
    ),
    Condition(
        "J45.909",
        ("asthma", "reactive airway disease"),
        False,
        ("albuterol inhaler as needed", "montelukast 10 mg nightly"),
        course=("Continued {med}; no wheeze.",),
    ),
    Condition(
        "K21.9",
        ("GERD", "gastroesophageal reflux disease", "acid reflux", "reflux"),
        False,
        ("omeprazole 20 mg daily", "pantoprazole 40 mg daily", "famotidine 20 mg twice daily"),
        course=("Continued {med}.",),
    ),
    Condition(
        "F32.A",
        ("depression", "depressive disorder", "major depression"),
        False,
        ("sertraline 50 mg daily", "citalopram 20 mg daily", "bupropion 150 mg daily"),
        course=("Mood stable; continued {med}.", "Continued home {med}; denies SI."),
    ),
    Condition(
        "F41.9",
        ("anxiety", "anxiety disorder", "generalized anxiety"),
        False,
        ("buspirone 10 mg twice daily", "lorazepam 0.5 mg as needed"),
        course=("Continued {med}.",),
    ),
    Condition(
        "E03.9",
        ("hypothyroidism", "hypothyroid"),
        False,
        ("levothyroxine 75 mcg daily", "levothyroxine 100 mcg daily"),
        course=("TSH {tsh}; continued {med}.", "Continued {med}."),
    ),
    Condition(
        "N18.9",
        ("chronic kidney disease", "CKD", "chronic renal insufficiency"),
        False,
        course=(
            "Creatinine at baseline of {cr}. Renally dosed medications.",
            "Baseline Cr {cr}; avoided nephrotoxins.",
        ),
    ),
    Condition(
        "G47.33",
        ("obstructive sleep apnea", "OSA", "sleep apnea"),
        False,
        course=("Continued CPAP at night.", "Uses CPAP nightly, continued while inpatient."),
    ),
    Condition("E66.9", ("obesity", "obese"), False, course=("BMI {bmi}. Nutrition consulted.",)),
    Condition(
        "M19.90",
        ("osteoarthritis", "OA", "degenerative joint disease", "DJD"),
        False,
        ("acetaminophen 650 mg every 6 hours as needed",),
        course=("Pain controlled with {med}.",),
    ),
    Condition(
        "N40.0",
        ("benign prostatic hyperplasia", "BPH", "enlarged prostate"),
        False,
        ("tamsulosin 0.4 mg nightly", "finasteride 5 mg daily"),
        course=("Voiding without difficulty; continued {med}.",),
        sex="M",
    ),
    Condition(
        "M81.0",
        ("osteoporosis",),
        False,
        ("alendronate 70 mg weekly", "calcium with vitamin D"),
        course=("Continued {med}.",),
    ),
    Condition(
        "F03.90",
        ("dementia", "Alzheimer type dementia", "cognitive impairment with dementia"),
        False,
        ("donepezil 10 mg nightly", "memantine 10 mg twice daily"),
        course=("At baseline mental status per family; continued {med}. Delirium precautions.",),
    ),
    Condition(
        "G40.909",
        ("seizure disorder", "epilepsy"),
        False,
        ("levetiracetam 500 mg twice daily", "lamotrigine 100 mg twice daily"),
        course=("No seizure activity; continued {med}.",),
    ),
    Condition(
        "E55.9",
        ("vitamin D deficiency", "low vitamin D"),
        False,
        ("cholecalciferol 1000 units daily",),
        course=("25-OH vitamin D {vitd}; started {med}.",),
    ),
    Condition(
        "F17.210",
        ("current smoker", "active smoker", "current everyday smoker"),
        False,
        ("nicotine patch 21 mg daily",),
        course=("Counseled on cessation; {med} offered.",),
        group="tobacco",
    ),
    Condition("Z87.891", ("former smoker", "ex-smoker", "remote smoker"), False, group="tobacco"),
    Condition(
        "F10.20",
        ("alcohol dependence", "alcohol use disorder", "EtOH dependence"),
        False,
        ("thiamine 100 mg daily", "folic acid 1 mg daily"),
        course=("Monitored on CIWA scale without withdrawal; started {med}.",),
        negations=("Drinks rarely, no history of {X}.",),
    ),
    Condition(
        "D64.9",
        ("anemia",),
        False,
        ("ferrous sulfate 325 mg daily",),
        course=("Hgb stable at {hgb}; started {med}.", "Hemoglobin {hgb}, at baseline."),
    ),
    Condition("Z79.01", ("long-term anticoagulation", "chronic anticoagulation", "anticoagulation"), False),
    Condition("Z79.4", ("long-term insulin use", "chronic insulin therapy", "home insulin"), False),
    Condition("Z66", ("DNR", "do not resuscitate", "DNR/DNI"), False),
    # ----------------------------------------------------------------------------- acute, reason for stay
    Condition(
        "J18.9",
        ("pneumonia", "PNA", "community-acquired pneumonia", "CAP", "lobar pneumonia"),
        True,
        ("ceftriaxone and azithromycin", "levofloxacin", "cefpodoxime"),
        ("cough and fevers", "productive cough", "shortness of breath"),
        (
            "Treated with {med} with improvement in oxygen requirement.",
            "Sputum culture pending at discharge; completed course of {med}.",
        ),
        ("Chest x-ray without evidence of {X}.", "No focal consolidation to suggest {X}."),
    ),
    Condition(
        "N17.9",
        ("acute kidney injury", "AKI", "acute renal failure"),
        True,
        (),
        ("decreased urine output", "weakness and poor oral intake"),
        (
            "Creatinine peaked at {cr} and improved with IV fluids.",
            "Prerenal in setting of poor intake; Cr {cr} on admission, trended down with fluids.",
        ),
        ("Creatinine stable, no {X}.",),
    ),
    Condition(
        "N39.0",
        ("urinary tract infection", "UTI"),
        True,
        ("nitrofurantoin", "ceftriaxone", "cephalexin"),
        ("dysuria and frequency", "confusion"),
        ("Urine culture grew pan-sensitive E. coli; treated with {med}.", "Treated with {med} for 5 days."),
        ("UA was not consistent with {X}.", "UA bland, doubt {X}."),
    ),
    Condition(
        "A41.9",
        ("sepsis", "septic"),
        True,
        ("vancomycin and piperacillin-tazobactam", "cefepime"),
        ("fevers and rigors", "hypotension and fever"),
        ("Met criteria on admission with lactate {lact}; received 30 cc/kg fluids and {med}.",),
        ("Lactate normal; did not meet criteria for {X}.",),
    ),
    Condition(
        "I63.9",
        ("stroke", "CVA", "acute ischemic stroke", "cerebral infarction"),
        True,
        ("aspirin 81 mg daily and atorvastatin 80 mg",),
        ("left sided weakness", "slurred speech", "facial droop"),
        ("MRI confirmed a small infarct; neurology followed. Started {med}.",),
        ("MRI brain without evidence of acute {X}.", "Head CT negative for {X}."),
    ),
    Condition(
        "K92.2",
        ("GI bleed", "gastrointestinal bleeding", "GIB", "upper GI bleed"),
        True,
        ("pantoprazole 40 mg twice daily",),
        ("black tarry stools", "coffee ground emesis"),
        ("Transfused 2 units pRBC; EGD showed a clean-based ulcer. Started {med}.",),
        ("Guaiac negative, no signs of {X}.",),
    ),
    Condition(
        "I26.99",
        ("pulmonary embolism", "PE", "pulmonary emboli"),
        True,
        ("apixaban 10 mg twice daily for 7 days then 5 mg twice daily", "heparin drip then rivaroxaban"),
        ("pleuritic chest pain", "acute shortness of breath"),
        ("CTA showed segmental filling defects; started {med}.",),
        ("CTA chest negative for {X}.", "{X} was ruled out with CTA."),
    ),
    Condition(
        "I82.409",
        ("deep vein thrombosis", "DVT", "deep venous thrombosis"),
        True,
        ("enoxaparin bridged to warfarin", "apixaban"),
        ("leg swelling", "calf pain"),
        ("Lower extremity ultrasound confirmed the clot; started {med}.",),
        ("Lower extremity dopplers negative for {X}.", "LENIs without {X}."),
    ),
    Condition(
        "E87.1",
        ("hyponatremia", "low sodium"),
        True,
        (),
        ("confusion", "fatigue"),
        ("Na {na} on admission, improved with fluid restriction.", "Sodium corrected slowly to {na2}."),
    ),
    Condition(
        "E87.6",
        ("hypokalemia", "low potassium"),
        True,
        ("potassium chloride",),
        ("muscle cramps", "weakness"),
        ("K {k} on admission, repleted with {med}.",),
    ),
    Condition(
        "E86.0",
        ("dehydration", "volume depletion"),
        True,
        (),
        ("poor oral intake", "dizziness"),
        ("Received IV fluids with improvement.",),
    ),
    Condition(
        "J96.01",
        (
            "acute hypoxic respiratory failure",
            "hypoxemic respiratory failure",
            "acute respiratory failure with hypoxia",
        ),
        True,
        (),
        ("shortness of breath", "hypoxia"),
        ("Required {o2} L nasal cannula, weaned to room air by discharge.",),
        ("Saturating well on room air, no {X}.",),
    ),
    Condition(
        "R55",
        ("syncope", "syncopal episode", "passed out"),
        True,
        (),
        ("a fall at home", "loss of consciousness"),
        ("Orthostatics positive; telemetry unremarkable. Echo with preserved EF.",),
        ("Denies {X} or presyncope.",),
    ),
    Condition(
        "K59.00",
        ("constipation",),
        True,
        ("senna and docusate", "polyethylene glycol 17 g daily"),
        ("abdominal discomfort",),
        ("Resolved with {med}.",),
        ("No {X} or diarrhea.",),
    ),
    Condition(
        "I95.9",
        ("hypotension", "low blood pressure"),
        True,
        (),
        ("lightheadedness",),
        ("Antihypertensives held; pressures recovered with fluids.",),
    ),
    Condition(
        "R07.9",
        ("chest pain", "chest discomfort"),
        True,
        (),
        ("chest pressure",),
        ("Troponins negative x2 and ECG without ischemic changes.",),
        ("Denies {X}.", "No {X}."),
    ),
    Condition(
        "K85.90",
        ("acute pancreatitis", "pancreatitis"),
        True,
        (),
        ("epigastric pain", "nausea and vomiting"),
        ("Lipase {lipase}. Managed with bowel rest, IV fluids and pain control.",),
        ("Lipase normal, no evidence of {X}.",),
    ),
    Condition(
        "L03.90",
        ("cellulitis",),
        True,
        ("cefazolin then cephalexin", "vancomycin then doxycycline"),
        ("leg redness and swelling",),
        ("Erythema receded with {med}.",),
        ("No signs of {X}.",),
    ),
    Condition(
        "R50.9",
        ("fever", "febrile"),
        True,
        (),
        ("fevers",),
        ("Tmax {tmax}; cultures without growth.",),
        ("Afebrile, denies {X}.",),
    ),
)

BY_CODE = {c.code: c for c in CONDITIONS}
# Most to least common, as in inpatient coding: a few codes carry most of the volume and a long tail is
# rare (which is what makes macro-F1 hard and what synthesised spans are for). Sampling weight ~ 1/rank.
PREVALENCE = [
    "I10",
    "E78.5",
    "E11.9",
    "I25.10",
    "K21.9",
    "N18.9",
    "I48.91",
    "F32.A",
    "E03.9",
    "E66.9",
    "J44.9",
    "D64.9",
    "F41.9",
    "G47.33",
    "I50.9",
    "M19.90",
    "J45.909",
    "N40.0",
    "F03.90",
    "M81.0",
    "F10.20",
    "E55.9",
    "G40.909",
    "J18.9",
    "N17.9",
    "A41.9",
    "N39.0",
    "E87.1",
    "J96.01",
    "E86.0",
    "R07.9",
    "E87.6",
    "I63.9",
    "K92.2",
    "R55",
    "I26.99",
    "L03.90",
    "I82.409",
    "K59.00",
    "I95.9",
    "R50.9",
    "K85.90",
]
_RANK = {code: i for i, code in enumerate(PREVALENCE)}
# Conditions that travel with another one (anticoagulation with AF/VTE, insulin with diabetes).
COMPANIONS = {"I48.91": "Z79.01", "I26.99": "Z79.01", "I82.409": "Z79.01", "E11.9": "Z79.4"}
_COMPANION_ONLY = set(COMPANIONS.values())
_SPECIAL = {"Z66"} | {c.code for c in CONDITIONS if c.group == "tobacco"}


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


def _mention(rng: random.Random, cond: Condition) -> str:
    return rng.choice(cond.names)


def _chart(rng: random.Random) -> list[_Note]:
    """One discharge summary (and sometimes a radiology report) with annotated spans."""
    sex = rng.choice("MF")
    he = "he" if sex == "M" else "she"
    age = rng.randint(38, 92)
    acute_pool = [c for c in CONDITIONS if c.acute]
    chronic_pool = [
        c for c in CONDITIONS if not c.acute and c.code not in _COMPANION_ONLY | _SPECIAL and c.sex in (None, sex)
    ]
    acute = _weighted_sample(rng, acute_pool, rng.choice([1, 1, 1, 2, 2, 3]))
    chronic = _weighted_sample(rng, chronic_pool, rng.randint(1, 6))
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
    negated = rng.sample([c for c in CONDITIONS if c.negations and c.code not in present], rng.randint(1, 3))
    slots = _slots(rng)
    meds = {c.code: rng.choice(c.meds) for c in acute + chronic if c.meds}

    t = _Text()
    month, day = rng.randint(1, 12), rng.randint(1, 20)
    year = rng.randint(2110, 2190)
    t.add(
        f"Admission Date:  [**{year}-{month}-{day}**]              Discharge Date:   "
        f"[**{year}-{month}-{day + rng.randint(2, 8)}**]\n\n"
        f"Date of Birth:  [**{year - age}-{rng.randint(1, 12)}-{rng.randint(1, 28)}**]"
        f"             Sex:   {sex}\n\n"
        f"Service: {rng.choice(['MEDICINE', 'MEDICINE', 'NEUROLOGY', 'SURGERY'])}\n\n"
    )
    t.add(f"Allergies:\n{rng.choice(_ALLERGIES)}\n\nAttending:[**First Name3 (LF) {rng.randint(100, 999)}**]\n\n")
    primary = acute[0]
    t.add(f"Chief Complaint:\n{rng.choice(primary.complaint)}\n\n")

    # History of present illness: age, a few comorbidities, the presenting story.
    t.add("History of Present Illness:\n")
    intro = rng.choice(
        [
            "{age} yo {sx} with PMH of ",
            "{age} year old {sx2} with a history of ",
            "Pt is a {age} y/o {sx} with ",
            "This is a {age} yo {sx} w/ ",
        ]
    )
    t.add(intro.format(age=age, sx=sex, sx2="man" if sex == "M" else "woman"))
    in_hpi = [c for c in chronic if rng.random() < 0.6] or chronic[:1]
    for i, cond in enumerate(in_hpi):
        if i:
            t.add(" and " if i == len(in_hpi) - 1 else ", ")
        t.template("{X}", _mention(rng, cond), cond.code)
    t.add(f" who presents with {rng.choice(primary.complaint)}")
    t.add(rng.choice([f" x{rng.randint(1, 5)} days. ", " since yesterday. ", " for the past week. "]))
    t.add(
        rng.choice(
            [
                f"In the ED, initial vitals T {rng.randint(97, 101)}.{rng.randint(0, 9)} "
                f"HR {rng.randint(62, 118)} BP {rng.randint(92, 168)}/{rng.randint(50, 96)} "
                f"RR {rng.randint(14, 26)} O2 sat "
                f"{rng.randint(88, 99)}% RA. ",
                f"{_cap(he)} was seen in the ED where labs were notable for WBC {rng.randint(4, 19)}.",
                "ED course notable for IV fluids and labs as below. ",
            ]
        )
    )
    for cond in negated[:1]:
        t.add(" ")
        t.template(rng.choice(cond.negations), _mention(rng, cond), negated=cond.code)
    t.add("\n\n")

    # Past medical history as a list, with fillers that are not codeable conditions here.
    t.add("Past Medical History:\n")
    pmh = [c for c in chronic + [e for e in extras if e.code in ("Z79.01", "Z79.4")] if rng.random() < 0.85]
    fillers = rng.sample(_FILLER_HISTORY, rng.randint(0, 2))
    items: list[Condition | str] = [*pmh, *fillers]
    rng.shuffle(items)
    for item in items:
        bullet = rng.choice(["- ", "# ", "* ", ""])
        if isinstance(item, str):
            t.add(f"{bullet}{item}\n")
            continue
        extra = ""
        if item.code in meds and rng.random() < 0.4:
            extra = f", on {meds[item.code].split(' ')[0]}"
        t.template(f"{bullet}{{X}}{extra}\n", _cap(_mention(rng, item)), item.code)
    if not items:
        t.add("None\n")
    t.add("\n")

    t.add("Social History:\n")
    tob = next((e for e in extras if e.group == "tobacco"), None)
    if tob is not None:
        t.template(
            rng.choice(["{X}, 20 pack-years. ", "Patient is a {X}. ", "Tobacco: {X}. "]),
            _mention(rng, tob),
            tob.code,
        )
    else:
        t.add(rng.choice(["Never smoker. ", "Denies tobacco. ", "No tobacco use. "]))
    if any(c.code == "F10.20" for c in chronic):
        t.template("History of {X}, last drink two days prior. ", _mention(rng, BY_CODE["F10.20"]), "F10.20")
    else:
        t.add(rng.choice(["Occasional EtOH. ", "Denies EtOH or illicit drug use. ", "Drinks socially. "]))
    t.add(rng.choice(["Lives with wife.", "Lives alone.", "Lives with daughter.", "Resides at a nursing facility."]))
    t.add("\n\nFamily History:\n")
    family = [c for c in negated[1:] if any("{X}" in n and ("Father" in n or "Family" in n) for n in c.negations)]
    if family:
        cond = family[0]
        template = next(n for n in cond.negations if "Father" in n or "Family" in n)
        t.template(template, _mention(rng, cond), negated=cond.code)
    else:
        t.add(rng.choice(["Noncontributory.", "Mother with breast cancer.", "No family history of early MI."]))
    t.add("\n\n")

    t.add("Physical Exam:\n")
    t.add(
        f"VS: T {rng.randint(97, 100)}.{rng.randint(0, 9)} BP {rng.randint(98, 160)}/{rng.randint(55, 92)} "
        f"HR {rng.randint(60, 110)} RR {rng.randint(14, 24)} {rng.randint(90, 100)}% RA\n"
    )
    t.add("\n".join(rng.sample(_EXAM, rng.randint(3, 6))) + "\n\n")
    t.add("Pertinent Results:\n")
    t.add(
        f"[**{year}-{month}-{day}**] 07:10AM BLOOD WBC-{rng.randint(4, 18)}.{rng.randint(0, 9)} "
        f"Hgb-{rng.randint(8, 15)}.{rng.randint(0, 9)} Plt-{rng.randint(120, 420)}\n"
    )
    t.add(
        f"[**{year}-{month}-{day}**] 07:10AM BLOOD Glucose-{rng.randint(80, 240)} BUN-{rng.randint(8, 48)} "
        f"Creat-{rng.randint(0, 3)}.{rng.randint(1, 9)} Na-{rng.randint(126, 144)} "
        f"K-{rng.randint(3, 5)}.{rng.randint(0, 9)}\n\n"
    )

    # Hospital course: problem-based, acute first, then chronic issues.
    t.add(rng.choice(["Brief Hospital Course:\n", "Hospital Course:\n"]))
    t.add(f"{age} yo {sex} admitted with {rng.choice(primary.complaint)}.\n\n")
    for cond in acute:
        t.template(rng.choice(["# {X}: ", "#{X}: ", "{X}: "]), _cap(_mention(rng, cond)), cond.code)
        t.add(rng.choice(cond.course).format(med=meds.get(cond.code, ""), **slots) + "\n")
    for cond in negated[1:]:
        t.template(rng.choice(cond.negations), _mention(rng, cond), negated=cond.code)
        t.add("\n")
    course_chronic = [c for c in chronic if c.course and rng.random() < 0.6]
    if course_chronic:
        t.add(rng.choice(["\nCHRONIC ISSUES:\n", "\nChronic problems:\n", "\n"]))
        for cond in course_chronic:
            t.template(rng.choice(["# {X}: ", "{X} - "]), _cap(_mention(rng, cond)), cond.code)
            t.add(rng.choice(cond.course).format(med=meds.get(cond.code, "home medications"), **slots) + "\n")
    anticoag = next((e for e in extras if e.code == "Z79.01"), None)
    if anticoag is not None:
        t.template(
            rng.choice(["Continued {X}.\n", "Remains on {X} at discharge.\n"]),
            _mention(rng, anticoag),
            anticoag.code,
        )
    insulin = next((e for e in extras if e.code == "Z79.4"), None)
    if insulin is not None:
        t.template(
            rng.choice(["History notable for {X}; continued glargine.\n", "Note {X}, resumed glargine.\n"]),
            _mention(rng, insulin),
            insulin.code,
        )
    t.add("\n")

    t.add("Medications on Admission:\n")
    home = [m for c, m in meds.items() if not BY_CODE[c].acute]
    for i, med in enumerate(home or ["None"], start=1):
        t.add(f"{i}. {med}\n")
    t.add("\nDischarge Medications:\n")
    for i, med in enumerate(home + [meds[c.code] for c in acute if c.code in meds] or ["None"], start=1):
        t.add(f"{i}. {med}\n")
    t.add(f"\nDischarge Disposition:\n{rng.choice(['Home', 'Home With Service', 'Extended Care'])}\n\n")

    t.add("Discharge Diagnosis:\n")
    t.add(rng.choice(["Primary: ", "Primary diagnosis:\n", "PRIMARY: "]))
    for i, cond in enumerate(acute):
        t.template(("" if not i else ", ") + "{X}", _mention(rng, cond), cond.code)
    secondary = [c for c in chronic if rng.random() < 0.6]
    if secondary:
        t.add(rng.choice(["\nSecondary: ", "\n\nSecondary diagnoses:\n", "\nSECONDARY: "]))
        for i, cond in enumerate(secondary):
            t.template(("" if not i else ", ") + "{X}", _mention(rng, cond), cond.code)
    t.add(
        "\n\nDischarge Condition:\nMental Status: Clear and coherent.\nActivity Status: "
        + rng.choice(["Ambulatory - Independent", "Ambulatory - requires assistance or aid (walker or cane)"])
        + ".\n"
    )
    if dnr:
        t.template(rng.choice(["Code status: {X}\n", "CODE STATUS: {X}\n"]), _mention(rng, BY_CODE["Z66"]), "Z66")
    else:
        t.add(rng.choice(["Code status: Full code\n", "CODE STATUS: Full\n"]))
    t.add(
        "\nFollowup Instructions:\n"
        f"Please follow up with Dr. [**Last Name (STitle) {rng.choice(_FIRST_NAMES)}**] "
        f"in {rng.randint(1, 3)} weeks.\n"
    )
    notes = [_Note("Discharge summary", "Report", t.value(), t.spans, t.negated)]

    if rng.random() < 0.2:
        r = _Text()
        r.add(
            f"[**{year}-{month}-{day}**] 9:{rng.randint(10, 59)} AM\nCHEST (PA & LAT)\n\n"
            "REASON FOR THIS EXAMINATION:\n"
            f"eval for acute process\n\nFINDINGS: Heart size normal. No effusion.\n\nIMPRESSION:\n"
        )
        pna = next((c for c in acute if c.code == "J18.9"), None)
        if pna is not None:
            r.template(
                rng.choice(["Right lower lobe opacity consistent with {X}.", "Left basilar {X}."]),
                _mention(rng, pna),
                pna.code,
            )
        else:
            r.add("No acute cardiopulmonary process.")
        r.add("\n")
        notes.append(_Note("Radiology", "CHEST (PA & LAT)", r.value(), r.spans, r.negated))
    return notes


@dataclass
class _Note:
    category: str
    description: str
    text: str
    spans: list[tuple[int, int, str]]
    negated: list[tuple[int, int, str]]


@dataclass
class DemoSummary:
    out_dir: Path
    charts: int
    notes: int
    spans: int
    codes: int
    splits: dict[str, int]


def generate_demo(out_dir: str | PathLike[str], *, n_charts: int = 300, seed: int = 13) -> DemoSummary:
    """Write the demo corpus in MDACE layout (atomically: an existing corpus is replaced whole)."""
    rng = random.Random(seed)
    charts, texts, negations = [], [], []
    n_notes = n_spans = 0
    codes_seen: set[str] = set()
    for i in range(n_charts):
        hadm_id, note_id = 300000 + i, 5_000_000 + 10 * i
        chart = {"hadm_id": hadm_id, "comment": "", "notes": []}
        for nid, note in enumerate(_chart(rng), start=note_id):
            texts.append((nid, hadm_id, note.category, note.description, note.text))
            negations.extend({"note_id": nid, "begin": b, "end": e, "code": c} for b, e, c in note.negated)
            n_notes += 1
            chart["notes"].append(
                {
                    "note_id": nid,
                    "category": note.category,
                    "description": note.description,
                    "annotations": [
                        {
                            "begin": b,
                            "end": e,
                            "code": code,
                            "code_system": "ICD-10-CM",
                            "description": codes_mod.describe(code, CodeSystem.ICD10CM),
                            "type": "Human",
                        }
                        for b, e, code in sorted(note.spans)
                    ],
                }
            )
            n_spans += len(note.spans)
            codes_seen |= {code for _, _, code in note.spans}
        charts.append(chart)

    order = [c["hadm_id"] for c in charts]
    random.Random(seed + 1).shuffle(order)
    n_test = n_val = max(1, round(0.15 * n_charts))
    split_ids = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }

    with atomic_dir(out_dir) as tmp:
        ann_dir = tmp / DEMO_ANNOTATIONS
        ann_dir.mkdir(parents=True)
        for chart in charts:
            (ann_dir / f"{chart['hadm_id']}-ICD-10.json").write_text(json.dumps(chart, indent=1), encoding="utf-8")
        with open(tmp / "NOTEEVENTS.csv", "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION", "ISERROR", "TEXT"]
            )
            for nid, hadm_id, category, description, body in texts:
                writer.writerow([nid, hadm_id - 200000, hadm_id, "", category, description, "", body])
        with open(tmp / "negated_mentions.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in negations)
        (tmp / "splits").mkdir()
        for name in SPLITS:
            (tmp / "splits" / f"demo-{name}.csv").write_text(
                "".join(f"{h}\n" for h in sorted(split_ids[name])), encoding="utf-8"
            )
        manifest = {"generator_version": GENERATOR_VERSION, "charts": n_charts, "seed": seed}
        (tmp / "demo.json").write_text(json.dumps(manifest) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(
            f"Synthetic sclcoder demo corpus (seed {seed}, {n_charts} admissions). Not patient data.\n"
            "Read it with the MDACE reader, e.g.\n\n"
            "    sclcoder data convert demo --corpus THIS_DIR --split test -o demo-test.jsonl\n",
            encoding="utf-8",
        )
    return DemoSummary(
        Path(out_dir), n_charts, n_notes, n_spans, len(codes_seen), {k: len(v) for k, v in split_ids.items()}
    )


def demo_paths(corpus: str | PathLike[str]) -> tuple[Path, Path, Path]:
    """(annotation dir, NOTEEVENTS.csv, splits dir) of a generated demo corpus."""
    root = Path(corpus)
    return root / DEMO_ANNOTATIONS, root / "NOTEEVENTS.csv", root / "splits"


def read_demo(
    corpus: str | PathLike[str],
    *,
    split: str | None = None,
    all_categories: bool = False,
    report: ReadReport | None = None,
) -> list[Document]:
    """Documents of a generated demo corpus (one split, or all), via the MDACE reader."""
    annotations, noteevents, splits = demo_paths(corpus)
    if not annotations.is_dir() or not noteevents.is_file():
        raise SclError("not a demo corpus (make one with `sclcoder data demo DIR`)", path=corpus)
    if split is not None and split not in SPLITS:
        raise SclError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}", field="split")
    return read_mdace(
        annotations,
        noteevents,
        split=splits / f"demo-{split}.csv" if split else None,
        categories=None if all_categories else (DISCHARGE,),
        report=report,
    )


def ensure_demo(corpus: str | PathLike[str], *, n_charts: int = 300, seed: int = 13) -> Path:
    """The demo corpus at `corpus`, generated when missing or written by an older generator.

    A corpus of this generator but another size or seed is an error rather than overwritten: results
    computed on it would silently stop being comparable.
    """
    root = Path(corpus)
    want = {"generator_version": GENERATOR_VERSION, "charts": n_charts, "seed": seed}
    try:
        have = json.loads((root / "demo.json").read_text())
    except (OSError, json.JSONDecodeError):
        have = None
    if have == want:
        return root
    if have and have.get("generator_version") == GENERATOR_VERSION:
        raise SclError(
            f"this demo corpus has {have.get('charts')} charts with seed {have.get('seed')}, the recipe asks for "
            f"{n_charts} with seed {seed}; point demo.corpus at another directory or delete this one",
            path=root / "demo.json",
        )
    if root.exists() and any(root.iterdir()) and not (root / "NOTEEVENTS.csv").is_file():
        raise SclError("exists and is not a demo corpus; refusing to overwrite it", path=root)
    generate_demo(root, n_charts=n_charts, seed=seed)
    return root
