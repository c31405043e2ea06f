"""`sclcoder predict NOTES.jsonl`: codes with evidence for every note, aligned back to character offsets.

For each note: cut it into windows exactly as training cut documents (the adapter records how), render
every window with the adapter's own prompt template, decode constrained to the answer schema (vLLM in
process, or any OpenAI-compatible endpoint), validate every answer with jsonschema, union the codes of a
note's windows, align every quote to `[begin, end)` in the note, normalise and check every code.

Results are appended to the predictions JSONL as each batch of notes finishes and made durable at once;
a run killed at any moment and started again with the same arguments skips the notes already written,
so every note is written exactly once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder.artifacts import Adapter, open_adapter
from sclcoder.data import codes as codes_mod
from sclcoder.data.align import Aligner
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Note, read_notes
from sclcoder.data.windows import Window, split_windows
from sclcoder.errors import CodeError, SclError, Skips
from sclcoder.files import JsonlAppender, check_writable, parse_json, text_lines
from sclcoder.infer.engine import (
    EndpointEngine,
    Engine,
    Generation,
    Request,
    VllmEngine,
    engine_for,
    predict_settings,
)
from sclcoder.infer.grounding import answer_grammar
from sclcoder.progress import bar
from sclcoder.recipe import PredictSection
from sclcoder.sft.answer import answer_schema, parse_answer
from sclcoder.sft.prompts import PROMPT_FILE, PromptTemplate, Renderer, load_prompt


@dataclass
class PredictReport:
    output: Path
    written: int = 0
    already_done: int = 0
    skipped_input: int = 0
    windows: int = 0
    invalid_answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    quotes: dict[str, int] = field(default_factory=dict)

    @property
    def notes_per_second(self) -> float:
        return self.written / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0


# ------------------------------------------------------------------------------------------------ input


def default_output(notes: str | PathLike[str]) -> Path:
    """`notes.jsonl` -> `notes.predictions.jsonl`, beside it."""
    p = Path(notes)
    return p.with_name(f"{p.name.removesuffix('.jsonl')}.predictions.jsonl")


def finished_ids(path: Path, run: dict[str, Any]) -> set[str]:
    """Ids already in a predictions file; refuses a file written by another adapter or prompt."""
    if not path.exists():
        return set()
    done: set[str] = set()
    for lineno, line in text_lines(path):
        try:
            row = parse_json(line, path=path, line=lineno)
        except SclError:
            continue  # a line cut by a kill; the appender trims it
        if not isinstance(row, dict):
            raise SclError("not a predictions line (a JSON object)", path=path, line=lineno)
        for key in ("adapter", "prompt_version"):
            if row.get(key) != run[key]:
                raise SclError(
                    f"was written with {key} {row.get(key)!r}, this run uses {run[key]!r}",
                    path=path,
                    hint="write to another file, or pass --overwrite",
                )
        done.add(str(row["id"]))
    return done


# ------------------------------------------------------------------------------------------- contract


def adapter_prompt(adapter: Adapter, override: str | None, allow_mismatch: bool) -> PromptTemplate:
    """The prompt the adapter was trained with; another one only when it matches, or when allowed."""
    trained = adapter.record.prompt
    template = load_prompt(override or adapter.path / PROMPT_FILE)
    same = (template.name, template.version, template.sha256) == (trained.name, trained.version, trained.sha256)
    if not same and not allow_mismatch:
        raise SclError(
            f"prompt {template.id} (sha {template.sha256[:12]}) differs from the one the adapter was trained "
            f"with, {trained.id} (sha {trained.sha256[:12]})",
            field="prompt",
            hint="use the adapter's prompt, or pass --allow-prompt-mismatch",
        )
    return template


def check_window_fits(renderer: Renderer, windows_max: int, settings: PredictSection) -> None:
    """Notes are cut exactly as training cut them, or not at all: a trained window that does not fit
    max_model_len with the prompt and the answer is an error (a smaller window would code other text)."""
    overhead = len(renderer.prompt_ids(""))
    needed = windows_max + overhead + settings.max_new_tokens
    if needed > settings.max_model_len:
        raise SclError(
            f"the adapter's {windows_max}-token windows need max_model_len >= {needed} (prompt {overhead} tokens, "
            f"answer up to {settings.max_new_tokens}); it is {settings.max_model_len}",
            field="predict.max_model_len",
            hint=f"set predict.max_model_len={needed} or more, or lower predict.max_new_tokens",
        )


# ---------------------------------------------------------------------------------------------- merge


def merge_windows(
    note: Note,
    windows: list[Window],
    generations: list[Generation],
    system: CodeSystem,
    *,
    fuzzy_threshold: float,
    drop_invalid_codes: bool,
    quote_counts: dict[str, int],
) -> dict[str, Any]:
    """One predictions line: codes unioned across windows, quotes aligned to note offsets."""
    errors: list[str] = []
    codes: dict[str, dict[str, Any]] = {}
    per_window = []
    for i, (win, gen) in enumerate(zip(windows, generations, strict=True)):
        answer, problems = parse_answer(gen.text)
        if gen.finish_reason == "length":
            problems = [f"answer cut at max_new_tokens ({gen.completion_tokens} tokens)", *problems]
        if problems:
            errors.extend(f"window {i}: {p}" for p in problems)
        items = answer.get("codes", []) if isinstance(answer, dict) else []
        window_text = note.text[win.begin : win.end]
        aligner = Aligner(window_text, fuzzy_threshold)
        window_codes = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("code"), str):
                continue
            raw = item["code"]
            entry = _code_entry(raw, system, codes, errors, i)
            if entry is None:
                continue
            window_codes.append(entry["code"])
            taken = {(e["begin"], e["end"]) for e in entry["evidence"] if e["begin"] is not None}
            for quote in item.get("evidence") or []:
                if not isinstance(quote, str):
                    continue
                hit = aligner.align(quote, {(b - win.begin, e - win.begin) for b, e in taken})
                if hit is None:
                    quote_counts["unaligned"] = quote_counts.get("unaligned", 0) + 1
                    if not any(e["text"] == quote and e["begin"] is None for e in entry["evidence"]):
                        entry["evidence"].append({"text": quote, "begin": None, "end": None, "match": None})
                    continue
                b, e = win.begin + hit.begin, win.begin + hit.end
                quote_counts[hit.match] = quote_counts.get(hit.match, 0) + 1
                if (b, e) in taken:
                    continue  # the same place quoted again, e.g. from an overlapping window
                taken.add((b, e))
                entry["evidence"].append({"text": note.text[b:e], "begin": b, "end": e, "match": hit.match})
        per_window.append({"begin": win.begin, "end": win.end, "codes": window_codes, "answer_valid": not problems})
    out_codes = []
    for entry in codes.values():
        if drop_invalid_codes and not entry["valid"]:
            continue
        entry["evidence"].sort(key=lambda e: (e["begin"] is None, e["begin"] or 0))
        out_codes.append(entry)
    return {"id": note.id, "codes": out_codes, "windows": per_window, "errors": errors}


def _code_entry(raw: str, system: CodeSystem, codes: dict[str, dict[str, Any]], errors: list[str], window: int):  # type: ignore[no-untyped-def]
    try:
        code = codes_mod.normalize(raw, system)
    except CodeError as exc:
        key = raw.strip().upper()
        if key not in codes:
            errors.append(f"window {window}: {exc.message}")
            codes[key] = {"code": raw, "description": None, "valid": False, "problem": "malformed", "evidence": []}
        return codes[key]
    if code not in codes:
        info = codes_mod.lookup(code, system)
        entry: dict[str, Any] = {
            "code": code,
            "description": info.description if info else None,
            "valid": info is not None,
            "evidence": [],
        }
        if info is None:
            entry["problem"] = f"not an {system.label} code"
            errors.append(f"window {window}: unknown {system.label} code {code}")
        codes[code] = entry
    return codes[code]


# -------------------------------------------------------------------------------------------- predict


def predict(
    notes: str | PathLike[str],
    output: str | PathLike[str],
    *,
    adapter: str | PathLike[str],
    settings: PredictSection | None = None,
    engine: Engine | None = None,
    endpoint: str | None = None,
    endpoint_model: str | None = None,
    prompt: str | None = None,
    allow_prompt_mismatch: bool = False,
    skip_invalid: bool = False,
    overwrite: bool = False,
    limit: int | None = None,
) -> PredictReport:
    """Predict codes and evidence for every note in `notes` into `output` (see the module docstring)."""
    started = time.perf_counter()
    ad = open_adapter(adapter)
    settings = settings or predict_settings(ad)
    system = CodeSystem.parse(ad.record.code_system)
    template = adapter_prompt(ad, prompt, allow_prompt_mismatch)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ad.path)
    renderer = Renderer(tokenizer, template, system)
    windows_spec = ad.record.windows
    check_window_fits(renderer, windows_spec.max_tokens, settings)

    out = check_writable(output)
    if overwrite and out.exists():
        out.unlink()
    run = {"model": ad.record.base_model, "adapter": str(ad.path.resolve()), "prompt_version": template.id}
    done = finished_ids(out, run)
    skips = Skips(skip_invalid)
    todo = [n for n in read_notes(notes, skips) if n.id not in done]
    if limit is not None:
        todo = todo[:limit]
    report = PredictReport(out, already_done=len(done))
    schema = answer_schema(ad.record.codes if settings.constrain_codes else None)
    grounded_codes = None
    if settings.grounding == "substring":
        # the training list, or every code of the system: either way no invalid code can be written
        grounded_codes = (
            ad.record.codes
            if settings.grounded_codes == "adapter"
            else codes_mod.all_codes(system, billable_only=False, current_only=False)
        )

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    if not todo:  # a finished run started again: nothing to decode, so no engine to start (~20 s on CPU)
        report.skipped_input = skips.count
        report.seconds = time.perf_counter() - started
        return report
    own_engine = engine is None
    if engine is None:
        engine = EndpointEngine(endpoint, endpoint_model or "adapter") if endpoint else engine_for(ad, settings)
    # an in-process engine either has LoRA enabled (the adapter rides on each request) or holds merged weights
    lora = str(ad.path) if isinstance(engine, VllmEngine) and engine.lora_enabled else None
    if isinstance(engine, VllmEngine):
        run["engine"] = "lora" if lora else "merged"
    else:  # an endpoint, or a model in memory (sclcoder.infer.local during training)
        run["engine"] = "endpoint" if isinstance(engine, EndpointEngine) else "transformers"
    run["grounding"] = settings.grounding
    try:
        with (
            JsonlAppender(out) as sink,
            bar("predict", len(todo), unit="notes", extra="{task.fields[rate]}") as progress,
        ):
            for i in range(0, len(todo), settings.batch_size):
                batch = todo[i : i + settings.batch_size]
                windows = [
                    split_windows(n.text, count, windows_spec.max_tokens, windows_spec.overlap_tokens) for n in batch
                ]
                requests = [
                    Request(
                        renderer.prompt_ids(n.text[w.begin : w.end]),
                        renderer.messages(n.text[w.begin : w.end]),
                        answer_grammar(n.text[w.begin : w.end], grounded_codes) if grounded_codes else None,
                    )
                    for n, ws in zip(batch, windows, strict=True)
                    for w in ws
                ]
                gens = engine.generate(
                    requests,
                    schema=schema,
                    max_tokens=settings.max_new_tokens,
                    temperature=settings.temperature,
                    top_p=settings.top_p,
                    lora_path=lora,
                )
                k = 0
                for note, ws in zip(batch, windows, strict=True):
                    note_gens = gens[k : k + len(ws)]
                    k += len(ws)
                    row = merge_windows(
                        note,
                        ws,
                        note_gens,
                        system,
                        fuzzy_threshold=settings.fuzzy_threshold,
                        drop_invalid_codes=settings.drop_invalid_codes,
                        quote_counts=report.quotes,
                    )
                    row |= run | {
                        "usage": {
                            "prompt_tokens": sum(g.prompt_tokens for g in note_gens),
                            "completion_tokens": sum(g.completion_tokens for g in note_gens),
                        }
                    }
                    sink.write(row)
                    report.written += 1
                    report.windows += len(ws)
                    report.invalid_answers += sum(1 for w in row["windows"] if not w["answer_valid"])
                    report.prompt_tokens += row["usage"]["prompt_tokens"]
                    report.completion_tokens += row["usage"]["completion_tokens"]
                elapsed = time.perf_counter() - started
                progress.advance(len(batch))
                progress.update(
                    rate=f"{report.written / elapsed:.2f} notes/s, {report.completion_tokens / elapsed:.0f} tok/s"
                )
    finally:
        if own_engine and engine is not None:
            engine.close()
    report.skipped_input = skips.count
    report.seconds = time.perf_counter() - started
    return report
