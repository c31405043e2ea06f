"""`data build`: the SCL mixture, its targets and its token accounting, on the demo corpus."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from sclcoder.artifacts import open_dataset
from sclcoder.backbones import load_tokenizer
from sclcoder.data.corpus_folder import read_demo
from sclcoder.errors import SclError
from sclcoder.recipe import load_recipe
from sclcoder.sft import build as build_mod
from sclcoder.sft.answer import answer_errors
from sclcoder.sft.build import build_dataset
from sclcoder.sft.prompts import Renderer, load_prompt
from tests.helpers import write_recipe


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, demo_corpus: Path):
    tmp = tmp_path_factory.mktemp("build")
    recipe = load_recipe(write_recipe(tmp, tiny_model, demo_corpus))
    result = build_dataset(recipe, tmp / "ds")
    ds = open_dataset(result.out_dir)
    return recipe, ds, ds.load()


def _answer(row: dict, renderer: Renderer) -> dict:
    assert row["completion"].endswith(renderer.end_of_turn)
    return json.loads(row["completion"][: -len(renderer.end_of_turn)])


def _docs(corpus: Path) -> dict[str, object]:
    return {d.id: d for s in ("train", "val") for d in read_demo(corpus, split=s)}


def test_span_targets_are_exactly_the_codes_evidenced_in_the_window(built, tiny_model, demo_corpus) -> None:
    _recipe, _, hf = built
    docs = _docs(demo_corpus)
    renderer = Renderer(load_tokenizer(str(tiny_model)), load_prompt(), "icd10cm")
    spans = [r for r in hf["train"] if r["kind"] == "span"]
    assert len(spans) > 100
    for row in spans:
        doc = docs[row["source"]]
        b, e = row["begin"], row["end"]
        assert doc.text[b:e] == row["text"]
        inside = {ev.code for ev in doc.evidence if b <= ev.begin and ev.end <= e}
        assert set(row["codes"]) == inside and inside
        # never cut a quote: no evidence span straddles the window edges
        assert not [ev for ev in doc.evidence if ev.begin < b < ev.end or ev.begin < e < ev.end]
        answer = _answer(row, renderer)
        assert [c["code"] for c in answer["codes"]] == row["codes"]
        for item in answer["codes"]:
            quotes = {
                doc.text[ev.begin : ev.end]
                for ev in doc.evidence
                if ev.code == item["code"] and b <= ev.begin and ev.end <= e
            }
            assert set(item["evidence"]) == quotes


def test_every_quote_is_verbatim_in_its_prompt_and_answers_fit_the_schema(built, tiny_model) -> None:
    _, _, hf = built
    renderer = Renderer(load_tokenizer(str(tiny_model)), load_prompt(), "icd10cm")
    n = 0
    for split in ("train", "validation"):
        for row in hf[split]:
            answer = _answer(row, renderer)
            assert answer_errors(answer) == []
            for item in answer["codes"]:
                for quote in item["evidence"]:
                    assert quote in row["text"] and quote in row["prompt"]
                    n += 1
    assert n > 300


def test_negatives_are_empty_and_evidence_free(built, demo_corpus) -> None:
    _, _ds, hf = built
    docs = _docs(demo_corpus)
    negatives = [r for r in hf["train"] if r["kind"] == "negative"]
    spans = [r for r in hf["train"] if r["kind"] == "span"]
    assert negatives and len(negatives) == round(0.5 * len(spans))
    for row in negatives:
        assert row["completion"].startswith('{"codes":[]}') and row["codes"] == []
        doc = docs[row["source"]]
        assert not [ev for ev in doc.evidence if ev.begin < row["end"] and ev.end > row["begin"]]


def test_training_prompts_are_the_requests_predict_sends(built, tiny_model) -> None:
    _recipe, ds, hf = built
    tok = load_tokenizer(str(tiny_model))
    renderer = Renderer(tok, load_prompt(ds.record.recipe["data"]["prompt"]), "icd10cm")
    for row in hf["train"].select(range(50)):
        assert row["text"] in row["prompt"]
        # `predict --endpoint` sends messages: the server renders them with the model's own chat template
        served = tok.apply_chat_template(renderer.messages(row["text"]), add_generation_prompt=True, tokenize=False)
        assert row["prompt"] == served
        # the in-process engine is given token ids: the same ones training tokenised the prompt into
        assert tok(row["prompt"], add_special_tokens=False)["input_ids"] == renderer.prompt_ids(row["text"])
    assert ds.record.prompt.model_dump() == load_prompt().describe()


def test_document_examples_cover_each_note_in_overlapping_windows_within_budget(built, tiny_model, demo_corpus) -> None:
    recipe, _, hf = built
    docs = _docs(demo_corpus)
    tok = load_tokenizer(str(tiny_model))
    budget = recipe.windows.max_tokens
    assert recipe.windows.overlap_tokens > 0
    rows = [r for r in hf["train"] if r["kind"] == "document"]
    assert rows
    for source in {r["source"] for r in rows}:
        text = docs[source].text
        cut = sorted((r["begin"], r["end"]) for r in rows if r["source"] == source)
        assert len(cut) > 1  # these demo notes are longer than one window
        assert cut[0][0] == 0 and cut[-1][1] == len(text)  # nothing of the note is left out
        for (b1, e1), (b2, _) in itertools.pairwise(cut):
            assert b1 < b2 < e1  # each window starts inside the previous one: no gap, some shared context
        for b, e in cut:
            assert len(tok(text[b:e], add_special_tokens=False)["input_ids"]) <= budget


def test_synthetic_spans_widen_the_code_space(built) -> None:
    _, ds, hf = built
    synthetic = [r for r in hf["train"] if r["kind"] == "synthetic"]
    codes = {c for r in synthetic for c in r["codes"]}
    assert {"I21.9", "G43.909"} <= codes  # requested codes absent from the demo notes
    assert all(r["origin"] == "offline" for r in synthetic)
    assert "I21.9" in ds.record.codes


def test_stats_account_every_token(built) -> None:
    _, ds, hf = built
    stats = ds.stats
    rows = list(hf["train"])
    assert stats["train"]["examples"] == len(rows)
    assert stats["train"]["tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    for kind, k in stats["train"]["by_kind"].items():
        assert k["examples"] == sum(1 for r in rows if r["kind"] == kind)
    assert stats["codes_covered"] == len(ds.record.codes) == len({c for r in rows for c in r["codes"]})


def test_mixture_shares_seed_and_cost(tmp_path: Path, tiny_model: Path, demo_corpus: Path) -> None:
    def build(name: str, **data) -> dict:
        recipe = load_recipe(
            write_recipe(tmp_path, tiny_model, demo_corpus, synthesis={"offline_fallback": False}, **data)
        )
        return open_dataset(build_dataset(recipe, tmp_path / name).out_dir)

    every_span = build("all", span={"fraction": 1.0, "negative_rate": 0.0}, document={"fraction": 0.0})
    quarter = build("a", span={"fraction": 0.25, "negative_rate": 0.0}, document={"fraction": 0.0})
    again = build("b", span={"fraction": 0.25, "negative_rate": 0.0}, document={"fraction": 0.0})
    documents = build("docs", span={"fraction": 0.0, "negative_rate": 0.0}, document={"fraction": 1.0})

    rows = list(quarter.load()["train"])
    full = {(r["source"], r["begin"], r["end"]) for r in every_span.load()["train"]}
    assert {r["kind"] for r in rows} == {"span"}
    assert {(r["source"], r["begin"], r["end"]) for r in rows} < full  # a sample of the same span examples
    assert abs(len(rows) - len(full) / 4) <= 1
    assert [r["prompt"] for r in rows] == list(again.load()["train"]["prompt"])  # same seed, same sample
    # the cost baseline is what document-only SFT on the same notes really trains on
    doc_tokens = documents.stats["train"]["tokens"]
    assert quarter.stats["document_only_sft"]["tokens"] == doc_tokens
    assert quarter.stats["token_cost_vs_document_sft"] == pytest.approx(
        quarter.stats["train"]["tokens"] / doc_tokens, abs=1e-4
    )
    assert quarter.stats["token_cost_vs_document_sft"] < 0.6  # a quarter of the spans costs far less


def test_failed_rebuild_keeps_the_old_dataset(tmp_path: Path, tiny_model: Path, demo_corpus: Path, monkeypatch) -> None:
    path = write_recipe(tmp_path, tiny_model, demo_corpus, span={"fraction": 0.2}, document={"fraction": 0.0})
    out = tmp_path / "ds"
    build_dataset(load_recipe(path), out)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(build_mod, "document_only_tokens", boom)
    with pytest.raises(RuntimeError):
        build_dataset(load_recipe(path), out)
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")] == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"span": {"negativ_rate": 0.2}},
            r"field 'data\.span\.negativ_rate': unknown key \(did you mean 'negative_rate'\?\)",
        ),
        (
            {"span": {"fraction": 1.5}},
            r"field 'data\.span\.fraction': Input should be less than or equal to 1",
        ),
        ({"document": {"fraction": -0.1}}, r"field 'data\.document\.fraction'"),
        ({"train": [{"demo": {"spilt": "train"}}]}, r"field 'data\.train': item 0: demo\.spilt: unknown key"),
    ],
)
def test_bad_recipes_fail_with_the_key_named(tmp_path, tiny_model, demo_corpus, change, message) -> None:
    with pytest.raises(SclError, match=message):
        load_recipe(write_recipe(tmp_path, tiny_model, demo_corpus, **change))


def test_window_smaller_than_a_quote(tmp_path: Path, tiny_model: Path, demo_corpus: Path) -> None:
    quote = "acute on chronic systolic and diastolic congestive heart failure with reduced ejection fraction"
    note = {
        "id": "long",
        "text": f"Assessment: {quote}. Plan: diuresis.",
        "evidence": [{"begin": 12, "end": 12 + len(quote), "code": "I50.9"}],
    }
    (tmp_path / "notes.jsonl").write_text(json.dumps(note) + "\n")
    path = write_recipe(tmp_path, tiny_model, demo_corpus, train=[str(tmp_path / "notes.jsonl")], validation=[])
    recipe = load_recipe(path, ["windows.max_tokens=32", "windows.overlap_tokens=0"])
    with pytest.raises(SclError, match=r"windows\.max_tokens \(32\) is smaller than the quote of I50\.9 in note long"):
        build_dataset(recipe, tmp_path / "ds")


def test_not_a_dataset_dir(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(SclError, match="not a dataset written by `sclcoder data build`"):
        open_dataset(tmp_path / "junk")


def test_every_target_is_accepted_by_the_grounding_grammar_of_its_window(built, tiny_model) -> None:
    # a target the grammar rejects would be an answer grounded decoding can never produce
    import xgrammar
    from xgrammar.testing import _is_grammar_accept_string as accepts

    from sclcoder.infer.grounding import answer_grammar

    _, ds, hf = built
    end = Renderer(load_tokenizer(str(tiny_model)), load_prompt(), "icd10cm").end_of_turn
    rows = [(row, ds.record.codes) for row in hf["train"]]
    # validation notes may name codes the training split never saw: their quotes must still be reachable
    rows += [(row, [*ds.record.codes, *row["codes"]]) for row in hf["validation"]]
    assert len(rows) > 100
    rejected = [
        (row["kind"], row["completion"][:120])
        for row, codes in rows
        if not accepts(
            xgrammar.Grammar.from_ebnf(answer_grammar(row["text"], codes)), row["completion"].removesuffix(end)
        )
    ]
    assert rejected == []
