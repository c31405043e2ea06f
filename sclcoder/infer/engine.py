"""The engines that decode windows: vLLM's offline `LLM` in process (predict, faithfulness, validation during
training) and any OpenAI-compatible endpoint (`sclcoder serve`, a vLLM deployment). transformers' `generate`
on a model in memory is a third (sclcoder.infer.local). Each takes the same requests and gives the same
generations; `mode` says how the adapter reaches the weights, and is recorded in every predictions line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sclcoder.device import has_gpu
from sclcoder.endpoints import check_reachable, openai_client
from sclcoder.errors import SclError
from sclcoder.infer.environment import STRUCTURED_OUTPUTS, configure_env, engine_dtype, lora_rank
from sclcoder.recipe import PredictSection

EngineMode = Literal["lora", "merged", "endpoint", "transformers"]


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
    tokens: list[tuple[str, float]] | None = None
    """Each generated token's text and the model's log-probability of it (under the answer's grammar), in
    order; None when the engine gave none. What confidences are computed from (sclcoder.infer.confidence)."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float

    @classmethod
    def of(cls, settings: PredictSection) -> Sampling:
        return cls(settings.max_new_tokens, settings.temperature, settings.top_p)


class Engine(Protocol):
    """What `predict` needs of an engine."""

    mode: EngineMode

    def generate(
        self, requests: list[Request], *, schema: dict | None, sampling: Sampling, lora_path: str | None
    ) -> list[Generation]: ...

    def close(self) -> None: ...


class VllmEngine:
    """vLLM's offline `LLM`, started once and reused for many calls (start-up costs ~20 s on CPU). With
    `max_lora_rank` it serves LoRA adapters per request; without, the weights it was started on (a merged
    model, or base weights that `load_weights` replaces)."""

    def __init__(
        self,
        model: str,
        settings: PredictSection,
        *,
        max_lora_rank: int | None,
        gpu_memory_utilization: float | None = None,
    ) -> None:
        configure_env(settings.cpu_kv_cache_gb)
        from vllm import LLM

        kwargs: dict = {
            "model": model,
            "max_model_len": settings.max_model_len,
            "dtype": engine_dtype(settings.dtype),
            "enforce_eager": settings.enforce_eager or not has_gpu(),
            "tensor_parallel_size": settings.tensor_parallel_size,
            "structured_outputs_config": dict(STRUCTURED_OUTPUTS),
            "seed": settings.seed,
        }
        if max_lora_rank:
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank(max_lora_rank), max_loras=1)
        if has_gpu():
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization or settings.gpu_memory_utilization
        self.model = model
        self.max_model_len = settings.max_model_len
        self.mode: EngineMode = "lora" if max_lora_rank else "merged"
        self.llm = LLM(**kwargs)
        self._lora_ids: dict[str, int] = {}

    def _lora(self, path: str | None):  # type: ignore[no-untyped-def]
        if not path:
            return None
        from vllm.lora.request import LoRARequest

        lora_id = self._lora_ids.setdefault(path, len(self._lora_ids) + 1)
        return LoRARequest(f"adapter-{lora_id}", lora_id, path)

    def generate(
        self, requests: list[Request], *, schema: dict | None, sampling: Sampling, lora_path: str | None
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
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                structured_outputs=constraint(r),
                logprobs=0,  # the chosen token's own log-probability
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
                _token_logprobs(o.outputs[0]),
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


def _token_logprobs(output: Any) -> list[tuple[str, float]] | None:
    """(text, log-probability) of each token vLLM generated, from its per-position logprob dicts."""
    if not output.logprobs:
        return None
    pieces = []
    for token_id, entry in zip(output.token_ids, output.logprobs, strict=True):
        chosen = entry[token_id]
        pieces.append((chosen.decoded_token or "", chosen.logprob))
    return pieces


class EndpointEngine:
    """The same requests sent to an OpenAI-compatible server (`sclcoder serve`, a vLLM deployment)."""

    mode: EngineMode = "endpoint"

    def __init__(self, base_url: str, model: str, settings: PredictSection, *, api_key: str | None = None) -> None:
        self.model = model
        self.concurrency = settings.endpoint_concurrency
        self.client = openai_client(
            base_url, api_key=api_key, timeout=settings.endpoint_timeout_s, max_retries=settings.endpoint_max_retries
        )
        served = check_reachable(self.client, base_url)
        # a name the server does not serve is one line here, not an HTTP 404 for every window later
        if model not in served:
            raise SclError(
                f"the endpoint {base_url} serves {', '.join(served) or 'no model'}, not {self.model!r}",
                field="endpoint_model",
            )

    def generate(
        self, requests: list[Request], *, schema: dict | None, sampling: Sampling, lora_path: str | None
    ) -> list[Generation]:
        from concurrent.futures import ThreadPoolExecutor

        fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}} if schema else None

        def one(req: Request) -> Generation:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=req.messages,
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                logprobs=True,
                # vLLM's server takes the per-window grammar as a structured-outputs request field
                **(
                    {"extra_body": {"structured_outputs": {"grammar": req.grammar}}}
                    if req.grammar is not None
                    else ({"response_format": fmt} if fmt else {})
                ),
            )
            choice = resp.choices[0]
            usage = resp.usage
            content = choice.logprobs.content if choice.logprobs else None
            return Generation(
                choice.message.content or "",
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
                choice.finish_reason,
                [(t.token, t.logprob) for t in content] if content else None,
            )

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, requests))

    def sequence_logprobs(
        self, sequences: list[list[int]], starts: list[int], lora_path: str | None = None
    ) -> list[float]:
        """As VllmEngine.sequence_logprobs, from a vLLM server's completions with `prompt_logprobs` (an extension
        of vLLM's: another OpenAI-compatible server is one error naming the field)."""
        from concurrent.futures import ThreadPoolExecutor

        from openai import APIStatusError

        def one(item: tuple[list[int], int]) -> float:
            seq, start = item
            try:
                resp = self.client.completions.create(
                    model=self.model, prompt=seq, max_tokens=1, temperature=0.0, extra_body={"prompt_logprobs": 0}
                )
            except APIStatusError as exc:
                raise SclError(
                    f"the endpoint could not score a sequence for {self.model!r}: HTTP {exc.status_code}",
                    field="predict.support",
                    hint="vLLM cannot return prompt log-probabilities with LoRA enabled (vllm-project/vllm#16668): "
                    "serve merged weights (`sclcoder serve` with predict.merge_adapter=always, the CPU default)",
                ) from None
            entries = (resp.choices[0].model_extra or {}).get("prompt_logprobs")
            if not entries or len(entries) != len(seq):
                raise SclError(
                    f"the endpoint returned no prompt log-probabilities for a {len(seq)}-token sequence",
                    field="predict.support",
                    hint="support scores need a vLLM server (prompt_logprobs); turn support off for this endpoint",
                )
            return sum(entries[pos][str(seq[pos])]["logprob"] for pos in range(start, len(seq)))

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, zip(sequences, starts, strict=True)))

    def close(self) -> None:
        self.client.close()
