"""Code-centric synthesis with a teacher LLM: filters as pure functions, and the whole path against a
real vLLM server started on loopback."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from sclcoder.data.documents import Document
from sclcoder.errors import SclError
from sclcoder.recipe import SynthesisSection, load_recipe
from sclcoder.sft.build import build_dataset
from sclcoder.sft.teacher import apply_rationales, is_loopback, snippets_to_examples
from tests.helpers import write_recipe

CFG = SynthesisSection(min_quote_chars=3, max_quote_chars=80)


def test_snippets_are_kept_only_when_their_evidence_aligns() -> None:
    answer = {
        "snippets": [
            {"text": "Assessment: acute MI, started heparin drip.", "evidence": "acute MI"},
            {"text": "Troponin rising, consistent with an NSTEMI today.", "evidence": "nstemi"},  # case differs
            {"text": "Patient denies chest pain or pressure today.", "evidence": "myocardial infarction"},
            {"text": "Assessment:  acute MI, started heparin drip.", "evidence": "acute MI"},  # duplicate
            {"text": "short", "evidence": "MI"},
            {"text": 42, "evidence": "x"},
        ]
    }
    skipped: Counter = Counter()
    out = snippets_to_examples("I21.9", answer, CFG, skipped, set())
    assert [(ex.text, ex.targets) for ex in out] == [
        ("Assessment: acute MI, started heparin drip.", [("I21.9", ["acute MI"])]),
        ("Troponin rising, consistent with an NSTEMI today.", [("I21.9", ["NSTEMI"])]),  # verbatim from text
    ]
    assert skipped == Counter(
        {
            "evidence not found in its snippet": 1,
            "duplicate snippet": 1,
            "snippet or evidence out of length bounds": 1,
            "snippet of the wrong shape": 1,
        }
    )


def test_rationales_become_aligned_evidence() -> None:
    doc = Document("n1", "PMH: Type 2 diabetes, HTN.\nHospital course: hypertension controlled.", {"E11.9", "I10"})
    answer = {
        "evidence": [
            {"code": "E119", "quotes": ["type 2 diabetes"]},  # undotted code, different case
            {"code": "I10", "quotes": ["HTN", "hypertension controled"]},  # second quote has a typo -> fuzzy
            {"code": "J18.9", "quotes": ["pneumonia"]},  # not a code of this note
            {"code": "I10", "quotes": ["blood pressure was high"]},  # not in the note
        ]
    }
    skipped: Counter = Counter()
    out = apply_rationales(doc, answer, CFG, skipped)
    got = sorted((ev.code, doc.text[ev.begin : ev.end]) for ev in out.evidence)
    assert got == [("E11.9", "Type 2 diabetes"), ("I10", "HTN"), ("I10", "hypertension controlled")]
    assert skipped == Counter({"rationale for a code the note does not have": 1, "quote not found in the note": 1})


def test_loopback_detection() -> None:
    assert is_loopback("http://127.0.0.1:8000/v1") and is_loopback("http://localhost/v1")
    assert not is_loopback("https://api.example.com/v1") and not is_loopback("http://10.0.0.5:8000/v1")


def _teacher_recipe(tmp_path: Path, tiny_model: Path, demo_corpus: Path, endpoint: str, **synthesis) -> Path:
    syn = {
        "rare_threshold": 1,
        "per_code": 2,
        "codes": ["I21.9", "G43.909"],
        "cache_dir": str(tmp_path / "cache"),
        "teacher": {"endpoint": endpoint, "model": "adapter", "max_tokens": 3, "concurrency": 2, "max_retries": 1},
    }
    syn.update(synthesis)
    return write_recipe(
        tmp_path, tiny_model, demo_corpus, synthesis=syn, span={"fraction": 0.1}, document={"fraction": 0.0}
    )


@pytest.mark.engine
def test_teacher_against_a_live_vllm_server(tmp_path, tiny_model, demo_corpus, vllm_server) -> None:
    path = _teacher_recipe(tmp_path, tiny_model, demo_corpus, vllm_server.base_url)
    first = build_dataset(load_recipe(path), tmp_path / "a").stats["synthesis"]
    assert first["targets"] == ["G43.909", "I21.9"]
    # cut at 3 tokens, no answer can be complete JSON: each one is a counted skip, and the offline
    # fallback still widens the code space
    assert first["teacher"]["requests_sent"] == 2
    assert first["teacher"]["skipped"] == {"answer not JSON": 2}
    assert first["by_origin"] == {"offline": 4}
    # a rerun asks the server nothing: every answer comes from the request cache
    again = build_dataset(load_recipe(path), tmp_path / "b").stats["synthesis"]
    assert again["teacher"]["requests_sent"] == 0 and again["teacher"]["cache_hits"] == 2
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2


@pytest.mark.engine
def test_rationales_from_a_live_server(tmp_path, tiny_model, demo_corpus, vllm_server) -> None:
    notes = tmp_path / "mimic4.jsonl"
    notes.write_text(
        "".join(
            json.dumps({"id": f"m{i}", "text": f"Discharge note {i}: HTN, T2DM.", "codes": ["I10", "E11.9"]}) + "\n"
            for i in range(3)
        )
    )
    path = _teacher_recipe(
        tmp_path, tiny_model, demo_corpus, vllm_server.base_url, rationales=True, codes=[], rare_threshold=0
    )
    recipe = load_recipe(path, [f"data.train=[{notes}]", "data.validation=[]"])
    with pytest.raises(SclError, match="none of the 3 training notes has evidence"):
        build_dataset(recipe, tmp_path / "ds")
    cached = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("*.json")]
    assert len(cached) == 3 and all("Discharge note" in c["request"][1]["content"] for c in cached)


def _good_teacher(name: str, messages: list[dict]) -> dict:
    """What a capable teacher answers: for each code an excerpt whose evidence it contains, and one whose
    evidence it does not (to be filtered out); for a note, quotes of it for its codes, and one that is not."""
    if name == "snippets":
        code = re.search(r"the ICD-10-CM code (\S+) ", messages[-1]["content"]).group(1)  # type: ignore[union-attr]
        return {
            "snippets": [
                {"text": f"Assessment: condition {code} confirmed on imaging today.", "evidence": f"condition {code}"},
                {"text": "Patient resting comfortably, no acute events.", "evidence": "myocardial infarction"},
            ]
        }
    return {"evidence": [{"code": "I10", "quotes": ["HTN"]}, {"code": "E11.9", "quotes": ["T2DM", "gout"]}]}


def test_a_teacher_that_answers_well_widens_the_data(tmp_path, tiny_model, demo_corpus) -> None:
    from datasets import load_from_disk

    from tests.helpers import ScriptedTeacher

    with ScriptedTeacher(_good_teacher) as teacher:
        path = _teacher_recipe(tmp_path, tiny_model, demo_corpus, teacher.base_url)
        stats = build_dataset(load_recipe(path), tmp_path / "ds").stats["synthesis"]
    assert len(teacher.requests) == 2 and stats["targets"] == ["G43.909", "I21.9"]
    # one excerpt of each answer kept, the other refused because its evidence is not in it
    assert stats["teacher"]["skipped"] == {"evidence not found in its snippet": 2}
    assert stats["by_origin"] == {"teacher": 2}
    rows = load_from_disk(str(tmp_path / "ds" / "hf"))["train"]
    synthetic = {r["text"]: r["completion"] for r in rows if r["kind"] == "synthetic"}
    for code in ("G43.909", "I21.9"):
        text = f"Assessment: condition {code} confirmed on imaging today."
        assert text in synthetic and f'"evidence":["condition {code}"],"code":"{code}"' in synthetic[text]

    notes = tmp_path / "mimic4.jsonl"  # codes, no evidence: the teacher's quotes become it
    notes.write_text(json.dumps({"id": "m1", "text": "PMH: HTN, T2DM. Seen today.", "codes": ["I10", "E11.9"]}) + "\n")
    with ScriptedTeacher(_good_teacher) as teacher:
        (tmp_path / "r").mkdir()
        path = _teacher_recipe(
            tmp_path / "r", tiny_model, demo_corpus, teacher.base_url, rationales=True, codes=[], rare_threshold=0
        )
        sets = [f"data.train=[{notes}]", "data.validation=[]", "data.span={fraction: 1.0, negative_rate: 0.0}"]
        stats = build_dataset(load_recipe(path, sets), tmp_path / "ds2").stats
    rows = load_from_disk(str(tmp_path / "ds2" / "hf"))["train"]
    answers = [json.loads(r["completion"].split("<")[0]) for r in rows if r["kind"] == "span"]
    quoted = {(c["code"], q) for a in answers for c in a["codes"] for q in c["evidence"]}
    assert {("I10", "HTN"), ("E11.9", "T2DM")} <= quoted and not any(q == "gout" for _, q in quoted)
    assert stats["synthesis"]["teacher"]["requests_sent"] == 1


def test_endpoint_down_is_one_clear_error(tmp_path, tiny_model, demo_corpus) -> None:
    from tests.helpers import free_port

    path = _teacher_recipe(tmp_path, tiny_model, demo_corpus, f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(
        SclError, match=r"field 'data\.synthesis\.teacher\.endpoint': teacher endpoint .* is not reachable"
    ):
        build_dataset(load_recipe(path), tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_notes_never_go_to_a_remote_endpoint_unless_allowed(tmp_path, tiny_model, demo_corpus) -> None:
    path = _teacher_recipe(tmp_path, tiny_model, demo_corpus, "http://10.255.255.1:9/v1", rationales=True)
    with pytest.raises(SclError, match=r"send_notes': rationales send whole notes to http://10\.255\.255\.1"):
        build_dataset(load_recipe(path), tmp_path / "ds")


def test_synthesis_on_or_off_leaves_the_other_examples_as_they_were(tmp_path, tiny_model, demo_corpus) -> None:
    from datasets import load_from_disk

    def rows(name: str, synthesis: dict) -> list[tuple]:
        (tmp_path / name).mkdir()
        path = write_recipe(tmp_path / name, tiny_model, demo_corpus, synthesis=synthesis)
        build_dataset(load_recipe(path), tmp_path / name / "ds")
        train = load_from_disk(str(tmp_path / name / "ds" / "hf"))["train"]
        return sorted((r["kind"], r["source"], r["begin"], r["end"], r["completion"]) for r in train)

    on = rows("on", {"offline_fallback": True, "rare_threshold": 2, "per_code": 2, "codes": ["I21.9", "G43.909"]})
    off = rows("off", {"offline_fallback": False})
    assert sum(r[0] == "synthetic" for r in on) > 0
    # the ablation differs by the synthesised examples only, not by another sample of windows and documents
    assert [r for r in on if r[0] != "synthetic"] == off


def test_offline_fallback_alone(tmp_path, tiny_model, demo_corpus) -> None:
    from sclcoder.data.codes import CodeSystem
    from sclcoder.sft.examples import offline_examples

    exs = offline_examples("I48.91", CodeSystem.ICD10CM, 3, random.Random(0))
    assert len(exs) == 3
    for ex in exs:
        ((code, (quote,)),) = ex.targets
        assert code == "I48.91" and quote.lower() == "atrial fibrillation" and quote in ex.text
