"""Training with the real engines (TRL, PEFT, bitsandbytes, DeepSpeed) on a tiny random Llama, on CPU."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from sclcoder.artifacts import open_adapter
from sclcoder.cli import app
from sclcoder.errors import SclError
from sclcoder.recipe import load_recipe
from sclcoder.train.trainer import build_trainer, ensure_dataset, train
from tests.helpers import DEMO_CHARTS, DEMO_SEED, processes_with, tiny_recipe

REPO = Path(__file__).resolve().parents[1]


def test_lora_sft_lowers_the_loss_and_the_adapter_reloads(tiny_adapter: Path, tiny_model: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = open_adapter(tiny_adapter)
    losses = [h["loss"] for h in adapter.record.loss_history]
    assert len(losses) == 30
    assert sum(losses[-5:]) < 0.85 * sum(losses[:5])  # a random tiny model: a clear fall, not convergence
    assert adapter.record.prompt.name == "evidence-coding" and adapter.record.codes
    assert 0 < adapter.record.tokens_seen <= 30 * 4 * 512  # steps x batch x max_length bounds what TRL counted
    assert (tiny_adapter / "adapter_config.json").exists()

    tok = AutoTokenizer.from_pretrained(tiny_adapter)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(base, tiny_adapter)
    # the saved weights are the trained ones: LoRA B starts at zero and must have moved
    b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert b and all(p.abs().sum() > 0 for p in b)
    prompt = tok.apply_chat_template([{"role": "user", "content": "HTN"}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_labels_mask_everything_but_the_answer(
    tmp_path: Path, tiny_model: Path, demo_corpus: Path, tiny_dataset: Path
) -> None:
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_model, demo_corpus, dataset=tiny_dataset))
    dataset = ensure_dataset(recipe)
    trainer = build_trainer(recipe, dataset)
    rows = dataset.load()["train"]
    batch = next(iter(trainer.get_train_dataloader()))
    tok = trainer.processing_class
    for input_ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        learned = tok.decode(input_ids[labels != -100])
        text = tok.decode(input_ids[input_ids != tok.pad_token_id])
        row = next(r for r in rows if text.startswith(r["prompt"]) or r["prompt"] in text)
        assert learned == row["completion"]  # the JSON answer and the end-of-turn token, nothing of the prompt
        assert learned.endswith(tok.eos_token) and learned.startswith('{"codes":')


def test_batches_made_only_of_empty_answers_are_counted(
    tmp_path: Path, tiny_model: Path, demo_corpus: Path, tiny_dataset: Path
) -> None:
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_model, demo_corpus, dataset=tiny_dataset))
    trainer = build_trainer(recipe, ensure_dataset(recipe))
    counter, tok = trainer.data_collator, trainer.processing_class
    rows = list(trainer.train_dataset)

    def answer(row: dict) -> str:
        return tok.decode([t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100])

    empty = [r for r in rows if answer(r).startswith('{"codes":[]}')]
    coded = [r for r in rows if not answer(r).startswith('{"codes":[]}')]
    assert len(empty) >= 3 and coded
    counter(empty[:2])
    counter([empty[2], coded[0]])
    counter(coded[:1])
    stats = counter.stats()
    assert stats["batches_drawn"] == 3
    assert stats["all_empty_batch_share"] == round(1 / 3, 4)
    assert stats["empty_answer_share"] == round(3 / 5, 4)


def test_scoring_only_answer_positions_leaves_loss_and_gradients_unchanged(
    tmp_path: Path, tiny_model: Path, demo_corpus: Path, tiny_dataset: Path, monkeypatch
) -> None:
    import trl.trainer.utils as trl_utils

    recipe = load_recipe(tiny_recipe(tmp_path, tiny_model, demo_corpus, dataset=tiny_dataset))
    trainer = build_trainer(recipe, ensure_dataset(recipe))
    assert trl_utils._use_triton(torch.device("cpu"))  # build_trainer switched TRL to answer positions only
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] == -100).float().mean() > 0.3  # a prompt worth skipping

    def loss_and_grads() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    compact_loss, compact_grads = loss_and_grads()
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)  # TRL's own CPU path: every position
    full_loss, full_grads = loss_and_grads()
    assert compact_grads and compact_grads.keys() == full_grads.keys()
    torch.testing.assert_close(compact_loss, full_loss, rtol=1e-5, atol=1e-6)
    for name, grad in compact_grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_train_section_is_sftconfig_by_name(tmp_path: Path, tiny_model: Path, demo_corpus: Path) -> None:
    from dataclasses import fields

    from trl import SFTConfig

    from sclcoder.recipe import TrainSection
    from sclcoder.train.trainer import sft_config

    # every key of the train section is an SFTConfig argument, except the two sclcoder resolves itself
    assert set(TrainSection.model_fields) - {"bf16", "torch_threads"} <= {f.name for f in fields(SFTConfig)}
    sets = ["train.weight_decay=0.05", "train.save_total_limit=3", "train.eval_strategy=steps", "train.eval_steps=7"]
    args = sft_config(load_recipe(tiny_recipe(tmp_path, tiny_model, demo_corpus), sets), has_eval=True)
    assert (args.weight_decay, args.save_total_limit, args.eval_steps, args.learning_rate) == (0.05, 3, 7, 3e-3)
    assert args.completion_only_loss and args.data_seed == args.seed == 1


def test_qlora_4bit_trains_on_cpu(tmp_path: Path, tiny_model: Path, demo_corpus: Path, tiny_dataset: Path) -> None:
    path = tiny_recipe(tmp_path, tiny_model, demo_corpus, max_steps=4, dataset=tiny_dataset)
    recipe = load_recipe(path, ["quantization.load_in_4bit=true", "quantization.bnb_4bit_compute_dtype=float32"])
    result = train(recipe)
    meta = open_adapter(result.adapter_dir).record
    assert meta.recipe["quantization"]["load_in_4bit"] is True
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in meta.loss_history)
    weights = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert weights and all(t.abs().sum() > 0 for k, t in weights.items() if "lora_B" in k)


def test_bitsandbytes_missing_is_one_clear_error(tmp_path, tiny_model, demo_corpus, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    recipe = load_recipe(tiny_recipe(tmp_path, tiny_model, demo_corpus), ["quantization.load_in_4bit=true"])
    with pytest.raises(SclError, match="4-bit loading needs bitsandbytes"):
        train(recipe)


def _env(**extra: str) -> dict[str, str]:
    env = os.environ.copy()
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "sclcoder" / "torch_extensions"))
    env.update(extra)
    return env


def _deepspeed_recipe(
    tmp_path: Path, tiny_model: Path, demo_corpus: Path, stage: int, dataset: Path | None = None, **train
) -> Path:
    path = tiny_recipe(tmp_path, tiny_model, demo_corpus, name=f"zero{stage}", dataset=dataset, **train)
    data = yaml.safe_load(path.read_text())
    data["deepspeed"] = str(REPO / "recipes" / "deepspeed" / f"zero{stage}.json")
    path.write_text(yaml.safe_dump(data))
    return path


def _torchrun_node(path: Path, rank: int, head: str, *extra: str) -> list[str]:
    """recipes/slurm/train_torchrun.sbatch's line on node `rank` of 2, with one process per node."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
            "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", head,
            "-m", "sclcoder.cli", "train", str(path), *extra]  # fmt: skip


