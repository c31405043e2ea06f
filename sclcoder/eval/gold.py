"""What `sclcoder eval` scores against what: gold from a benchmark (MDACE, RD-IV-10 JSONL, the demo corpus, or
any gold JSONL) and predictions from our JSONL or from MDACE-layout directories.

Both prediction formats become the same `Prediction` objects read against the gold notes' text, so the MDACE
authors' baselines and our models are scored by the same code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder import defaults
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document, Evidence, clean_evidence, read_documents
from sclcoder.data.readers import DISCHARGE, read_mdace
from sclcoder.errors import SclError, Skips
from sclcoder.eval.metrics import Prediction
from sclcoder.files import read_jsonl

CODEABLE = ("Discharge summary", "Radiology", "Physician")
"""The MDACE authors' "all codeable notes" setting."""


@dataclass
class Gold:
    benchmark: str
    docs: list[Document]
    group: Callable[[Document], str] | None
    settings: dict[str, Any]
    negated: dict[str, set[str]] = field(default_factory=dict)
    """Demo corpus only: note id -> codes mentioned there only in negated or family context."""


# ------------------------------------------------------------------------------------------------ gold


def _cleanups(docs: list[Document], trim: bool, merge_adjacent: bool) -> list[Document]:
    return [clean_evidence(doc, trim=trim, merge_adjacent=merge_adjacent) for doc in docs]


def diagnoses_only(docs: list[Document]) -> list[Document]:
    out = []
    for d in docs:
        keep = d.diagnosis_codes
        out.append(Document(d.id, d.text, keep, d.code_system, [e for e in d.evidence if e.code in keep], d.meta))
    return out


def gold_mdace(
    mdace_dir: str | PathLike[str],
    noteevents: str | PathLike[str],
    *,
    split: str = defaults.MDACE_TEST_SPLIT,
    icd: int = 10,
    setting: str = "Inpatient",
    all_codeable: bool = False,
    with_procedures: bool = False,
    trim: bool = False,
    merge_adjacent: bool = False,
) -> Gold:
    root = Path(mdace_dir)
    annotations = root / "data" / setting / f"ICD-{icd}"
    split_file = Path(split) if Path(split).suffix == ".csv" else root / "splits" / setting / f"{split}.csv"
    categories = CODEABLE if all_codeable else (DISCHARGE,)
    docs = read_mdace(
        annotations,
        noteevents,
        split=split_file,
        categories=categories,
        with_procedures=with_procedures,
        trim=trim,
        merge_adjacent=merge_adjacent,
        code_system="icd10cm" if icd == 10 else "icd9cm",
    )
    settings = {
        "mdace_dir": str(root),
        "split": split_file.stem,
        "icd": icd,
        "setting": setting,
        "categories": list(categories),
        "with_procedures": with_procedures,
        "trim": trim,
        "merge_adjacent": merge_adjacent,
        "grouping": "admission",
    }
    return Gold("mdace", docs, lambda d: str(d.meta["hadm_id"]), settings)


def gold_jsonl(
    path: str | PathLike[str],
    benchmark: str = "jsonl",
    *,
    trim: bool = False,
    merge_adjacent: bool = False,
    with_procedures: bool = False,
) -> Gold:
    docs = list(read_documents(path))
    if not with_procedures:
        docs = diagnoses_only(docs)
    docs = _cleanups(docs, trim, merge_adjacent)
    settings = {
        "gold": str(path),
        "trim": trim,
        "merge_adjacent": merge_adjacent,
        "with_procedures": with_procedures,
        "grouping": "note",
    }
    return Gold(benchmark, docs, None, settings)


def gold_demo(
    corpus: str | PathLike[str] = defaults.DEMO_CORPUS, *, trim: bool = False, merge_adjacent: bool = False
) -> Gold:
    from sclcoder.data.demo import read_demo

    docs = _cleanups(read_demo(corpus, split="test"), trim, merge_adjacent)
    negated: dict[str, set[str]] = {}
    path = Path(corpus) / "negated_mentions.jsonl"
    if path.exists():
        for _, row in read_jsonl(path):
            negated.setdefault(str(row["note_id"]), set()).add(row["code"])
    settings = {
        "corpus": str(corpus),
        "split": "test",
        "trim": trim,
        "merge_adjacent": merge_adjacent,
        "grouping": "note",
    }
    return Gold("demo", docs, None, settings, negated)


