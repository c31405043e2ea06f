"""Grounded decoding grammars: a quote is accepted exactly when it is whole-word text of its window, JSON-escaped
as the answer is serialised, and a code exactly when it is allowed (that every training target is accepted is
checked in test_build, on its dataset)."""

from __future__ import annotations

from pathlib import Path

import xgrammar
from hypothesis import given, settings
from hypothesis import strategies as st
from xgrammar.testing import _is_grammar_accept_string as accepts

from sclcoder.infer.grounding import SuffixAutomaton, answer_grammar, units
from sclcoder.sft.answer import dump_answer

CODES = ["E11.9", "E11.65", "I10", "I50.9", "Z87.891"]
# texts with what JSON must escape, non-ASCII letters and repeated words
alphabet = st.sampled_from(
    ["HTN", "htn", "type", "2", "DM", "café", "Ünïcode", "\\", '"', "\n", "\t", " ", ".", ",", "-"]
)
texts = st.lists(alphabet, min_size=1, max_size=25).map("".join)


def _answer(quotes: list[str], code: str) -> str:
    return dump_answer({"codes": [{"evidence": quotes, "code": code}]})


def _whole_word_substring(text: str, quote: str) -> bool:
    """Independent of the automaton: does `quote` occur in `text` starting and ending at unit boundaries?"""
    bounds = {0}
    for u in units(text):
        bounds.add(max(bounds) + len(u))
    return any(text.startswith(quote, b) and b + len(quote) in bounds for b in bounds) and quote != ""


@settings(max_examples=50, deadline=None)
@given(text=texts, data=st.data())
def test_a_quote_is_accepted_exactly_when_it_is_whole_word_text_of_the_window(text: str, data) -> None:
    grammar = xgrammar.Grammar.from_ebnf(answer_grammar(text, CODES))
    pieces = units(text)
    i = data.draw(st.integers(0, len(pieces) - 1))
    j = data.draw(st.integers(i + 1, len(pieces)))
    quote = "".join(pieces[i:j])  # a real whole-word substring
    assert accepts(grammar, _answer([quote], "I10"))
    # a mutated quote: accepted exactly when it is still whole-word text of the window
    other = data.draw(st.one_of(st.just(quote[:-1]), st.just(quote + "x"), st.just(quote[1:]), texts))
    assert accepts(grammar, _answer([other], "I10")) == _whole_word_substring(text, other)
    if other:
        assert SuffixAutomaton(pieces).accepts(units(other)) == _whole_word_substring(text, other)


@settings(max_examples=25, deadline=None)
@given(text=texts, code=st.text(alphabet="EIZ0123456789.", min_size=1, max_size=7))
def test_only_the_allowed_codes_are_accepted(text: str, code: str) -> None:
    grammar = xgrammar.Grammar.from_ebnf(answer_grammar(text, CODES))
    quote = units(text)[0]
    assert accepts(grammar, _answer([quote], code)) == (code in CODES)
    assert accepts(grammar, '{"codes":[]}')
    assert not accepts(grammar, _answer([], "I10"))  # at least one quote per code, as the schema says


def test_every_substring_of_a_text_and_nothing_else(tmp_path: Path) -> None:
    text = "HTN and htn; HTN again."
    sam = SuffixAutomaton(units(text))
    pieces = units(text)
    inside = {tuple(pieces[i:j]) for i in range(len(pieces)) for j in range(i + 1, len(pieces) + 1)}
    assert all(sam.accepts(s) for s in inside)
    assert not sam.accepts(["HTN", " ", "and", " ", "HTN"]) and not sam.accepts(["again", ".", " "])
    assert len(sam) <= 2 * len(pieces)  # at most twice the text's units
