"""What discharge summaries are mostly made of and what carries no code: review of systems, surgical history,
exams, lab tables by day, microbiology, imaging reads, procedures, medication lists with doses and
frequencies, discharge instructions and follow-up. The chart writer (sclcoder.demo.charts) puts these
between the sections that name conditions, so that a note has the length and density of a real discharge
summary. None of this text may name a condition of the table (tests/test_demo.py checks every generated
note): a mention nobody annotated would be a wrong label.

Every random draw comes from the writer's `random.Random`, in a fixed order.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Add = Callable[[str], None]

_ROS_NEGATIVE = (
    "chills", "night sweats", "headache", "rhinorrhea", "sore throat", "nausea", "vomiting", "diarrhea",
    "dysuria", "hematuria", "rash", "myalgias", "visual changes", "focal weakness", "numbness", "palpitations",
)  # fmt: skip
_SURGERIES = (
    "s/p laparoscopic cholecystectomy", "s/p appendectomy", "s/p total knee replacement, right", "s/p TURP",
    "s/p cataract surgery, bilateral", "s/p hernia repair", "s/p tonsillectomy as a child", "s/p C-section x2",
    "s/p lumbar laminectomy", "s/p rotator cuff repair", "s/p hysterectomy", "s/p carpal tunnel release",
)  # fmt: skip
_HOME_MEDS = (
    "Aspirin 81 mg PO DAILY", "Docusate Sodium 100 mg PO BID", "Senna 8.6 mg PO BID:PRN", "Acetaminophen 650 mg "
    "PO Q6H:PRN pain", "Pantoprazole 40 mg PO Q24H", "Atorvastatin 40 mg PO QPM", "Metoprolol Succinate XL 50 mg "
    "PO DAILY", "Multivitamins 1 TAB PO DAILY", "Cholecalciferol 1000 UNIT PO DAILY", "Calcium Carbonate 500 mg PO "
    "BID", "Polyethylene Glycol 17 g PO DAILY:PRN", "Cyanocobalamin 1000 mcg PO DAILY", "Folic Acid 1 mg PO DAILY",
    "Tamsulosin 0.4 mg PO QHS", "Magnesium Oxide 400 mg PO BID", "Fluticasone Propionate NASAL 1 SPRY NU DAILY",
    "Loratadine 10 mg PO DAILY", "Melatonin 3 mg PO QHS:PRN sleep", "Gabapentin 300 mg PO TID", "Sertraline 50 mg "
    "PO DAILY", "Furosemide 20 mg PO DAILY", "Potassium Chloride 20 mEq PO DAILY", "Oxycodone 5 mg PO Q6H:PRN pain",
    "Lidocaine 5% Patch 1 PTCH TD QAM", "Ferrous Sulfate 325 mg PO DAILY", "Thiamine 100 mg PO DAILY",
    "Artificial Tears 1-2 DROP BOTH EYES PRN", "Nystatin Oral Suspension 5 mL PO QID",
)  # fmt: skip
_INPATIENT_MEDS = (
    "Heparin 5000 UNIT SC TID", "Ondansetron 4 mg IV Q8H:PRN nausea", "Sodium Chloride 0.9% Flush 3-10 mL IV Q8H",
    "Insulin Lispro sliding scale", "Lorazepam 0.5 mg PO Q6H:PRN", "Ceftriaxone 1 gm IV Q24H",
    "Vancomycin 1000 mg IV Q12H", "Piperacillin-Tazobactam 4.5 g IV Q8H", "Albuterol 0.083% Neb Soln 1 NEB IH Q4H:PRN",
)  # fmt: skip
_EXAM = {
    "General": ("NAD, resting comfortably", "alert, conversant, in no distress", "elderly, frail-appearing, NAD"),
    "HEENT": ("NCAT, EOMI, MMM, oropharynx clear", "sclera anicteric, dry mucous membranes", "PERRL, MMM"),
    "Neck": ("supple, no JVD, no LAD", "JVP not elevated", "supple, full ROM"),
    "CV": ("RRR, normal S1/S2, no murmurs", "regular rate, 2/6 systolic murmur at RUSB", "irregular, no rubs"),
    "Lungs": ("CTAB, no wheezes, rales or rhonchi", "bibasilar crackles", "decreased breath sounds at the bases"),
    "Abdomen": ("soft, NT/ND, +BS, no HSM", "soft, mild epigastric tenderness", "soft, non-distended"),
    "Ext": ("warm, well perfused, no edema", "1+ pitting edema to the shins", "trace bilateral ankle edema"),
    "Skin": ("no rashes or lesions", "intact, no breakdown", "scattered ecchymoses on the forearms"),
    "Neuro": ("A&Ox3, CN II-XII intact, strength 5/5 throughout", "oriented x2, moves all extremities", "nonfocal"),
}
_IMAGING = (
    ("CHEST (PORTABLE AP)", ("Low lung volumes with bibasilar atelectasis.", "Heart size is top normal.",
     "No pneumothorax.", "Stable mediastinal contours.", "Degenerative changes of the thoracic spine.")),
    ("CT HEAD W/O CONTRAST", ("No acute intracranial hemorrhage or mass effect.", "Chronic small vessel ischemic "
     "changes.", "Ventricles and sulci are age-appropriate.", "The visualized paranasal sinuses are clear.")),
    ("CT ABD & PELVIS WITH CONTRAST", ("Colonic diverticulosis without diverticulitis.", "Simple renal cysts.",
     "No free air or fluid collection.", "Normal appendix.", "Atherosclerotic calcification of the aorta.")),
    ("TRANSTHORACIC ECHOCARDIOGRAM", ("Left ventricular wall thickness is normal.", "Mild mitral regurgitation.",
     "Estimated pulmonary artery systolic pressure is normal.", "No pericardial effusion.")),
    ("RENAL U.S.", ("Normal sized kidneys without hydronephrosis.", "Bladder is decompressed.",
     "No renal calculi are seen.")),
    ("LOWER EXTREMITY VENOUS DUPLEX", ("Normal compressibility and flow of the femoral and popliteal veins.",
     "No Baker's cyst.")),
)  # fmt: skip
_PROCEDURES = (
    "None", "PICC line placement", "Upper endoscopy", "Paracentesis", "Lumbar puncture", "Right IJ central line",
    "Foley catheter placement", "Thoracentesis", "Arterial line placement",
)  # fmt: skip
_CONSULTS = ("Physical therapy", "Nutrition", "Social work", "Case management", "Pharmacy", "Occupational therapy")
_INSTRUCTIONS = (
    "It was a pleasure taking care of you at [**Hospital1 18**]. You were admitted for the problems described "
    "above, were treated, and have improved.",
    "Please take all of your medications as prescribed. Some of your medications were changed during this "
    "admission; the list above shows what to take from now on.",
    "Please call your doctor or return to the emergency department if you have a temperature above 100.4, "
    "shortness of breath, new confusion, bleeding, or any other symptom that concerns you.",
    "Please continue to walk several times a day and use the incentive spirometer ten times an hour while awake.",
    "Please weigh yourself every morning and call your doctor if your weight goes up by more than three pounds.",
    "Do not drive until you have discussed it with your primary care doctor.",
    "A visiting nurse will come to your home to check your vital signs and review your medications.",
    "Please keep your follow-up appointments listed below; bring this paperwork with you.",
)


def _v(rng: random.Random, low: float, high: float, digits: int = 1) -> str:
    value = rng.uniform(low, high)
    return f"{value:.{digits}f}" if digits else str(round(value))


def review_of_systems(rng: random.Random, add: Add) -> None:
    add("Review of Systems:\n(+) Per HPI\n(-) Denies " + ", ".join(rng.sample(_ROS_NEGATIVE, rng.randint(4, 9))))
    add(". All other systems reviewed and negative.\n\n")


def surgical_history(rng: random.Random, add: Add) -> None:
    add("Past Surgical History:\n")
    items = rng.sample(_SURGERIES, rng.randint(0, 4))
    add("".join(f"- {item}\n" for item in items) if items else "None\n")
    add("\n")


def exam(rng: random.Random, add: Add, title: str, vitals: str) -> None:
    add(f"{title}:\n{vitals}\n")
    for system, findings in _EXAM.items():
        if rng.random() < 0.8:
            add(f"{system}: {rng.choice(findings)}\n")
    add("\n")


def vitals(rng: random.Random) -> str:
    return (
        f"VS: T {_v(rng, 97.0, 100.4)} BP {_v(rng, 96, 168, 0)}/{_v(rng, 52, 94, 0)} HR {_v(rng, 58, 112, 0)} "
        f"RR {_v(rng, 12, 24, 0)} O2 sat {_v(rng, 89, 100, 0)}% {rng.choice(['RA', '2L NC', '3L NC', 'RA'])}"
    )


def lab_day(rng: random.Random, add: Add, date: str) -> None:
    """One morning's labs, in the layout of MIMIC's pertinent results."""
    stamp = f"[**{date}**] {rng.randint(4, 7):02d}:{rng.randint(0, 59):02d}AM BLOOD "
    panels = [
        f"WBC-{_v(rng, 3.5, 16)} RBC-{_v(rng, 2.9, 5.1, 2)} Hgb-{_v(rng, 8.5, 15.5)} Hct-{_v(rng, 26, 46)} "
        f"MCV-{_v(rng, 78, 101, 0)} MCH-{_v(rng, 26, 34)} MCHC-{_v(rng, 31, 36)} RDW-{_v(rng, 12, 18)} "
        f"Plt Ct-{_v(rng, 110, 420, 0)}",
        f"Neuts-{_v(rng, 50, 88)} Lymphs-{_v(rng, 5, 35)} Monos-{_v(rng, 2, 10)} Eos-{_v(rng, 0, 5)} "
        f"Baso-{_v(rng, 0, 1)}",
        f"PT-{_v(rng, 10.5, 16)} PTT-{_v(rng, 24, 40)} INR(PT)-{_v(rng, 0.9, 1.6)}",
        f"Glucose-{_v(rng, 70, 260, 0)} UreaN-{_v(rng, 6, 60, 0)} Creat-{_v(rng, 0.5, 3.5)} Na-{_v(rng, 128, 146, 0)} "
        f"K-{_v(rng, 3.1, 5.4)} Cl-{_v(rng, 94, 110, 0)} HCO3-{_v(rng, 18, 31, 0)} AnGap-{_v(rng, 8, 20, 0)}",
        f"ALT-{_v(rng, 8, 90, 0)} AST-{_v(rng, 10, 95, 0)} AlkPhos-{_v(rng, 40, 180, 0)} TotBili-{_v(rng, 0.2, 2.1)}",
        f"Calcium-{_v(rng, 7.8, 10.4)} Phos-{_v(rng, 2.2, 4.9)} Mg-{_v(rng, 1.5, 2.6)}",
    ]
    for panel in panels:
        if panel is panels[0] or rng.random() < 0.7:
            add(stamp + panel + "\n")


def results(rng: random.Random, add: Add, dates: list[str]) -> None:
    """Labs on admission and over the stay, microbiology and imaging reads."""
    add("Pertinent Results:\nADMISSION LABS:\n")
    lab_day(rng, add, dates[0])
    if rng.random() < 0.6:
        add(f"[**{dates[0]}**] 08:15PM URINE Color-Yellow Appear-Clear SpecGr-{_v(rng, 1.005, 1.030, 3)} "
            f"pH-{_v(rng, 5, 7.5)} Protein-NEG Glucose-NEG Ketone-NEG Bilirub-NEG Leuks-NEG\n")  # fmt: skip
    add("\nLABS DURING THE STAY:\n" if len(dates) > 2 else "\n")
    for date in dates[1:-1]:
        lab_day(rng, add, date)
    add("\nDISCHARGE LABS:\n")
    lab_day(rng, add, dates[-1])
    add("\nMICROBIOLOGY:\n")
    for kind in rng.sample(["Blood Culture, Routine", "URINE CULTURE", "MRSA SCREEN", "C. difficile PCR"], 2):
        add(f"[**{dates[0]}**] {kind}: {rng.choice(['NO GROWTH.', 'Final: no growth.', 'Negative.'])}\n")
    add("\nIMAGING:\n")
    for title, findings in rng.sample(_IMAGING, rng.randint(1, 4)):
        picked = rng.sample(findings, rng.randint(2, len(findings)))
        add(f"[**{rng.choice(dates)}**] {title}: FINDINGS: {' '.join(picked)} IMPRESSION: {picked[0]}\n")
    add("\n")


def procedures(rng: random.Random, add: Add) -> None:
    add(f"Major Surgical or Invasive Procedure:\n{rng.choice(_PROCEDURES)}\n\n")


def consults(rng: random.Random, add: Add) -> None:
    picked = rng.sample(_CONSULTS, rng.randint(1, 3))
    add("Consults: " + ", ".join(picked) + " saw the patient; recommendations were followed.\n\n")


def medication_list(rng: random.Random, add: Add, title: str, condition_meds: list[str]) -> list[str]:
    """A numbered list: the medications of the patient's conditions and others, with doses and frequencies."""
    meds = [*condition_meds, *rng.sample(_HOME_MEDS, rng.randint(3, 10))]
    add(f"{title}:\n" + "".join(f"{i}. {m}\n" for i, m in enumerate(meds, start=1)) + "\n")
    return meds


