"""Finding a code the model missed, by code or by words: titles and inclusion terms of the code system the
project already reads (simple-icd-10-cm for ICD-10-CM)."""

from __future__ import annotations

import functools
import re

from sclcoder import defaults
from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.errors import CodeError

_WORD = re.compile(r"[a-z0-9]+")


@functools.cache
def _index(system: CodeSystem) -> list[tuple[str, str, str, str]]:
    """(code, compact code, title, words of title and inclusion terms) of every billable current code."""
    rows = []
    for code in codes_mod.all_codes(system):
        title = codes_mod.describe(code, system) or ""
        try:
            terms = codes_mod.inclusion_terms(code, system)
        except CodeError:  # a code of the release our normaliser does not shape (kept, searchable by its title)
            terms = []
        rows.append((code, codes_mod.undotted(code), title, " ".join([title, *terms]).lower()))
    return rows


def search_codes(query: str, system: str | CodeSystem, limit: int | None = None) -> list[dict[str, str]]:
    """Codes whose code starts with the query, or whose title or inclusion terms hold every word of it (as word
    beginnings); code matches first, then title matches, shorter titles first."""
    system = CodeSystem.parse(system)
    q = query.strip()
    if not q:
        return []
    compact = re.sub(r"[.\s]", "", q).upper()
    words = _WORD.findall(q.lower())
    hits: list[tuple[tuple[int, int, str], dict[str, str]]] = []
    for code, undotted, title, haystack in _index(system):
        if undotted.startswith(compact):
            rank = 0
        elif (
            words
            and all(w in haystack for w in words)  # cheap test first: most codes fail it
            and all(re.search(rf"\b{re.escape(w)}", haystack) for w in words)
        ):
            rank = 1 if all(re.search(rf"\b{re.escape(w)}", title.lower()) for w in words) else 2
        else:
            continue
        hits.append(((rank, len(title), code), {"code": code, "description": title}))
    hits.sort(key=lambda h: h[0])
    return [h[1] for h in hits[: limit or defaults.CODE_SEARCH_HITS]]