# ----------------------------------------------------------------------------------------- predictions


def _clean_prediction(doc: Document, pred: Prediction, trim: bool, merge_adjacent: bool) -> Prediction:
    if not (trim or merge_adjacent) or not pred.evidence:
        return pred
    tmp = Document(
        doc.id, doc.text, set(pred.codes) | {e.code for e in pred.evidence}, doc.code_system, list(pred.evidence)
    )
    tmp = _cleanups([tmp], trim, merge_adjacent)[0]
    return Prediction(pred.id, pred.codes, tmp.evidence)


def predictions_jsonl(path: str | PathLike[str], gold: Gold) -> tuple[list[Prediction], dict[str, Any]]:
    """Our predictions JSONL; every predicted code counts (invalid ones are simply wrong), evidence that
    could not be aligned has no offsets and so no place in span metrics."""
    by_id = {d.id: d for d in gold.docs}
    preds, matches = [], Counter()
    for lineno, row in read_jsonl(path, what="predictions file"):
        if "id" not in row or not isinstance(row.get("codes"), list):
            raise SclError("not a predictions line (needs id and codes)", path=path, line=lineno)
        doc = by_id.get(str(row["id"]))
        codes, evidence = set(), []
        for item in row["codes"]:
            code = item.get("code")
            codes.add(code)
            for ev in item.get("evidence", []):
                matches[ev.get("match") or "unaligned"] += 1
                if ev.get("begin") is not None and doc is not None and 0 <= ev["begin"] < ev["end"] <= len(doc.text):
                    evidence.append(Evidence(ev["begin"], ev["end"], code))
        pred = Prediction(str(row["id"]), codes, sorted(set(evidence)))
        preds.append(
            _clean_prediction(doc, pred, gold.settings.get("trim", False), gold.settings.get("merge_adjacent", False))
            if doc
            else pred
        )
    return preds, {"format": "jsonl", "path": str(path), "evidence_alignment": dict(matches)}


def predictions_mdace_dir(
    path: str | PathLike[str], gold: Gold, noteevents: str | PathLike[str] | None = None
) -> tuple[list[Prediction], dict[str, Any]]:
    """MDACE-layout prediction JSONs (the authors' baselines), read against the notes' text: the gold notes',
    and NOTEEVENTS.csv for notes the coders left without evidence."""
    from sclcoder.data.readers import mdace_annotation_files, stream_noteevents

    texts = {int(d.meta.get("note_id", d.id)): d.text for d in gold.docs}
    s = gold.settings
    categories = s.get("categories", [DISCHARGE])
    wanted_cats = {c.lower() for c in categories}
    needed = set()
    for file in mdace_annotation_files(path):
        for note in json.loads(file.read_text(encoding="utf-8")).get("notes", []):
            if str(note.get("category", "")).lower() in wanted_cats and int(note["note_id"]) not in texts:
                needed.add(int(note["note_id"]))
    if needed and noteevents is not None:
        texts.update({row_id: row["TEXT"] for row_id, row in stream_noteevents(noteevents, needed)})
    system = gold.docs[0].code_system if gold.docs else CodeSystem.ICD10CM
    skips = Skips(allowed=True)
    docs = read_mdace(
        path,
        None,
        texts=texts,
        categories=categories,
        with_procedures=s.get("with_procedures", False),
        trim=s.get("trim", False),
        merge_adjacent=s.get("merge_adjacent", False),
        code_system=system,
        skips=skips,
    )
    preds = [Prediction(d.id, set(d.codes), list(d.evidence), d.text, str(d.meta["hadm_id"])) for d in docs]
    return preds, {"format": "mdace", "path": str(path), "notes_without_text": skips.count}


def load_predictions(
    path: str | PathLike[str], gold: Gold, noteevents: str | PathLike[str] | None = None
) -> tuple[list[Prediction], dict[str, Any]]:
    p = Path(path)
    if p.is_dir():
        return predictions_mdace_dir(p, gold, noteevents)
    return predictions_jsonl(p, gold)