def inpatient_medications(rng: random.Random, add: Add) -> None:
    add("Medications given in hospital included " + ", ".join(rng.sample(_INPATIENT_MEDS, rng.randint(2, 5))))
    add(".\n\n")


def medication_changes(rng: random.Random, add: Add, home: list[str]) -> None:
    add("Medication changes:\n")
    for med in rng.sample(home, min(len(home), rng.randint(1, 3))):
        add(f"- {rng.choice(['STOP', 'CHANGE', 'HOLD until follow-up'])}: {med.split(' ')[0]}\n")
    add("\n")


def instructions(rng: random.Random, add: Add) -> None:
    add("Discharge Instructions:\n")
    add("\n\n".join(rng.sample(_INSTRUCTIONS, rng.randint(3, 6))) + "\n\n")


def follow_up(rng: random.Random, add: Add, doctor: str) -> None:
    add("Followup Instructions:\n")
    for clinic in rng.sample(["PRIMARY CARE", "CARDIOLOGY", "NEPHROLOGY", "PULMONARY", "RADIOLOGY", "LAB"], 2):
        add(f"Department: {clinic}\nWhen: {rng.choice(['MONDAY', 'TUESDAY', 'THURSDAY'])} [**2150-1-1**] at "
            f"{rng.randint(8, 15)}:{rng.choice(['00', '30'])} AM\nWith: Dr. {doctor} [**Telephone/Fax (1) "
            f"{rng.randint(1000, 9999)}**]\n\n")  # fmt: skip


