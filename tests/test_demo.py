"""The synthetic demo corpus: deterministic, realistic enough, and read by the same MDACE reader."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from sclcoder.data import codes
from sclcoder.data.corpus_folder import SPLITS, UNSEEN_SPLIT, demo_paths, read_demo
from sclcoder.data.readers import ReadReport, read_mdace
from sclcoder.demo.conditions import BY_CODE, CONDITIONS
from sclcoder.demo.corpus import UNSEEN_SHARE, ensure_demo, generate_demo
from sclcoder.errors import SclError
from tests.helpers import DEMO_CHARTS


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_corpus(tmp_path: Path) -> None:
    generate_demo(tmp_path / "a", n_charts=25, seed=5)
    generate_demo(tmp_path / "b", n_charts=25, seed=5)
    generate_demo(tmp_path / "c", n_charts=25, seed=6)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(tmp_path / "a")["NOTEEVENTS.csv"] != _tree(tmp_path / "c")["NOTEEVENTS.csv"]


def test_every_demo_code_is_a_current_billable_icd10cm_code() -> None:
    for cond in CONDITIONS:
        info = codes.lookup(cond.code, "icd10cm")
        assert info is not None and info.billable and info.current, cond.code


def _names(code: str, split: str) -> set[str]:
    cond = BY_CODE[code]
    return {n.lower() for n in (cond.unseen_names if split == UNSEEN_SPLIT else cond.names)}


def test_annotations_quote_condition_names(demo_corpus: Path) -> None:
    docs = [(s, d) for s in SPLITS for d in read_demo(demo_corpus, split=s, all_categories=True)]
    spans = 0
    for split, doc in docs:
        for ev in doc.evidence:
            names = _names(ev.code, split)
            assert doc.quote(ev).lower() in names, (doc.id, ev)
            spans += 1
        # descriptions in the annotation files come from the package data, not from us
    assert spans > 500
    ann_dir, _, _ = demo_paths(demo_corpus)
    chart = json.loads(next(ann_dir.glob("*.json")).read_text())
    ann = chart["notes"][0]["annotations"][0]
    assert ann["description"] == codes.describe(ann["code"], "icd10cm")


def test_negated_mentions_are_present_but_never_coded(demo_corpus: Path) -> None:
    split_of = {d.id: s for s in SPLITS for d in read_demo(demo_corpus, split=s, all_categories=True)}
    docs = {d.id: d for d in read_demo(demo_corpus, all_categories=True)}
    negated = [json.loads(line) for line in (demo_corpus / "negated_mentions.jsonl").read_text().splitlines()]
    assert len(negated) > 50
    cues = re.compile(r"\b(no|not|negative|without|denies|ruled out|doubt|did not|father|family|resolved)\b", re.I)
    for item in negated:
        doc = docs[str(item["note_id"])]
        mention = doc.text[item["begin"] : item["end"]]
        assert mention.lower() in _names(item["code"], split_of[doc.id])
        assert item["code"] not in doc.codes  # the condition is not coded anywhere in the note
        sentence = doc.text[max(0, doc.text.rfind("\n", 0, item["begin"])) : doc.text.find("\n", item["end"])]
        assert cues.search(sentence), sentence


def test_phrasing_varies(demo_corpus: Path) -> None:
    docs = read_demo(demo_corpus)
    surface = Counter((ev.code, d.quote(ev).lower()) for d in docs for ev in d.evidence)
    forms_per_code = Counter(code for code, _ in surface)
    # most frequent codes show up under several names, and no two notes share a hospital course
    assert sum(1 for c in forms_per_code.values() if c >= 3) >= 10
    course = re.compile(r"(?:Hospital Course|Assessment and Plan by problem):\n(.*?)Medications on Admission", re.S)
    courses = [course.search(d.text).group(1) for d in docs]  # type: ignore[union-attr]
    assert len(set(courses)) == len(courses)
    # section headings come in several layouts
    assert (
        len(
            {
                d.text[m.start() : m.end()]
                for d in docs
                if (m := re.search(r"^(PMH|Past Medical|PAST MEDICAL|Medical History)\S*", d.text, re.M))
            }
        )
        >= 3
    )


def test_read_through_the_mdace_reader_with_splits(demo_corpus: Path) -> None:
    ann, noteevents, _ = demo_paths(demo_corpus)
    report = ReadReport()
    all_docs = read_mdace(ann, noteevents, report=report)  # the defaults: every category
    per_split = {s: read_demo(demo_corpus, split=s, all_categories=True) for s in SPLITS}
    assert sum(len(v) for v in per_split.values()) == len(all_docs)
    hadm = [{d.meta["hadm_id"] for d in v} for v in per_split.values()]
    assert all(not (a & b) for i, a in enumerate(hadm) for b in hadm[i + 1 :])
    discharge = read_demo(demo_corpus)
    assert all(d.meta["category"] == "Discharge summary" for d in discharge)
    unseen = len(read_demo(demo_corpus, split=UNSEEN_SPLIT))
    assert unseen == round(UNSEEN_SHARE * DEMO_CHARTS) and len(discharge) == DEMO_CHARTS + unseen
    assert len(all_docs) > len(discharge)  # some admissions carry a radiology report


def test_the_unseen_split_is_phrase_disjoint_and_the_test_split_is_not(demo_corpus: Path) -> None:
    from sclcoder.demo.conditions import TAIL

    def evidence(split: str, *, tail: bool = True) -> set[str]:
        return {
            d.quote(ev).casefold()
            for d in read_demo(demo_corpus, split=split, all_categories=True)
            for ev in d.evidence
            if tail or ev.code not in TAIL
        }

    train, val = (read_demo(demo_corpus, split=s, all_categories=True) for s in ("train", "val"))
    training = "\n".join(d.text for d in train + val).casefold()

    def in_training(phrase: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", training) is not None

    unseen, seen = evidence(UNSEEN_SPLIT), evidence("test", tail=False)
    assert len(unseen) >= 15 and not [p for p in unseen if in_training(p)]
    # the other test split shares its phrasing with training (a rare form may miss a corpus this small), but
    # for the codes of the tail, which training holds once or never
    assert sum(in_training(p) for p in seen) >= 0.95 * len(seen)
    manifest = json.loads((demo_corpus / "demo.json").read_text())
    assert manifest["unseen_phrase_overlap"] == {"evidence_strings": len(unseen), "in_training_notes": 0}
    assert {ev.code for d in read_demo(demo_corpus, split=UNSEEN_SPLIT) for ev in d.evidence} <= set(BY_CODE)


def test_ensure_demo_generates_once_and_never_overwrites_a_different_corpus(tmp_path: Path) -> None:
    root = ensure_demo(tmp_path / "corpus", n_charts=12, seed=2)
    stamp = (root / "NOTEEVENTS.csv").stat().st_mtime_ns
    assert ensure_demo(root, n_charts=12, seed=2) == root
    assert (root / "NOTEEVENTS.csv").stat().st_mtime_ns == stamp
    with pytest.raises(SclError, match="12 charts with seed 2"):
        ensure_demo(root, n_charts=30, seed=2)
    assert len(read_demo(root)) == 12 + 1  # and one phrase-disjoint admission
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(SclError, match="holds files sclcoder did not write"):
        ensure_demo(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_uncertain_diagnoses_are_coded_and_ruled_out_ones_are_not(demo_corpus: Path) -> None:
    # inpatient guidelines: "likely X" at discharge is coded as X; "X was ruled out" is not
    docs = read_demo(demo_corpus, all_categories=True)
    uncertain = [
        (d, ev) for d in docs for ev in d.evidence if re.search(r"# (Likely|Presumed|Probable) $", d.text[: ev.begin])
    ]
    assert len(uncertain) >= 5 and all(ev.code in d.codes for d, ev in uncertain)
    ruled_out = [d for d in docs if re.search(r"ruled out", d.text)]
    assert ruled_out


def test_package_forms_widen_both_sides_without_crossing() -> None:
    from sclcoder.demo.conditions import package_forms

    added = 0
    for cond in CONDITIONS:
        seen, held = {n.lower() for n in cond.names}, {n.lower() for n in cond.unseen_names}
        forms = {f.lower() for f in package_forms(cond.code)}
        assert forms <= seen | held and not seen & held, cond.code
        added += len(forms - seen) > 0
        # a held-out form is never read inside a seen one ("esophageal reflux" in "gastro-esophageal reflux")
        assert not any(re.search(rf"(?<!\w){re.escape(h)}(?!\w)", s) for h in held for s in seen), cond.code
    assert added >= 8
    assert codes.clean_term("Pneumonia, unspecified organism") == "pneumonia"
    assert codes.clean_term("Sodium [Na] deficiency") == "sodium deficiency"
    # a category's terms do not name its unspecified code: F32's "single episode of ..." is F32.9, not F32.A
    assert not any("single episode" in f for f in package_forms("F32.A"))


def test_the_conditions_file_is_checked_when_loaded() -> None:
    from importlib import resources

    from sclcoder.demo.conditions import CONDITIONS_FILE, load_conditions
    from sclcoder.errors import SclError

    shipped = resources.files("sclcoder.demo").joinpath(CONDITIONS_FILE).read_text("utf-8")
    table = load_conditions(shipped)
    conditions, prevalence, companions = table.conditions, table.prevalence, table.companions
    assert len(conditions) == 47 and set(prevalence) <= {c.code for c in conditions}
    assert companions["E11.9"] == "Z79.4"  # insulin travels with type 2 diabetes
    with pytest.raises(SclError, match=r"field 'conditions\.0\.colour': unknown key"):
        load_conditions(shipped.replace("- code: I10\n", "- code: I10\n  colour: red\n", 1))
    with pytest.raises(SclError, match=r"codes not in the table: \['I99\.9'\]"):
        load_conditions(shipped.replace("prevalence:\n- I10\n", "prevalence:\n- I99.9\n", 1))
    with pytest.raises(SclError, match=r"field 'conditions\.0\.names': List should have at least 1 item"):
        load_conditions(
            shipped.replace(
                "  names:\n  - hypertension\n  - HTN\n  - essential hypertension\n  - high blood pressure\n",
                "  names: []\n",
                1,
            )
        )


def _quantile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def test_the_default_corpus_has_the_length_and_density_of_discharge_summaries(tmp_path: Path) -> None:
    """Version 5's targets, read back from the written corpus (not from the generator's own count): MDACE
    Inpatient discharge summaries run to a median of about 9,000 characters up to their last evidence span
    (p90 about 15,500), with a median of 11 evidence spans and 10 codes."""
    from sclcoder.demo.conditions import TABLE

    corpus = tmp_path / "corpus"
    generate_demo(corpus)  # what `make demo` reads: 300 admissions, seed 13
    docs = read_demo(corpus)  # discharge summaries of every split
    lengths = [len(d.text) for d in docs]
    assert _quantile(lengths, 0.5) >= 8000 and _quantile(lengths, 0.9) >= 14000
    assert 9 <= _quantile([len(d.evidence) for d in docs], 0.5) <= 14
    assert 8 <= _quantile([len(d.codes) for d in docs], 0.5) <= 12
    training = Counter(e.code for d in read_demo(corpus, split="train") for e in d.evidence)
    assert all(0 < training[code] <= 3 for code in TABLE.rare)  # a tail rare enough for synthesis to matter
    assert not any(training[code] for code in TABLE.held_out)  # and codes no training note has
    tested = {c for split in ("test", "test-unseen") for d in read_demo(corpus, split=split) for c in d.codes}
    assert set(TABLE.held_out) <= tested and set(TABLE.rare) <= tested
    stats = json.loads((corpus / "demo.json").read_text())["statistics"]
    assert stats["characters"]["median"] == _quantile(lengths, 0.5)  # what `data demo` prints is what is there


def test_every_mention_of_a_condition_is_annotated_or_recorded_as_negated(demo_corpus: Path) -> None:
    # a condition named where nobody annotated it would teach the model to ignore it: the filler around the
    # annotated sections (labs, meds, instructions, ...) must name none
    from sclcoder.data.corpus_folder import read_negated_spans
    from sclcoder.demo.conditions import says

    forms = sorted({n for c in CONDITIONS for n in (*c.names, *c.unseen_names)})
    negated = read_negated_spans(demo_corpus)
    unannotated = []
    for doc in read_demo(demo_corpus, all_categories=True):
        chars = list(doc.text)
        for b, e in [(ev.begin, ev.end) for ev in doc.evidence] + negated.get(doc.id, []):
            chars[b:e] = " " * (e - b)
        rest = "".join(chars).casefold()
        unannotated += [(doc.id, f) for f in forms if says(rest, f, folded=True)]
    assert unannotated == []
