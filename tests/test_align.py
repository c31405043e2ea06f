"""Alignment of quoted evidence back to character offsets: unit and property tests."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sclcoder.data.align import Aligner, align_quote, normalize

NOTE = "Past Medical History:\n- Type 2  diabetes mellitus\n- HTN, on lisinopril\nAssessment: HTN stable.\n"


def test_exact_normalized_and_fuzzy() -> None:
    hit = align_quote("Type 2  diabetes mellitus", NOTE)
    assert hit and hit.match == "exact" and NOTE[hit.begin : hit.end] == "Type 2  diabetes mellitus"
    hit = align_quote("type 2 diabetes\nmellitus", NOTE)  # case and whitespace differ
    assert hit and hit.match == "normalized" and NOTE[hit.begin : hit.end] == "Type 2  diabetes mellitus"
    hit = align_quote("Type 2 diabetis melitus", NOTE)  # misspelt: fuzzy, grown to whole words
    assert hit and hit.match == "fuzzy" and NOTE[hit.begin : hit.end] == "Type 2  diabetes mellitus"
    assert hit.score >= 90


def test_unplaceable_quotes_are_none() -> None:
    assert align_quote("pulmonary embolism", NOTE) is None
    assert align_quote("   ", NOTE) is None
    assert align_quote("", NOTE) is None


def test_repeated_quotes_take_the_next_free_place() -> None:
    aligner = Aligner(NOTE)
    first = aligner.align("HTN")
    second = aligner.align("HTN", {(first.begin, first.end)})
    assert first and second and first.begin < second.begin
    assert NOTE[second.begin : second.end] == "HTN"
    # with every place taken, the first is given again rather than nothing
    third = aligner.align("HTN", {(first.begin, first.end), (second.begin, second.end)})
    assert third == first


ALPHABET = st.sampled_from(list("abcdefgh ABC\n\t.,-"))


def occurrences(haystack: str, needle: str) -> int:
    """Overlapping occurrences (str.count counts disjoint ones only)."""
    return sum(1 for k in range(len(haystack) - len(needle) + 1) if haystack.startswith(needle, k))


@settings(max_examples=300, deadline=None)
@given(text=st.text(ALPHABET, min_size=1, max_size=300), data=st.data())
def test_any_exact_substring_aligns_to_its_offsets(text: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(text) - 1))
    j = data.draw(st.integers(i + 1, len(text)))
    quote = text[i:j]
    assume(quote.strip())
    hit = align_quote(quote, text)
    assert hit is not None and hit.match == "exact"
    assert (hit.begin, hit.end) == (text.find(quote), text.find(quote) + len(quote))
    if occurrences(text, quote) == 1:
        assert (hit.begin, hit.end) == (i, j)


@settings(max_examples=300, deadline=None)
@given(text=st.text(ALPHABET, min_size=1, max_size=300), data=st.data())
def test_case_and_whitespace_changes_align_to_the_true_span(text: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(text) - 1))
    j = data.draw(st.integers(i + 1, len(text)))
    quote = text[i:j]
    assume(quote.strip() and quote == quote.strip())
    changed = " ".join(quote.swapcase().split())  # every case flipped, whitespace runs collapsed
    assume(occurrences(normalize(text), normalize(changed)) == 1)
    hit = align_quote(changed, text)
    assert hit is not None and hit.match in ("exact", "normalized")
    assert (hit.begin, hit.end) == (i, j)


@settings(max_examples=100, deadline=None)
@given(text=st.text(ALPHABET, max_size=200), quote=st.text(st.sampled_from("xyz0123"), min_size=1, max_size=12))
def test_a_quote_not_in_the_note_is_flagged(text: str, quote: str) -> None:
    assert align_quote(quote, text) is None
