"""One LoRA training step of the demo's model (SmolLM2-135M, LoRA r=16 on every linear layer, a fixed batch
of 4 x 150 tokens, forward + backward + optimizer step) in float32 and under bf16 autocast, on this CPU as
it is and capped to AVX2 (common.AVX2: torch, oneDNN and MKL capped). Each configuration runs in its own
process, because the caps act only when torch starts. Reports the median step of five (with the fastest and
slowest), tokens/s and the achieved FLOP/s against a nominal fp32 peak for the vector width the configuration
may use, and what `auto` precision chooses in each setting. On an AVX2-only CPU the capped rows are skipped:
they would measure the same thing again."""

from __future__ import annotations

import statistics
import sys

from common import AVX2, in_child, spread, table, wider_than_avx2

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
    return {
        "step_s": step,
        "min_s": min(times),
        "max_s": max(times),
        "steps": len(times),
        "gflops": flops / step / 1e9,
        "auto": resolve_precision("auto").dtype,
    }


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
    # emulated bf16 (capped, or a CPU without avx512_bf16/amx_bf16) takes a minute or more a step: three timed
    # steps, the first included (its one-time set-up is seconds against that minute), keep make bench in its hour
    emulated = autocast and (bool(env) or not cpu_info().native_bf16)
    steps, warmup = (3, 0) if emulated else (5, 2)
    return in_child(f"bench_precision._probe({autocast}, {steps}, {warmup})", env)


def nominal_peak_gflops(capped: bool) -> float:
    """cores x clock x fp32 flop/cycle: 32 with two 256-bit FMA pipes (AVX2, or an AVX-512 CPU capped to it),
    64 with 512-bit ones: a rough ceiling, not a spec sheet."""
    mhz = 0.0
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(("cpu MHz", "bogomips")):
                value = float(line.split(":")[1])
                mhz = value if line.startswith("cpu MHz") else value / 2
                break
    per_cycle = 32 if capped or not wider_than_avx2() else 64
    return cpu_info().cores * mhz / 1000 * per_cycle


def run() -> str:
    places = [("this CPU", {})] + ([("capped to AVX2", AVX2)] if wider_than_avx2() else [])
    configs = [
        (f"{where}, {kind}", autocast, env)
        for where, env in places
        for kind, autocast in (("float32", False), ("bf16 autocast", True))
    ]
    results = {name: measure(autocast, env) for name, autocast, env in configs}
    rows = [
        [
            name,
            f"{r['step_s']:.2f} ({r['min_s']:.2f}-{r['max_s']:.2f}, n={r['steps']})",
            f"{BATCH * TOKENS / float(r['step_s']):.0f}",
            f"{float(r['gflops']):.0f}",
            f"{100 * float(r['gflops']) / nominal_peak_gflops(bool(env)):.0f}%",
            r["auto"],
        ]
        for (name, _, env), r in zip(configs, results.values(), strict=True)
    ]

    def ratio(where: str) -> str:
        bf16, fp32 = (float(results[f"{where}, {kind}"]["step_s"]) for kind in ("bf16 autocast", "float32"))
        return f"{bf16 / fp32:.2f}x"

    heads = {
        (where, answer_only): [in_child(f"bench_precision._head_probe({answer_only})", env) for _ in range(3)]
        for where, env in places
        for answer_only in (False, True)
    }
    head_rows = [
        [
            where,
            spread(heads[(where, False)]),
            spread(heads[(where, True)]),
            f"**{statistics.mean(heads[(where, False)]) / statistics.mean(heads[(where, True)]):.2f}x**",
        ]
        for where, _ in places
    ]

    return "\n".join(
        [
            f"## Precision: one LoRA step of SmolLM2-135M ({BATCH} x {TOKENS} tokens), float32 vs bf16 autocast",
            "",
            f"CPU: {cpu_info().describe()}; nominal fp32 peak: cores x clock x 32 flop/cycle (AVX2, or capped to "
            "it), 64 on AVX-512. Each row: the median of 5 timed steps after 2 untimed ones (bf16 emulated on a "
            "CPU without native bf16: 3 steps, no untimed one, as each takes a minute or more), its fastest and "
            "slowest in brackets."
            + ("" if wider_than_avx2() else " This CPU has no AVX-512: it is the AVX2 case, no capped rows."),
            "",
            table(["setting", "s/step", "tokens/s", "GFLOP/s", "of peak", "`auto` picks"], rows),
            "",
            "bf16 / float32 step time: " + ", ".join(f"{where} **{ratio(where)}**" for where, _ in places) + ".",
            "",
            "The LM head in training: TRL's fused head (what SFTTrainer trains through) scores every position on "
            "CPUs and only the answer's on GPUs; sclcoder makes CPUs score only the answer (loss and gradients "
            f"unchanged, tests/test_train.py). One float32 LoRA step, {BATCH} x {TOKENS} tokens, the last 30% the "
            "answer, seconds, mean ± sd of 3 child processes (the median of 3 steps after 1 untimed in each):",
            "",
            table(["CPU", "every position (TRL on CPU)", "answer only (sclcoder)", "speed-up"], head_rows),
        ]
    )


if __name__ == "__main__":
    sys.stdout.write(run() + "\n")
