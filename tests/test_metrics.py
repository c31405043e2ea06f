"""Metrics against small cases computed by hand, and the MDACE metrics on the real MDACE files."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pytest

from sclcoder.data.documents import Document, Evidence
from sclcoder.eval.evaluate import evaluate
from sclcoder.eval.gold import MdaceLocation, gold_mdace, predictions_jsonl, predictions_mdace_dir
from sclcoder.eval.metrics import (
    Prediction,
    code_metrics,
    match_type,
    match_types,
    mdace_evidence_metrics,
    plausibility,
    tokens,
)
from sclcoder.eval.report import PredictionsSummary
from sclcoder.recipe import MDACE_CODEABLE, MdaceFilters

# the generated note text carries CR LF on purpose: read it as it is
KEEP = MdaceFilters(newlines="keep")
DISCHARGE = MdaceFilters(categories=["Discharge summary"], newlines="keep")

I10, E119, J189, N390 = "I10", "E11.9", "J18.9", "N39.0"


def _info(path: str) -> PredictionsSummary:
    return PredictionsSummary(format="jsonl", path=path)


def _gold() -> list[Document]:
    t1 = "Pt with HTN and type 2 diabetes, BP 140/90."
    return [
        Document("d1", t1, {I10, E119}, evidence=[Evidence(8, 11, I10), Evidence(16, 31, E119)]),
        Document("d2", "HTN again. HTN.", {I10}, evidence=[Evidence(0, 3, I10), Evidence(11, 14, I10)]),
        Document("d3", "pneumonia", {J189}),  # a note with codes but no gold evidence
    ]


def test_code_metrics_by_hand() -> None:
    preds = [Prediction("d1", {I10, N390}), Prediction("d2", set()), Prediction("d3", {J189})]  # d2: empty
    m = code_metrics(_gold(), preds, seen_codes={I10, J189}).model_dump()
    # tp: d1 I10, d3 J18.9; fp: d1 N39.0 (absent from gold); fn: d1 E11.9, d2 I10
    assert (m["micro"]["tp"], m["micro"]["fp"], m["micro"]["fn"]) == (2, 1, 2)
    assert m["micro"]["precision"] == pytest.approx(2 / 3) and m["micro"]["recall"] == pytest.approx(0.5)
    f1_i10 = 2 * 1.0 * 0.5 / 1.5  # I10: P 1/1, R 1/2
    assert m["macro_over_gold_codes"]["f1"] == pytest.approx((f1_i10 + 0 + 1) / 3)
    assert m["macro_over_gold_and_predicted_codes"]["f1"] == pytest.approx((f1_i10 + 0 + 1 + 0) / 4)
    per = {r["code"]: r for r in m["per_code"]}
    assert per[N390]["support"] == 0 and per[N390]["fp"] == 1 and per[I10]["support"] == 2
    assert m["micro_seen_codes"]["tp"] == 2 and m["micro_unseen_codes"]["fp"] == 1
    assert m["micro_unseen_codes"]["fn"] == 1  # E11.9 was never in training
    missing = code_metrics(_gold(), preds[:1]).model_dump()
    assert missing["notes_without_prediction"] == ["d2", "d3"] and missing["micro"]["fn"] == 3


def test_mdace_tokens_drop_numbers_above_ten() -> None:
    assert tokens("BP 140/90, 2 doses, HbA1c 7", 100) == [
        (100, "bp"),
        (111, "2"),
        (113, "doses"),
        (120, "hba1c"),
        (126, "7"),
    ]


def test_mdace_evidence_metrics_by_hand() -> None:
    gold = _gold()
    preds = [
        # d1: I10 exact; the diabetes span one character short; the same span quoted twice counts once
        Prediction("d1", {I10, E119}, [Evidence(8, 11, I10), Evidence(8, 11, I10), Evidence(16, 30, E119)]),
        # d2: the second HTN quoted: exact span TP for it, FN for the first; PI span: "htn" matches once
        Prediction("d2", {I10}, [Evidence(11, 14, I10)]),
    ]
    m = mdace_evidence_metrics(gold, preds).model_dump()
    assert (m["span_exact"]["tp"], m["span_exact"]["fp"], m["span_exact"]["fn"]) == (2, 1, 2)
    # PI spans per note: d1 {htn, type 2 diabetes} vs {htn, type 2 diabete}; d2 {htn} vs {htn}
    assert (
        m["span_position_independent"]["tp"],
        m["span_position_independent"]["fp"],
        m["span_position_independent"]["fn"],
    ) == (2, 1, 1)
    # tokens: d1 gold htn, type, 2, diabetes (all matched: "diabete" starts where "diabetes" starts)
    assert (m["token_exact"]["tp"], m["token_exact"]["fp"], m["token_exact"]["fn"]) == (5, 0, 1)
    assert (m["token_position_independent"]["tp"], m["token_position_independent"]["fp"]) == (4, 1)
    # pooled per admission, "htn" is one item of the admission however many notes quote it
    pooled = mdace_evidence_metrics(gold, preds, group=lambda d: "same admission").model_dump()
    assert (pooled["span_position_independent"]["tp"], pooled["span_position_independent"]["fn"]) == (1, 1)
    assert pooled["groups"] == 1


def test_plausibility_by_hand() -> None:
    gold = _gold()
    preds = [
        Prediction("d1", {I10, E119}, [Evidence(8, 15, I10), Evidence(22, 31, E119)]),  # "HTN and", "diabetes"
        Prediction("d2", set(), []),
    ]
    p = plausibility(gold, preds).model_dump()
    # d1/I10: gold {htn}, pred {htn, and}: P .5 R 1; d1/E11.9: gold {type, 2, diabetes}, pred {diabetes}: P 1 R 1/3
    f1_a, f1_b = 2 * 0.5 * 1 / 1.5, 2 * 1 * (1 / 3) / (4 / 3)
    assert p["correct_codes"]["pairs"] == 2 and p["correct_codes"]["f1"] == pytest.approx((f1_a + f1_b) / 2)
    # all gold codes adds d2/I10 with nothing predicted (d3 has no gold evidence: not a pair)
    assert p["all_gold_codes"]["pairs"] == 3 and p["all_gold_codes"]["f1"] == pytest.approx((f1_a + f1_b) / 3)
    assert p["all_gold_codes"]["span_recall"] == pytest.approx(2 / 4) and p["correct_codes"]["span_recall"] == 1.0


def test_match_types_by_hand() -> None:
    text = (
        "Pt has chronic kidney disease stage 3 and anemia. "
        "Then one two three four five six seven eight nine ten eleven twelve thirteen: remote CKD history."
    )
    ckd = text.index("chronic")
    gold_span = Evidence(ckd, ckd + len("chronic kidney disease stage 3"), N390)
    far = text.index("remote CKD")
    doc = Document("n", text, {N390}, evidence=[gold_span])

    def kind(*spans: tuple[int, int]) -> str:
        return match_type(doc, [gold_span], [Evidence(b, e, N390) for b, e in spans])

    assert kind() == "empty"
    assert kind((gold_span.begin, gold_span.end)) == "exact"
    assert kind((text.index("has"), gold_span.end + len(" and"))) == "proximate"  # one token each side
    assert kind((ckd, ckd + len("chronic kidney")), (far, far + 10)) == "partial"  # a quote far away
    assert kind((ckd + len("chronic "), ckd + len("chronic kidney"))) == "proximate"  # inside, every gold span hit
    assert kind((far, far + 10)) == "no_match"
    # two gold spans, one of them missed: partial, not proximate
    second = Evidence(far, far + 10, N390)
    assert match_type(doc, [gold_span, second], [gold_span]) == "partial"

    report = match_types([doc], [Prediction("n", {N390}, [gold_span])]).model_dump()
    assert report["overall"]["exact"] == {"count": 1, "share": 1.0} and report["overall"]["pairs"] == 1
    assert report["per_code"][N390]["exact"]["count"] == 1


# ------------------------------------------------------------------------------------- real MDACE files


@pytest.fixture(scope="module")
def mdace_gold(mdace_dir, mdace_notes):
    noteevents, _ = mdace_notes
    return gold_mdace(MdaceLocation(mdace_dir, noteevents, split="MDace-ev-test", icd=10), KEEP)


def test_predictions_equal_to_gold_score_one(mdace_gold) -> None:
    preds = [Prediction(d.id, set(d.codes), list(d.evidence)) for d in mdace_gold.docs]
    report = evaluate(mdace_gold, preds, _info("gold")).model_dump()
    for metric in ("span_exact", "span_position_independent", "token_exact", "token_position_independent"):
        assert report["evidence_mdace"][metric]["f1"] == 1.0
    assert report["codes"]["micro"]["f1"] == 1.0
    assert report["evidence_match_types"]["overall"]["exact"]["share"] == 1.0
    assert report["evidence_mdace"]["groups"] == len({d.meta["hadm_id"] for d in mdace_gold.docs})


def test_a_known_perturbation_gives_a_known_count(mdace_gold) -> None:
    # drop every span of one code in one note: exactly those spans become false negatives
    victim = next(d for d in mdace_gold.docs if len(d.evidence_by_code()) > 1)
    code, spans = next(iter(victim.evidence_by_code().items()))
    preds = [
        Prediction(d.id, set(d.codes), [e for e in d.evidence if not (d is victim and e.code == code)])
        for d in mdace_gold.docs
    ]
    m = evaluate(mdace_gold, preds, _info("perturbed")).model_dump()["evidence_mdace"]["span_exact"]
    assert (m["fp"], m["fn"]) == (0, len({(e.begin, e.end) for e in spans}))


def _span_counts(mdace_dir: Path, noteevents: Path, sub: str, filters: MdaceFilters) -> tuple[int, int]:
    gold = gold_mdace(MdaceLocation(mdace_dir, noteevents, icd=9), filters)
    preds, info = predictions_mdace_dir(mdace_dir / "predictions" / sub, gold)
    m = evaluate(gold, preds, info).evidence_mdace.span_exact
    return m.predicted, m.actual


def test_authors_baselines_score_end_to_end(tmp_path: Path, mdace_dir, mdace_notes) -> None:
    noteevents, texts = mdace_notes
    # the settings of the authors' README commands: discharge summaries with --trim-annotations; all codeable
    # notes with --merge-adjacent too. Their results/*.md publish 1636/645, 1085/645 and 1144/742 spans.
    discharge = MdaceFilters(categories=["Discharge summary"], trim=True, newlines="keep")
    codeable = MdaceFilters(categories=MDACE_CODEABLE, trim=True, merge_adjacent=True, newlines="keep")
    cases = [
        ("supervised_attn/Inpatient/ICD-9/Discharge", discharge, (1636, 645)),
        ("unsupervised_attn/Inpatient/ICD-9/Discharge", discharge, (1085, 645)),
        # 744 gold spans before the merge; two same-code spans that overlap merge whatever the text (743). The
        # published 742 merges one more pair: three same-code pairs of this split are 1, 4 and 7 characters
        # apart, and whether punctuation and spaces alone separate them is in the real note text, which never
        # ships (the generated text puts letters there). So 743 here, and see below for the other end.
        ("supervised_attn/Inpatient/ICD-9/Codeable", codeable, (1144, 743)),
    ]
    for sub, filters, published in cases:
        assert _span_counts(mdace_dir, noteevents, sub, filters) == published, sub
    no_merge = codeable.model_copy(update={"merge_adjacent": False})
    assert _span_counts(mdace_dir, noteevents, cases[2][0], no_merge) == (1144, 744)
    # the same notes with spaces in those three gaps: every pair merges, 744 - 1 - 3 = 740 (742 lies between)
    gold = gold_mdace(MdaceLocation(mdace_dir, noteevents, icd=9), no_merge)
    spaced = dict(texts)
    gaps = 0
    for doc in gold.docs:
        for spans in doc.evidence_by_code().values():
            ordered = sorted(spans)
            for a, b in itertools.pairwise(ordered):
                if 0 < b.begin - a.end <= 10:
                    note = int(doc.id)
                    spaced[note] = spaced[note][: a.end] + " " * (b.begin - a.end) + spaced[note][b.begin :]
                    gaps += 1
    assert gaps == 3
    csv_path = tmp_path / "NOTEEVENTS.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ROW_ID", "TEXT"])
        writer.writerows(spaced.items())
    assert _span_counts(mdace_dir, csv_path, cases[2][0], codeable) == (1144, 740)


def test_both_prediction_formats_give_identical_numbers(tmp_path: Path, mdace_dir, mdace_notes) -> None:
    noteevents, _ = mdace_notes
    gold = gold_mdace(MdaceLocation(mdace_dir, noteevents, icd=9), DISCHARGE)
    from_dir, info = predictions_mdace_dir(mdace_dir / "predictions/supervised_attn/Inpatient/ICD-9/Discharge", gold)
    texts = {d.id: d.text for d in gold.docs}
    lines = []
    for p in from_dir:
        by_code: dict[str, list] = {}
        for e in p.evidence:
            by_code.setdefault(e.code, []).append(
                {"text": texts[p.id][e.begin : e.end], "begin": e.begin, "end": e.end, "match": "exact"}
            )
        lines.append({"id": p.id, "codes": [{"code": c, "evidence": ev} for c, ev in by_code.items()]})
    path = tmp_path / "baseline.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    from_jsonl, _ = predictions_jsonl(path, gold)
    a, b = evaluate(gold, from_dir, info), evaluate(gold, from_jsonl, _info(str(path)))
    for key in ("codes", "evidence_mdace", "plausibility"):
        assert getattr(a, key) == getattr(b, key)
