"""Grounded decoding: a grammar per window under which every quote the model writes is a substring of that
window and every code is a valid code, so evidence is verbatim by construction, not repaired afterwards.

The answer keeps its trained shape, `{"codes":[{"evidence":["...",...],"code":"..."},...]}`, compact JSON
exactly as `sft.answer.dump_answer` writes it. Inside a quote the grammar walks a suffix automaton of the
window: every path from its start spells a substring of the text and every substring has a path. The
automaton runs over *units* (a run of word characters, or one other character), so a quote starts and ends at
a word boundary and never cuts a word; it has at most twice as many states as the window has units. Each
unit is written JSON-escaped, as the serialiser escapes it (quotes, backslashes, newlines, tabs, control
characters; other characters as they are), so the grammar accepts the JSON text of the quote, and nothing
else. The code field is an alternation of the allowed codes written as a trie (one rule per branching
prefix), so a code outside the list cannot be emitted.

The grammar is EBNF in the dialect of xgrammar, which vLLM uses for structured outputs, in process and
behind its OpenAI-compatible server alike.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable

UNIT = re.compile(r"\w+|[^\w]", flags=re.UNICODE)
"""A unit of a quote: a run of word characters (a quote never cuts one), or a single other character."""


def units(text: str) -> list[str]:
    """The window text as units; joined they give the text back."""
    return UNIT.findall(text)


def _json_body(s: str) -> str:
    """`s` as it appears between the quotes of `json.dumps(s, ensure_ascii=False)`."""
    return json.dumps(s, ensure_ascii=False)[1:-1]


def _literal(s: str) -> str:
    """An EBNF string literal that matches exactly the characters of `s`."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


class SuffixAutomaton:
    """The suffix automaton of a sequence of symbols: the smallest automaton accepting exactly its substrings
    (every state is accepting). Built online in linear time (Blumer et al., 1985)."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.next: list[dict[str, int]] = [{}]
        self.link: list[int] = [-1]
        self.length: list[int] = [0]
        last = 0
        for sym in symbols:
            cur = self._new(self.length[last] + 1)
            p = last
            while p != -1 and sym not in self.next[p]:
                self.next[p][sym] = cur
                p = self.link[p]
            if p == -1:
                self.link[cur] = 0
            else:
                q = self.next[p][sym]
                if self.length[p] + 1 == self.length[q]:
                    self.link[cur] = q
                else:
                    clone = self._new(self.length[p] + 1)
                    self.next[clone] = dict(self.next[q])
                    self.link[clone] = self.link[q]
                    while p != -1 and self.next[p].get(sym) == q:
                        self.next[p][sym] = clone
                        p = self.link[p]
                    self.link[q] = self.link[cur] = clone
            last = cur

    def _new(self, length: int) -> int:
        self.next.append({})
        self.link.append(-1)
        self.length.append(length)
        return len(self.next) - 1

    def accepts(self, symbols: Iterable[str]) -> bool:
        state = 0
        for sym in symbols:
            if sym not in self.next[state]:
                return False
            state = self.next[state][sym]
        return True

    def __len__(self) -> int:
        return len(self.next)


def quote_rules(text: str, prefix: str = "q") -> tuple[str, list[str]]:
    """(name of the start rule, EBNF rules) for a non-empty quote of `text`, JSON-escaped."""
    sam = SuffixAutomaton(units(text))
    rules = []
    for state, edges in enumerate(sam.next):
        alternatives = [f"{_literal(_json_body(sym))} {prefix}{target}" for sym, target in sorted(edges.items())]
        if state == 0:  # the start: at least one unit
            body = " | ".join(alternatives) if alternatives else '""'
            rules.append(f"{prefix}0 ::= {body}")
        else:
            rules.append(f"{prefix}{state} ::= " + " | ".join(['""', *alternatives]))
    return f"{prefix}0", rules


def code_rules(codes: Iterable[str], name: str = "code") -> list[str]:
    """EBNF rules matching exactly the given codes (as JSON strings), a trie with one rule per branch point."""
    trie: dict = {}
    for code in sorted(set(codes)):
        node = trie
        for ch in code:
            node = node.setdefault(ch, {})
        node[""] = {}
    rules: list[str] = []

    def emit(node: dict) -> str:
        """The EBNF expression for everything below `node`; branch points become rules of their own."""
        alternatives = []
        for ch, child in sorted(node.items()):
            if ch == "":
                alternatives.append('""')
                continue
            run = ch
            while len(child) == 1 and "" not in child:  # follow a chain without branches
                ((nxt, child),) = child.items()
                run += nxt
            rest = emit(child)
            alternatives.append(_literal(run) if rest == '""' else f"{_literal(run)} {rest}")
        if len(alternatives) == 1:
            return alternatives[0]
        rules.append(f"{name}{len(rules) + 1} ::= " + " | ".join(alternatives))
        return f"{name}{len(rules)}"

    body = emit(trie) if trie else '""'
    return [f'{name} ::= "\\"" {body} "\\""', *rules]


@functools.cache
def _limits() -> dict[str, int]:
    """The answer schema's item limits, kept in the grammar: they stop a model that repeats itself."""
    from sclcoder.sft.answer import answer_schema

    codes = answer_schema()["properties"]["codes"]
    return {"codes": codes["maxItems"], "evidence": codes["items"]["properties"]["evidence"]["maxItems"]}


@functools.lru_cache(maxsize=4)
def _code_block(codes: tuple[str, ...]) -> str:
    # the same for every window of a run, and for a whole code system about a megabyte of text: built once
    return "\n".join(code_rules(codes))


def answer_grammar(text: str, codes: Iterable[str]) -> str:
    """The EBNF grammar of every answer for `text` whose quotes are substrings of it and codes in `codes`."""
    start, quotes = quote_rules(text)
    limits = _limits()
    return "\n".join(
        [
            f'root ::= "{{\\"codes\\":[" (item ("," item){{0,{limits["codes"] - 1}}})? "]}}"',
            f'item ::= "{{\\"evidence\\":[" quote ("," quote){{0,{limits["evidence"] - 1}}} "],\\"code\\":" code "}}"',
            f'quote ::= "\\"" {start} "\\""',
            *quotes,
            _code_block(tuple(sorted(set(codes)))),
        ]
    )
