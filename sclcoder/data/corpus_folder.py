"""Reading a corpus folder in MDACE layout that carries its own note text and splits, as `sclcoder data demo`
writes the demo corpus (the generator itself is sclcoder.demo):

    ROOT/data/Inpatient/ICD-10/1.0/<hadm_id>-ICD-10.json   annotations, one file per admission
    ROOT/NOTEEVENTS.csv                                     note text, joined on ROW_ID = note_id
    ROOT/splits/demo-{train,val,test,test-unseen}.csv       HADM ids per split
    ROOT/demo.json                                          what wrote it: generator version, size, seed
    ROOT/negated_mentions.jsonl                             mentions that must not be coded

Its notes go through the very MDACE reader a user runs on real data.
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder.data.documents import Document
from sclcoder.data.readers import DISCHARGE, ReadReport, read_mdace
from sclcoder.errors import SclError
from sclcoder.files import read_jsonl
from sclcoder.recipe import MdaceFilters

SPLITS = ("train", "val", "test", "test-unseen")
UNSEEN_SPLIT = "test-unseen"
ANNOTATIONS = Path("data/Inpatient/ICD-10/1.0")
NOTEEVENTS = "NOTEEVENTS.csv"
MANIFEST = "demo.json"
NEGATED = "negated_mentions.jsonl"
SPLIT_FILE = "splits/demo-{split}.csv"


def demo_paths(corpus: str | PathLike[str]) -> tuple[Path, Path, Path]:
    """(annotation dir, NOTEEVENTS.csv, splits dir) of a demo corpus folder."""
    root = Path(corpus)
    return root / ANNOTATIONS, root / NOTEEVENTS, (root / SPLIT_FILE).parent


def read_manifest(corpus: str | PathLike[str]) -> dict[str, Any] | None:
    """What demo.json says about the corpus (None when there is no readable one)."""
    try:
        have = json.loads((Path(corpus) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return have if isinstance(have, dict) else None


def check_corpus(corpus: str | PathLike[str], *, charts: int, seed: int) -> Path:
    """The corpus folder a recipe names, if it is the one it asks for (size and seed); one clear error when it
    is missing or another one. `sclcoder train` and `data build` generate a missing demo corpus first."""
    root = Path(corpus)
    have = read_manifest(root)
    if have is None:
        raise SclError(
            "no demo corpus here",
            path=root,
            hint=f"`sclcoder data demo {root} --charts {charts} --seed {seed}` writes it",
        )
    if (have.get("charts"), have.get("seed")) != (charts, seed):
        raise SclError(
            f"this demo corpus has {have.get('charts')} charts with seed {have.get('seed')}, the recipe asks for "
            f"{charts} with seed {seed}; point demo.corpus at another directory or delete this one",
            path=root / MANIFEST,
        )
    return root


def read_demo(
    corpus: str | PathLike[str],
    *,
    split: str | None = None,
    all_categories: bool = False,
    report: ReadReport | None = None,
) -> list[Document]:
    """Documents of a demo corpus folder (one split, or all), via the MDACE reader."""
    annotations, noteevents, _ = demo_paths(corpus)
    if not annotations.is_dir() or not noteevents.is_file():
        raise SclError("not a demo corpus (make one with `sclcoder data demo DIR`)", path=corpus)
    if split is not None and split not in SPLITS:
        raise SclError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}", field="split")
    return read_mdace(
        annotations,
        noteevents,
        split=Path(corpus) / SPLIT_FILE.format(split=split) if split else None,
        filters=MdaceFilters(categories=None if all_categories else [DISCHARGE], newlines="keep"),
        report=report,
    )


def read_negated(corpus: str | PathLike[str]) -> dict[str, set[str]]:
    """Note id -> codes the note mentions only negated or in the family history (empty without the file)."""
    path = Path(corpus) / NEGATED
    negated: dict[str, set[str]] = {}
    if not path.exists():
        return negated
    for lineno, row in read_jsonl(path, what="negated-mentions file"):
        for key, kind in (("note_id", (str, int)), ("code", str)):
            if not isinstance(row.get(key), kind) or isinstance(row.get(key), bool):
                raise SclError("missing or not a note id / code", path=path, line=lineno, field=key)
        negated.setdefault(str(row["note_id"]), set()).add(row["code"])
    return negated


def read_negated_spans(corpus: str | PathLike[str]) -> dict[str, list[tuple[int, int]]]:
    """Note id -> [begin, end) of each mention that must not be coded."""
    path = Path(corpus) / NEGATED
    spans: dict[str, list[tuple[int, int]]] = {}
    if path.exists():
        for lineno, row in read_jsonl(path, what="negated-mentions file"):
            if not all(isinstance(row.get(k), int) for k in ("begin", "end")):
                raise SclError("missing or not a character offset", path=path, line=lineno, field="begin")
            spans.setdefault(str(row["note_id"]), []).append((row["begin"], row["end"]))
    return spans
