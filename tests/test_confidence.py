"""Per-code confidence from the engine's token log-probabilities, its aggregation over windows, and its
calibration against gold (threshold chosen on validation notes); the support of a code's evidence."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document, Note
from sclcoder.data.windows import Window
from sclcoder.eval.calibration import calibration
from sclcoder.eval.metrics import PRF, Prediction, set_prf
from sclcoder.infer.answers import note_line
from sclcoder.infer.confidence import code_confidences
from sclcoder.infer.engine import Generation
from sclcoder.infer.predictions import CodePrediction, PredictionLine, Quote
from sclcoder.recipe import PredictSection


def _generation(pieces: list[tuple[str, float]]) -> Generation:
    return Generation("".join(p for p, _ in pieces), 10, len(pieces), "stop", pieces)


# an answer cut into tokens the way a BPE tokenizer might cut it: some tokens straddle the code's quotes
WINDOW_A = [('{"codes":[{"evidence":["', -0.01), ("HTN", -0.2), ('"],"code":"', -0.01), ("I", -0.4), ("10", -0.1),
            ('"},{"evidence":["', -0.3), ("T2DM", -0.5), ('"],"code":"E', -1.2), ("11.", -0.3), ("9", -0.05),
            ('"}]}', -0.01)]  # fmt: skip
WINDOW_B = [('{"codes":[{"evidence":["', -0.02), ("hypertension", -0.1), ('"],"code":"', -0.01), ("I1", -0.05),
            ("0", -0.01), ('"}]}', -0.01)]  # fmt: skip


def test_a_codes_confidence_is_the_probability_of_its_own_tokens() -> None:
    # computed by hand: the tokens that spell each code (a token that straddles a quote counts: it spells part)
    i10, e119 = code_confidences(_generation(WINDOW_A))  # type: ignore[misc]
    assert i10 == pytest.approx(math.exp(-0.4 - 0.1))
    assert e119 == pytest.approx(math.exp(-1.2 - 0.3 - 0.05))
    assert 0 < e119 < i10 < 1
    # tokens that do not spell the text (an engine that lost them): no confidence rather than a wrong one
    broken = Generation('{"codes":[]}', 1, 1, "stop", [("{}", -0.1)])
    assert code_confidences(broken) is None and code_confidences(Generation("x", 1, 1, "stop")) is None


def test_across_windows_a_code_keeps_its_highest_confidence_and_a_threshold_withholds() -> None:
    text = "PMH: HTN, T2DM.\nAssessment: hypertension."
    note = Note("n", text)
    windows = [Window(0, 15), Window(5, len(text))]
    gens = [_generation(WINDOW_A), _generation(WINDOW_B)]
    line = note_line(
        note, windows, gens, CodeSystem.ICD10CM, fuzzy_threshold=90, drop_invalid_codes=False, quote_counts=Counter()
    )
    by_code = {c.code: c.confidence for c in line.codes}
    # I10 in both windows: exp(-0.5) in the first, exp(-0.06) in the second; the note keeps the higher
    assert by_code == pytest.approx({"I10": math.exp(-0.06), "E11.9": math.exp(-1.55)})
    cut = note_line(
        note, windows, gens, CodeSystem.ICD10CM, fuzzy_threshold=90, drop_invalid_codes=False,
        quote_counts=Counter(), min_confidence=0.5,
    )  # fmt: skip
    assert [c.code for c in cut.codes] == ["I10"] and [c.code for c in cut.withheld] == ["E11.9"]
    assert cut.min_confidence == 0.5


def test_the_threshold_chosen_is_the_one_that_maximises_micro_f1() -> None:
    gold = [Document("a", "x", {"I10", "E11.9"}), Document("b", "x", {"J18.9"}), Document("c", "x", {"I10"})]
    preds = [
        Prediction("a", {"I10", "E11.9", "N39.0"}, confidences={"I10": 0.9, "E11.9": 0.4, "N39.0": 0.3}),
        Prediction("b", {"J18.9", "I48.91"}, confidences={"J18.9": 0.35, "I48.91": 0.6}),
        Prediction("c", {"I10", "E78.5"}, confidences={"I10": 0.8, "E78.5": 0.2}),
    ]
    result = calibration(gold, preds)
    assert result is not None and result.codes == 7

    def f1_at(t: float) -> float:  # independently: keep codes at or above t, micro F1 against gold
        total = PRF()
        for doc, pred in zip(gold, preds, strict=True):
            total += set_prf(doc.codes, {c for c, p in pred.confidences.items() if p >= t})
        return total.f1

    best = max(sorted({0.0, *(p for pr in preds for p in pr.confidences.values())}), key=lambda t: (f1_at(t), -t))
    assert result.best_threshold == best and result.best_f1 == pytest.approx(f1_at(best))
    assert best == 0.35  # drops N39.0, E78.5 (false) before the true E11.9 and J18.9
    # the reliability table: 7 codes in their bins, error = sum of |precision - confidence| weighted by bin share
    assert sum(b.codes for b in result.bins) == 7
    expected = sum(b.codes / 7 * abs(b.precision - b.mean_confidence) for b in result.bins)
    assert result.expected_calibration_error == pytest.approx(expected)
    assert next(b for b in result.bins if b.low == 0.8).precision == 1.0  # 0.8 and 0.9: both right


TAUGHT = "Assessment: HTN, stable. Plan: continue lisinopril."
TAUGHT_SETTINGS = PredictSection(max_model_len=2048, max_new_tokens=64, merge_adapter="never")


@pytest.fixture(scope="module")
def taught(tmp_path_factory, tiny_model, demo_corpus):
    """A tiny adapter taught one thing: this note, coded I10 on "HTN"."""
    import json

    import yaml

    from sclcoder.recipe import load_recipe
    from sclcoder.train.trainer import train
    from tests.helpers import tiny_recipe

    tmp_path = tmp_path_factory.mktemp("taught")
    evidence = [{"begin": 12, "end": 15, "code": "I10"}]
    notes = tmp_path / "taught.jsonl"
    rows = (json.dumps({"id": f"m{i}", "text": TAUGHT, "evidence": evidence}) + "\n" for i in range(40))
    notes.write_text("".join(rows))
    path = tiny_recipe(tmp_path, tiny_model, demo_corpus, name="taught", max_steps=60)
    recipe = yaml.safe_load(path.read_text())
    recipe["data"].update(train=[str(notes)], validation=[], validation_fraction=0.0, document={"fraction": 1.0},
                          span={"fraction": 1.0, "negative_rate": 0.0})  # fmt: skip
    path.write_text(yaml.safe_dump(recipe))
    return train(load_recipe(path)).adapter


@pytest.mark.engine
def test_a_code_the_model_was_taught_is_written_with_more_confidence(taught, vllm_engine):
    import json

    from sclcoder.infer.coder import NoteCoder
    from sclcoder.infer.engine import Sampling

    note = Note("x", TAUGHT)

    def written(allowed: list[str]) -> tuple[str, float]:
        coder = NoteCoder(taught, TAUGHT_SETTINGS)
        coder.grounded_codes = allowed  # the codes the answer's grammar lets it write
        (gen,) = vllm_engine.generate(
            [coder.request(note, coder.windows(note)[0])],
            schema=None,
            sampling=Sampling(64, 0.0, 1.0),
            lora_path=str(taught.path),
        )
        (item,) = json.loads(gen.text)["codes"]
        (confidence,) = code_confidences(gen)  # type: ignore[misc]
        return item["code"], confidence

    taught_code, sure = written(["I10", "E11.9", "J18.9", "N39.0"])
    other, unsure = written(["E11.9", "J18.9", "N39.0", "K21.9"])  # it must write a code it was not taught
    assert taught_code == "I10" and other != "I10"
    assert 0.0 < unsure < 0.5 < sure <= 1.0


def _coded(code: str, quote: str | None) -> CodePrediction:
    if quote is None:
        return CodePrediction(code=code)
    begin = TAUGHT.index(quote)
    return CodePrediction(code=code, evidence=[Quote(text=quote, begin=begin, end=begin + len(quote), match="exact")])


@pytest.mark.engine
def test_support_is_the_probability_of_the_code_given_its_quotes_alone(taught, vllm_engine, scoring_engine) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sclcoder.errors import SclError
    from sclcoder.infer.coder import NoteCoder
    from sclcoder.infer.merge import merged_weights, peft_model
    from sclcoder.infer.support import code_sequence, with_support

    coder = NoteCoder(taught, TAUGHT_SETTINGS)
    lines = [
        PredictionLine(id="x", codes=[_coded("I10", "HTN"), _coded("E11.9", "HTN")], withheld=[_coded("J18.9", None)])
    ]
    # vLLM cannot return prompt log-probabilities under a LoRA request (vllm-project/vllm#16668): one clear error
    with pytest.raises(SclError, match="merge_adapter") as err:
        with_support(lines, coder.renderer, vllm_engine, str(taught.path))
    assert err.value.field == "predict.support"
    scoring_engine.load_weights(merged_weights(peft_model(taught)))  # the taught adapter merged, as predict runs it
    (line,) = with_support(lines, coder.renderer, scoring_engine, None)
    right, wrong = (c.support for c in line.codes)
    # "HTN" supports the code it was taught for, not another (the tiny random model spreads its probability over
    # the whole vocabulary, grammar-free: the gap, not the level, is what it learnt)
    assert 0.0 < 1000 * wrong < right <= 1.0
    assert line.withheld[0].support == 0.0  # withheld codes are scored too; no quote, no support

    # the number itself, computed apart: transformers' forward pass over "HTN" as the note, the answer quoting it
    ids, start = code_sequence(coder.renderer, "HTN", ["HTN"], "I10")
    assert coder.tokenizer.decode(ids[start:]) == "I10"  # the code's own tokens, not the quote after it
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(taught.record.base_model), taught.path)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    logp = sum(logits[pos - 1, ids[pos]].item() for pos in range(start, len(ids)))
    assert right == pytest.approx(math.exp(logp), abs=1e-3)


def test_support_needs_an_engine_that_scores_sequences(taught) -> None:
    from sclcoder.errors import SclError
    from sclcoder.infer.coder import NoteCoder
    from sclcoder.infer.local import TransformersEngine
    from sclcoder.infer.support import with_support

    coder = NoteCoder(taught, TAUGHT_SETTINGS)
    engine = TransformersEngine.__new__(TransformersEngine)  # generate only: it cannot score given sequences
    with pytest.raises(SclError, match="TransformersEngine") as err:
        with_support([PredictionLine(id="x", codes=[_coded("I10", "HTN")])], coder.renderer, engine, None)
    assert err.value.field == "predict.support"
    # predicting with support on such an engine stops before it decodes anything, not after the first batch
    decoded = []
    engine.generate = lambda *a, **k: decoded.append(a)  # type: ignore[method-assign]
    engine.mode = "merged"
    supported = NoteCoder(taught, TAUGHT_SETTINGS.model_copy(update={"support": True}))
    with pytest.raises(SclError, match="TransformersEngine"):
        supported.code([Note(id="x", text=TAUGHT)], engine)
    assert decoded == []