_HPI_STORY = (
    "Symptoms began gradually over the preceding days and worsened on the morning of admission.",
    "{He} reports decreased oral intake and generalized weakness over the past week.",
    "{He} was brought in by ambulance after family noted a change from {his} baseline.",
    "Collateral history was obtained from {his} daughter, who lives nearby and visits daily.",
    "{He} denies recent travel, sick contacts or new medications.",
    "Of note, {he} was seen in clinic two weeks ago, where {his} regimen was adjusted.",
    "{He} has been less active at home and uses a walker since a fall last year.",
    "At baseline {he} is independent in activities of daily living and manages {his} own pills.",
)
_ED_COURSE = (
    "In the ED, initial vitals were {vitals}.",
    "Labs in the ED were notable for WBC {wbc}, Cr {cr} and lactate {lact}.",
    "{He} received 1L of normal saline, acetaminophen and one dose of IV antibiotics before transfer.",
    "Imaging in the ED was reviewed with radiology.",
    "On arrival to the floor, {he} was comfortable and asking to eat.",
)


def hpi_story(rng: random.Random, add: Add, he: str) -> None:
    """The presenting story around the coded mentions: timeline, baseline, ED course, and nothing to code."""
    his = "his" if he == "he" else "her"
    slots = {
        "He": he.capitalize(), "he": he, "his": his, "vitals": vitals(rng).removeprefix("VS: "),
        "wbc": _v(rng, 4, 19), "cr": _v(rng, 0.6, 3.2), "lact": _v(rng, 0.8, 3.9),
    }  # fmt: skip
    sentences = rng.sample(_HPI_STORY, rng.randint(2, 5)) + rng.sample(_ED_COURSE, rng.randint(2, 4))
    add(" " + " ".join(s.format(**slots) for s in sentences))


_EVENTS = (
    "remained hemodynamically stable on room air",
    "ambulated in the hallway with physical therapy",
    "tolerated a regular diet without difficulty",
    "labs were rechecked and were stable",
    "the IV access was changed for infiltration",
    "family meeting held to discuss goals of care and discharge planning",
    "was briefly disoriented overnight, which cleared by morning with reorientation",
    "electrolytes were repleted per protocol",
    "the Foley catheter was removed and the patient voided without difficulty",
    "pain was controlled with oral medication",
    "insurance authorization for rehabilitation was pending",
    "telemetry showed no events and was discontinued",
)


def daily_events(rng: random.Random, add: Add, stay: int) -> None:
    """A line for some days of a longer stay: the ordinary events a hospital course is full of."""
    if stay < 4:
        return
    add("Events by hospital day:\n")
    for day in sorted(rng.sample(range(1, stay + 1), min(stay, rng.randint(stay // 2, stay)))):
        add(f"HD#{day}: " + "; ".join(rng.sample(_EVENTS, rng.randint(1, 3))) + ".\n")
    add("\n")
