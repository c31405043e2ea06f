"""Task metrics on the validation notes while training, and the adapter chosen by them (sclcoder.task_eval),
with the real trainer (TRL + PEFT), vLLM and transformers' constrained decoding on a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from sclcoder.artifacts import open_adapter
from sclcoder.backbones import resolve_model
from sclcoder.errors import SclError
from sclcoder.infer.predict import predict
from sclcoder.recipe import load_recipe
from sclcoder.task_eval import METRICS, train_and_select
from tests.helpers import assert_same_codes, tiny_recipe


def _with_task_eval(path: Path, **task_eval) -> Path:
    recipe = yaml.safe_load(path.read_text())
    recipe["task_eval"] = task_eval
    recipe["predict"] = {"max_new_tokens": 64}  # a random model rambles; every window would decode 512 tokens
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_the_adapter_kept_is_the_best_scored_step(
    tmp_path: Path, tiny_model: Path, demo_corpus: Path, tiny_dataset: Path, scoring_engine
) -> None:
    # a high rate, so that the two steps answer differently even where a tiny model says little
    path = tiny_recipe(
        tmp_path, tiny_model, demo_corpus, max_steps=2, save_steps=1, learning_rate=3e-2, dataset=tiny_dataset
    )
    recipe = load_recipe(_with_task_eval(path, eval_steps=1, max_notes=2))
    folder = Path(recipe.train.output_dir) / "task-eval"
    # an engine handed in (a sweep's, shared by its runs: here the session's engine on the tiny model's base
    # weights) scores every step and is left running, holding the last step's weights: what it writes now is
    # what it wrote at step 2
    shared = scoring_engine
    assert shared.model == resolve_model(recipe.model.model_name_or_path)
    result = train_and_select(recipe, overwrite=True, engine=shared)
    last_step = (folder / "step-2.predictions.jsonl").read_text().splitlines()
    predict(folder / "validation-notes.jsonl", tmp_path / "shared.jsonl", adapter=result.adapter, engine=shared)
    other = recipe.model_copy(deep=True)
    other.model.model_name_or_path = str(tmp_path)
    with pytest.raises(SclError, match="engine handed") as err:  # it cannot score another base model
        train_and_select(other, overwrite=True, engine=shared)
    assert err.value.field == "model.model_name_or_path"
    local = recipe.model_copy(deep=True)
    local.task_eval.engine = "transformers"
    with pytest.raises(SclError, match="handed in") as err:  # nor go unused beside transformers' generate
        train_and_select(local, overwrite=True, engine=shared)
    assert err.value.field == "task_eval.engine"
    now = (tmp_path / "shared.jsonl").read_text().splitlines()
    assert [json.loads(x)["windows"] for x in now] == [json.loads(x)["windows"] for x in last_step]

    record = open_adapter(result.adapter_dir).record
    history = record.task_eval["history"]
    assert [h["step"] for h in history] == [1, 2]
    assert all(0.0 <= h[m] <= 1.0 for h in history for m in METRICS)
    assert 0 < history[0]["tokens"] < history[1]["tokens"]  # tokens seen grow with the steps
    best = max(history, key=lambda h: (h["codes_micro_f1"], -h["step"]))  # ties go to the earlier step
    assert record.task_eval["selected_step"] == best["step"]
    assert json.loads((folder / "history.json").read_text()) == history
    kept = load_file(folder / f"step-{best['step']}" / "adapter_model.safetensors")
    final = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert kept.keys() == final.keys() and all((kept[k] == final[k]).all() for k in kept)

    with pytest.raises(SclError):  # a finished run is not trained over, and its scores stay
        train_and_select(recipe)
    assert json.loads((folder / "history.json").read_text()) == history

    # the engine took each step's weights in place: what it wrote is what `predict` writes for the saved
    # adapter of that step, read back from disk and merged (an engine given new weights answers as the adapter
    # does on an engine of its own: test_a_merged_model_predicts_what_its_adapter_predicts)
    from sclcoder.infer.merge import merged_weights, peft_model

    step = folder / f"step-{best['step']}"
    ad = open_adapter(step)
    shared.load_weights(merged_weights(peft_model(ad)))
    predict(folder / "validation-notes.jsonl", tmp_path / "again.jsonl", adapter=ad, engine=shared)
    during = [json.loads(x) for x in (folder / f"step-{best['step']}.predictions.jsonl").read_text().splitlines()]
    again = [json.loads(x) for x in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert [r["windows"] for r in during] == [r["windows"] for r in again]
    assert_same_codes(during, again)
    for step in (1, 2):  # and the weights changed between the steps: the engine did not keep serving step 1's
        rows = [json.loads(x) for x in (folder / f"step-{step}.predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and {r["engine"] for r in rows} == {"merged"}
    first, second = ((folder / f"step-{s}.predictions.jsonl").read_text() for s in (1, 2))
    assert [json.loads(x)["windows"] for x in first.splitlines()] != [
        json.loads(x)["windows"] for x in second.splitlines()
    ]


def test_task_eval_without_validation_notes_is_one_clear_error(
    tmp_path: Path, tiny_model: Path, demo_corpus: Path
) -> None:
    path = tiny_recipe(tmp_path, tiny_model, demo_corpus, max_steps=2)
    recipe = yaml.safe_load(_with_task_eval(path, eval_steps=1).read_text())
    recipe["data"]["validation"] = []
    recipe["data"]["validation_fraction"] = 0.0
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(SclError, match="validation notes") as err:
        train_and_select(load_recipe(path), overwrite=True)
    assert err.value.field == "task_eval.eval_steps"


def test_an_earlier_better_step_replaces_the_last_one(
    tmp_path: Path, tiny_model: Path, demo_corpus: Path, tiny_dataset: Path, monkeypatch
) -> None:
    import sclcoder.task_eval as task_eval
    from sclcoder.eval.report import EvalReport

    # the scores are made to fall with the steps, so that the swap to an earlier adapter must happen
    monkeypatch.setattr(EvalReport, "codes_micro_f1", property(lambda report: 1.0 / (1 + len(scored_steps))))
    scored_steps: list[int] = []
    original = task_eval.TaskEval.score

    def score(self, step, model, tokenizer):  # type: ignore[no-untyped-def]
        original(self, step, model, tokenizer)
        scored_steps.append(step)

    monkeypatch.setattr(task_eval.TaskEval, "score", score)
    path = tiny_recipe(tmp_path, tiny_model, demo_corpus, max_steps=2, save_steps=1, dataset=tiny_dataset)
    recipe = load_recipe(_with_task_eval(path, eval_steps=1, max_notes=1, engine="transformers"))
    result = train_and_select(recipe, overwrite=True)

    folder = Path(recipe.train.output_dir) / "task-eval"
    for step in (1, 2):  # the model in memory, decoded by transformers, constrained as predict constrains
        rows = [json.loads(x) for x in (folder / f"step-{step}.predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and {r["engine"] for r in rows} == {"transformers"}
        for r in rows:  # a random model may ramble until max_new_tokens; every answer it finished is valid
            cut = {e.split(":")[0] for e in r["errors"] if "cut at max_new_tokens" in e}
            assert all(w["answer_valid"] or f"window {i}" in cut for i, w in enumerate(r["windows"]))
        assert all(e["match"] == "exact" for r in rows for c in r["codes"] for e in c["evidence"])
    record = open_adapter(result.adapter_dir).record
    assert [h["codes_micro_f1"] for h in record.task_eval["history"]] == [1.0, 0.5]
    assert record.task_eval["selected_step"] == 1
    final = load_file(result.adapter_dir / "adapter_model.safetensors")
    step1 = load_file(Path(recipe.train.output_dir) / "task-eval" / "step-1" / "adapter_model.safetensors")
    last = load_file(Path(recipe.train.output_dir) / "checkpoint-2" / "adapter_model.safetensors")
    assert all((final[k] == step1[k]).all() for k in step1)
    assert any((final[k] != last[k]).any() for k in last)  # not the weights training ended with
    assert "train_runtime" in record.metrics  # the run's own metrics, not those of the midway save
    assert not (Path(recipe.train.output_dir) / "task-eval" / "step-2").exists()  # only the kept one stays


def test_merged_weights_are_the_merge_and_leave_the_model_as_it_was(tiny_adapter: Path, tiny_model: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sclcoder.infer.merge import merged_weights

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tiny_adapter)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pushed = dict(merged_weights(model))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tiny_adapter)
    reference = merged.merge_and_unload().state_dict()
    lora_targets = {k for k in reference if k.endswith(("q_proj.weight", "v_proj.weight"))}
    assert lora_targets and lora_targets <= pushed.keys()  # every layer LoRA trains, named as the checkpoint
    assert all(torch.allclose(pushed[k], reference[k], atol=1e-6) for k in pushed)
    assert any(not torch.equal(pushed[k], before[f"base_model.model.{k[:-7]}.base_layer.weight"]) for k in pushed)
