"""transformers' `generate` as an engine for a model already in memory: the model being trained, scored on
the validation notes with the task's own metrics (sclcoder.task_eval). The answers are constrained exactly
as vLLM constrains them (xgrammar: the per-window grammar of grounded decoding, or the JSON schema without
free whitespace), greedy, so a checkpoint scores here as `predict` would score it.

vLLM stays the engine of `predict` and, by default, of task_eval: on demo windows this path took 1.96-2.73x
vLLM's time capped to AVX2 and 2.51-3.29x with native bf16 (benchmarks/results.md, two adapters); vLLM
batches every window continuously."""

from __future__ import annotations

import itertools
import json
from typing import Any

from sclcoder.infer.engine import EngineMode, Generation, Request, Sampling


class TransformersEngine:  # an Engine (sclcoder.infer.engine)
    """Greedy, constrained decoding with `model.generate`, in batches of left-padded prompts."""

    mode: EngineMode = "transformers"  # the model in memory already carries its adapter

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int) -> None:
        import xgrammar

        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        vocab = model.config.get_text_config().vocab_size
        self.compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def _grammar(self, request: Request, schema: dict | None) -> Any:
        if request.grammar is not None:
            return self.compiler.compile_grammar(request.grammar)
        if schema is not None:
            return self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        return None

    def generate(
        self, requests: list[Request], *, schema: dict | None, sampling: Sampling, lora_path: str | None
    ) -> list[Generation]:
        import torch
        from xgrammar.contrib.hf import LogitsProcessor

        if sampling.temperature > 0:
            raise ValueError("TransformersEngine decodes greedily (temperature 0), as validation needs")
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        out: list[Generation] = []
        try:
            for i in range(0, len(requests), self.batch_size):
                batch = requests[i : i + self.batch_size]
                grammars = [self._grammar(r, schema) for r in batch]
                if any(g is None for g in grammars) and not all(g is None for g in grammars):
                    raise ValueError("a batch mixes constrained and free requests")
                width = max(len(r.prompt_ids) for r in batch)
                ids = torch.tensor([[self.pad_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in batch])
                mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in batch])
                with torch.no_grad():
                    generated = self.model.generate(
                        input_ids=ids.to(device),
                        attention_mask=mask.to(device),
                        max_new_tokens=sampling.max_tokens,
                        do_sample=False,
                        logits_processor=[LogitsProcessor(grammars)] if grammars[0] is not None else None,
                        pad_token_id=self.pad_id,
                        eos_token_id=self.tokenizer.eos_token_id,
                        return_dict_in_generate=True,
                        output_scores=True,  # after the grammar's mask, as vLLM reports its log-probabilities
                    )
                steps = torch.stack(generated.scores, dim=1).float().log_softmax(dim=-1)
                for i, (r, row) in enumerate(zip(batch, generated.sequences[:, width:].tolist(), strict=True)):
                    stop = self.tokenizer.eos_token_id in row
                    answer = row[: row.index(self.tokenizer.eos_token_id)] if stop else row
                    text = self.tokenizer.decode(answer, skip_special_tokens=True)
                    pieces = self._pieces(answer)
                    logps = [steps[i, k, token].item() for k, token in enumerate(answer)]
                    tokens = list(zip(pieces, logps, strict=True))
                    out.append(
                        Generation(text, len(r.prompt_ids), len(answer) + stop, "stop" if stop else "length", tokens)
                    )
        finally:
            self.model.train(was_training)
        return out

    def _pieces(self, ids: list[int]) -> list[str]:
        """Each token's share of the decoded text (prefix differences: byte-level tokens decode only in
        context)."""
        texts = [self.tokenizer.decode(ids[:k], skip_special_tokens=True) for k in range(len(ids) + 1)]
        return [b[len(a) :] if b.startswith(a) else b for a, b in itertools.pairwise(texts)]

    def close(self) -> None:
        """Nothing to stop: the model belongs to the caller."""