def _accelerate_machine(path: Path, rank: int, port: int, *extra: str) -> list[str]:
    """recipes/slurm/train_accelerate.sbatch's line on machine `rank` of 2, with one process per machine."""
    launcher = Path(sys.executable).with_name("accelerate")
    return [str(launcher), "launch", "--multi_gpu", "--num_machines", "2", "--machine_rank", str(rank),
            "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            "-m", "sclcoder.cli", "train", str(path), *extra]  # fmt: skip


def test_two_nodes_zero3_killed_under_torchrun_resumed_under_accelerate(
    tmp_path: Path, tiny_model: Path, demo_corpus: Path, tiny_dataset: Path
) -> None:
    """Two "nodes" on this machine (one process each, gloo) under DeepSpeed ZeRO-3: started by torchrun with a c10d
    rendezvous, killed after a checkpoint, resumed by accelerate over 2 machines: the multi-node launches of the
    README (its single-node lines start the same ranks in one launcher; ZeRO-2 runs in the one-process test)."""
    from tests.helpers import free_port

    path = _deepspeed_recipe(tmp_path, tiny_model, demo_corpus, 3, dataset=tiny_dataset, max_steps=2, save_steps=1)
    out = tmp_path / "zero3"
    marker = f"SCLCODER_TEST_RUN={tmp_path.name}"  # torchrun starts its ranks in sessions of their own
    # one thread per rank, as on a node with a core per rank: two ranks of two OpenMP threads each oversubscribe
    # two cores (this test took 45 s in some runs of the suite and 100 s in others)
    env = _env(OMP_NUM_THREADS="1", **dict([marker.split("=")]))
    head = f"127.0.0.1:{free_port()}"
    nodes = [
        subprocess.Popen(_torchrun_node(path, r, head), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for r in (0, 1)
    ]
    done = out / "checkpoint-1" / "trainer_state.json"  # written once both ranks saved their shards
    deadline = time.monotonic() + 400
    while not done.exists() and time.monotonic() < deadline and all(n.poll() is None for n in nodes):
        time.sleep(0.05)
    for pid in processes_with(marker):  # a crash of the whole job: both launchers and both ranks at once
        os.kill(pid, signal.SIGKILL)
    for n in nodes:
        n.wait()
    assert done.exists() and not (out / "adapter").exists()

    port = free_port()
    machines = [
        subprocess.Popen(
            _accelerate_machine(path, r, port, "--resume"),
            env=_env(OMP_NUM_THREADS="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    said = [m.communicate(timeout=600) for m in machines]
    assert [m.returncode for m in machines] == [0, 0], said[0][1][-3000:] + said[1][1][-3000:]
    (stdout, stderr), (other_out, other_err) = said
    log = " ".join(stderr.split())
    assert log.count("precision: ") == 1  # said once, by the main process
    # no terminal: a plain progress line per logging step, from the main process only; continued, not restarted
    assert [log.count(f"train step {step}/2 | loss ") for step in (1, 2)] == [0, 1]
    assert "tok/s" in log and "pad " in log
    assert (stdout + stderr).count("adapter saved to") == 1  # rank 0 only: machine 0 speaks for the run
    assert "train step" not in other_err and "adapter saved to" not in other_out + other_err
    record = open_adapter(out).record
    assert record.world_size == 2 and record.recipe["deepspeed"].endswith("zero3.json")
    assert [h["step"] for h in record.loss_history] == [1, 2]
    # the data was sharded: each rank draws batches of 4 from its own half, so an epoch is half as many steps
    # as one process would need
    steps_per_epoch = math.ceil(math.ceil(record.train_examples / 2) / 4)
    assert record.metrics["epoch"] == pytest.approx(2 / steps_per_epoch, abs=0.01)
    # one adapter, consolidated by rank 0: full LoRA matrices, not the empty shards ZeRO-3 keeps per rank
    assert [p.name for p in out.iterdir() if p.name.startswith("adapter")] == ["adapter"]
    weights = load_file(open_adapter(out).path / "adapter_model.safetensors")
    a = [t for k, t in weights.items() if "lora_A" in k]
    assert a and all(t.shape[0] == 8 and t.shape[1] in (256, 512) for t in a)  # hidden or intermediate size
    # and ZeRO-3 did partition: each rank kept the fp32 master copy of half the trainable parameters (plain
    # data parallelism would keep all of them on both ranks), and the checkpoint names stage 3
    import torch

    trainable = sum(t.numel() for t in weights.values())
    shards = []
    for rank in (0, 1):
        state = torch.load(
            out / "checkpoint-2" / "global_step2" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt",
            map_location="cpu",
            weights_only=False,
        )["optimizer_state_dict"]
        assert int(state["zero_stage"]) == 3 and state["partition_count"] == 2
        shards.append(sum(t.numel() for t in state["fp32_flat_groups"]))
    assert shards[0] == shards[1] and trainable <= sum(shards) < trainable + 2 * 64, (shards, trainable)


def test_one_process_under_deepspeed_without_a_launcher(
    tmp_path: Path, tiny_model: Path, demo_corpus: Path, tiny_dataset: Path
) -> None:
    # plain `sclcoder train` with a DeepSpeed recipe on a laptop: DeepSpeed must not go looking for MPI
    path = _deepspeed_recipe(tmp_path, tiny_model, demo_corpus, 2, dataset=tiny_dataset, max_steps=1)
    env = {k: v for k, v in _env().items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    proc = subprocess.run(
        [sys.executable, "-m", "sclcoder.cli", "train", str(path)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mpi" not in proc.stderr.lower()
    record = open_adapter(tmp_path / "zero2").record
    assert record.world_size == 1 and record.recipe["deepspeed"].endswith("zero2.json")


def test_a_checkpoint_cut_by_a_kill_is_not_resumed_from(tmp_path: Path) -> None:
    from sclcoder.train.trainer import checkpoints

    for step, complete in ((4, True), (8, True), (12, False)):  # killed while writing checkpoint-12
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-8"]


def test_resume_continues_a_killed_run(tmp_path: Path, tiny_model: Path, demo_corpus: Path, tiny_dataset: Path) -> None:
    path = tiny_recipe(tmp_path, tiny_model, demo_corpus, max_steps=8, save_steps=2, dataset=tiny_dataset)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sclcoder.cli", "train", str(path)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # killed the moment the second checkpoint's folder appears: most likely while it is being written
    deadline = time.monotonic() + 300
    while not (out / "checkpoint-4").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert (out / "checkpoint-2" / "trainer_state.json").exists() and not (out / "adapter").exists()
    recipe = load_recipe(path)
    with pytest.raises(SclError, match="holds checkpoints of an unfinished run"):
        train(recipe)
    result = train(recipe, resume=True)
    steps = [h["step"] for h in open_adapter(result.adapter_dir).record.loss_history]
    assert steps[-1] == 8 and killed_at < 8
    assert steps == sorted(set(steps))  # the resumed run picks up after the checkpoint, no step twice
    with pytest.raises(SclError, match="holds a finished run"):
        train(recipe)
    with pytest.raises(SclError, match="no checkpoint to resume from"):
        train(load_recipe(path, [f"train.output_dir={tmp_path / 'other'}"]), resume=True)


def test_dry_run_plans_llama8b_without_weights(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(REPO)
    cmd = ["train", "recipes/llama8b_scl.yaml", "--dry-run", "--devices", "8", "--for-device", "cuda"]
    result = CliRunner().invoke(app, cmd, env={"COLUMNS": "200"})  # one table row per line
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    cfg = yaml.safe_load((REPO / "recipes" / "llama8b_scl.yaml").read_text())["model"]["config"]
    h, i, kv = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_key_value_heads"]
    head = h // cfg["num_attention_heads"]
    r = 16  # LoRA on every linear layer: r * (in + out) per projection
    per_layer = r * ((h + h) * 2 + (h + kv * head) * 2 + (h + i) * 2 + (i + h))
    assert f"{per_layer * cfg['num_hidden_layers']:,} trainable" in text
    assert "8,030,261,248 total" in text  # the published size of Llama-3.1-8B
    assert "DeepSpeed ZeRO-2" in text and "GiB" in text
    assert "weights bfloat16, compute bfloat16 (auto: native bf16" in text  # `auto` resolved for the GPU planned


def test_dry_run_on_this_cpu_resolves_auto_from_its_flags(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # any machine plans as an AVX2 CPU would
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, ["train", "recipes/llama8b_scl.yaml", "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "weights float32, compute float32 (auto: bf16 would be emulated" in text


def test_bad_inputs(tmp_path: Path, tiny_model: Path, demo_corpus: Path) -> None:
    path = tiny_recipe(tmp_path, tiny_model, demo_corpus)
    (tmp_path / "junk").mkdir()
    with pytest.raises(SclError, match="not a dataset written by `sclcoder data build`"):
        train(load_recipe(path, [f"data.dataset_dir={tmp_path / 'junk'}"]))
    (tmp_path / "ds.json").write_text('{"zero_optimization": {"stage": 3,}')
    with pytest.raises(SclError, match=r"ds\.json:1: field 'deepspeed': DeepSpeed config does not parse"):
        load_recipe(path, [f"deepspeed={tmp_path / 'ds.json'}"])
    with pytest.raises(SclError, match=r"run\.yaml: field 'lora\.rank': unknown key \(did you mean 'r'\?\)"):
        load_recipe(path, ["lora.rank=8"])


@pytest.mark.slow
def test_smollm2_cpu_recipe_trains_a_few_steps(tmp_path: Path, monkeypatch, demo_corpus: Path) -> None:
    monkeypatch.chdir(REPO)
    recipe = load_recipe(
        "recipes/smollm2_cpu.yaml",
        [
            f"train.output_dir={tmp_path / 'smol'}",
            "train.max_steps=3",
            "train.logging_steps=1",
            f"data.train=[{{demo: {{split: train, corpus: {demo_corpus}, charts: {DEMO_CHARTS}, seed: {DEMO_SEED}}}}}]",
            "data.validation=[]",
            # a handful of short examples: the recipe's code path, not its cost
            "data.span={fraction: 1.0, max_examples: 12, context_size: 4, negative_rate: 0.0}",
            "data.document={fraction: 0.0}",
            "data.synthesis={offline_fallback: false}",
        ],
    )
    from sclcoder.demo.corpus import ensure_sources

    ensure_sources(recipe)  # as `sclcoder train` does: the stages read a corpus, the entry points generate it
    result = train(recipe)
    meta = open_adapter(result.adapter_dir).record
    assert meta.base_model == "smollm2-135m" and len(meta.loss_history) == 3
    assert json.loads((result.adapter_dir / "adapter_config.json").read_text())["r"] == 16
    # `bf16: auto` in the shipped recipe resolved by this machine's flags, and recorded with the adapter
    from sclcoder.device import current_device

    expected = "bfloat16" if current_device().bf16 else "float32"
    assert meta.precision.dtype == expected and meta.precision.reason.startswith("auto:")
    assert 0.0 <= meta.pad_share < 1.0
