"""One LoRA training step of the demo's model (SmolLM2-135M, LoRA r=16 on every linear layer, a fixed batch
of 4 x 150 tokens, forward + backward + optimizer step) in float32 and under bf16 autocast, on this CPU as
it is and capped to AVX2 (`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`). Each configuration runs in
its own process, because the caps act only when torch starts. Reports seconds per step, tokens/s and the
achieved FLOP/s against a nominal fp32 peak, and what `auto` precision chooses in each setting."""

from __future__ import annotations

import sys

from common import AVX2, in_child, table

from sclcoder.device import cpu_info

BATCH, TOKENS = 4, 150


def _probe(autocast: bool, steps: int, warmup: int) -> dict[str, float | str]:
    """Runs inside the child process: the median of `steps` timed steps after `warmup` untimed ones."""
    import time

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sclcoder.backbones import resolve_model
    from sclcoder.device import resolve_precision

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), dtype=torch.float32)
    frozen = sum(p.numel() for p in model.parameters())
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (BATCH, TOKENS))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    step = sorted(times)[len(times) // 2]
    # frozen weights: 2 flop/param/token forward and 2 more for the input gradients (no weight gradients)
    flops = 4 * frozen * BATCH * TOKENS
    return {"step_s": step, "gflops": flops / step / 1e9, "auto": resolve_precision("auto").dtype}


def _head_probe(answer_only: bool, steps: int = 3, warmup: int = 1) -> float:
    """Runs inside the child: the median float32 step with TRL's fused LM head, which SFTTrainer trains
    through, scoring every position (TRL's CPU default) or only the answer's (what sclcoder switches on).
    The last 30% of each row is the answer, about the demo data's share (`data build` stats)."""
    import time

    import torch
    import trl.trainer.utils as trl_utils
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sclcoder.backbones import resolve_model
    from sclcoder.train.trainer import score_supervised_positions_only

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), dtype=torch.float32)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # as SFTTrainer does
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    if answer_only:
        score_supervised_positions_only()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (BATCH, TOKENS))
    labels = ids.clone()
    labels[:, : int(0.7 * TOKENS)] = -100
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        model(input_ids=ids, labels=labels, fused_lm_head=True).loss.backward()
        optim.step()
        optim.zero_grad()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def measure(autocast: bool, env: dict[str, str]) -> dict[str, float | str]:
    # emulated bf16 on AVX2 takes over a minute a step: one timed step, first included (its one-time set-up
    # is seconds against that minute), shows the order of magnitude; make bench keeps to its hour
    steps, warmup = (1, 0) if autocast and env else (5, 2)
    return in_child(f"bench_precision._probe({autocast}, {steps}, {warmup})", env)


def nominal_peak_gflops() -> float:
    """2 cores x clock x 32 fp32 flop/cycle (two 256-bit FMA pipes): a rough ceiling, not a spec sheet."""
    mhz = 0.0
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(("cpu MHz", "bogomips")):
                value = float(line.split(":")[1])
                mhz = value if line.startswith("cpu MHz") else value / 2
                break
    return cpu_info().cores * mhz / 1000 * 32


def run() -> str:
    peak = nominal_peak_gflops()
    configs = [
        ("this CPU, float32", False, {}),
        ("this CPU, bf16 autocast", True, {}),
        ("capped to AVX2, float32", False, AVX2),
        ("capped to AVX2, bf16 autocast", True, AVX2),
    ]
    results = {name: measure(autocast, env) for name, autocast, env in configs}
    rows = [
        [
            name,
            f"{r['step_s']:.2f}",
            f"{BATCH * TOKENS / float(r['step_s']):.0f}",
            f"{float(r['gflops']):.0f}",
            f"{100 * float(r['gflops']) / peak:.0f}%",
            r["auto"],
        ]
        for name, r in results.items()
    ]

    def ratio(a: str, b: str) -> float:
        return float(results[a]["step_s"]) / float(results[b]["step_s"])

    heads = {
        (where, answer_only): in_child(f"bench_precision._head_probe({answer_only})", env)
        for where, env in (("this CPU", {}), ("capped to AVX2", AVX2))
        for answer_only in (False, True)
    }
    head_rows = [
        [
            where,
            f"{heads[(where, False)]:.2f}",
            f"{heads[(where, True)]:.2f}",
            f"**{heads[(where, False)] / heads[(where, True)]:.2f}x**",
        ]
        for where in ("this CPU", "capped to AVX2")
    ]

    return "\n".join(
        [
            f"## Precision: one LoRA step of SmolLM2-135M ({BATCH} x {TOKENS} tokens), float32 vs bf16 autocast",
            "",
            f"CPU: {cpu_info().describe()}; nominal fp32 peak ~{peak:.0f} GFLOP/s (cores x clock x 32 flop/cycle).",
            "",
            table(["setting", "s/step", "tokens/s", "GFLOP/s", "of peak", "`auto` picks"], rows),
            "",
            f"bf16 / float32 step time: this CPU **{ratio('this CPU, bf16 autocast', 'this CPU, float32'):.2f}x**, "
            f"capped to AVX2 **{ratio('capped to AVX2, bf16 autocast', 'capped to AVX2, float32'):.2f}x**.",
            "",
            "The LM head in training: TRL's fused head (what SFTTrainer trains through) scores every position on "
            "CPUs and only the answer's on GPUs; sclcoder makes CPUs score only the answer (loss and gradients "
            f"unchanged, tests/test_train.py). One float32 LoRA step, {BATCH} x {TOKENS} tokens, the last 30% the "
            "answer, seconds:",
            "",
            table(["CPU", "every position (TRL on CPU)", "answer only (sclcoder)", "speed-up"], head_rows),
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(run() + "\n")
