"""`sclcoder data build`: the SCL mixture as a `datasets` dataset, plus stats.json and build.json.

The mixture is made of the example kinds in `examples` (span, negative, document, synthetic), with a share
and an optional cap per kind and one seed. Every example is rendered with the one prompt renderer that
`predict` uses, its target validated against the answer schema, and its tokens counted with the recipe's
tokenizer. stats.json reports, besides counts and coverage, the token cost of this mixture relative to
document-only SFT on the same source notes: the paper's "about 20% of the training cost" is a claim about
this number.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

from sclcoder import __version__
from sclcoder.artifacts import BUILD_FILE, DATASET_FORMAT, STATS_FILE, DatasetRecord, PromptIdentity
from sclcoder.backbones import cache_dir as sclcoder_cache
from sclcoder.backbones import load_tokenizer
from sclcoder.data.codes import CodeSystem
from sclcoder.data.documents import Document, read_documents
from sclcoder.errors import SclError
from sclcoder.files import atomic_dir, check_replaceable, resource_path
from sclcoder.progress import bar
from sclcoder.recipe import (
    CorrectionsSource,
    DataSection,
    DemoSource,
    JsonlSource,
    MdaceSource,
    Recipe,
    Source,
    recipe_dict,
)
from sclcoder.sft.examples import (
    Example,
    document_examples,
    hard_negative_examples,
    negative_examples,
    offline_examples,
    span_examples,
)
from sclcoder.sft.prompts import PROMPT_FILE, Renderer, load_prompt

T = TypeVar("T")


@dataclass
class BuildResult:
    out_dir: Path
    stats: dict[str, Any]


# ------------------------------------------------------------------------------------------- sources


def read_source(source: Source, system: CodeSystem) -> list[Document]:
    if isinstance(source, JsonlSource):
        docs = list(read_documents(source.jsonl, default_system=system))
    elif isinstance(source, DemoSource):
        from sclcoder.data.corpus_folder import check_corpus, read_demo

        spec = source.demo
        docs = read_demo(check_corpus(spec.corpus, charts=spec.charts, seed=spec.seed), split=spec.split)
    elif isinstance(source, MdaceSource):
        from sclcoder.data.readers import read_mdace

        spec = source.mdace
        docs = read_mdace(
            spec.annotations,
            spec.noteevents,
            split=spec.split,
            filters=spec,
            code_system=system,
        )
    elif isinstance(source, CorrectionsSource):
        from sclcoder.data.corrections import reviewed_documents

        docs = reviewed_documents(source.corrections.file, source.corrections.notes, system)
    else:  # pragma: no cover - the recipe schema admits nothing else
        raise TypeError(source)
    foreign = [d.id for d in docs if d.code_system is not system]
    if foreign:
        raise SclError(
            f"note {foreign[0]} is coded in {docs[0].code_system.label}, the recipe in {system.label}",
            field="data.code_system",
        )
    return docs


def _group_key(doc: Document) -> str:
    # notes of one admission stay on one side of the train/validation split
    return str(doc.meta.get("hadm_id", doc.id))


def load_notes(data: DataSection) -> tuple[list[Document], list[Document]]:
    system = CodeSystem.parse(data.code_system)
    train = [d for s in data.train for d in read_source(s, system)]
    if data.validation:
        return train, [d for s in data.validation for d in read_source(s, system)]
    groups = sorted({_group_key(d) for d in train})
    random.Random(data.seed).shuffle(groups)
    held = set(groups[: round(len(groups) * data.validation_fraction)])
    return [d for d in train if _group_key(d) not in held], [d for d in train if _group_key(d) in held]


# ------------------------------------------------------------------------------------------- mixture


def _take(pool: list[T], fraction: float, cap: int | None, rng: random.Random) -> list[T]:
    """A seeded random share of `pool`, at most `cap` items."""
    pool = list(pool)
    rng.shuffle(pool)
    n = round(fraction * len(pool))
    if cap is not None:
        n = min(n, cap)
    return pool[:n]


def candidate_examples(
    docs: list[Document], recipe: Recipe, tokenizer: Any, rng: random.Random
) -> dict[str, list[Example]]:
    data, win = recipe.data, recipe.windows
    pools: dict[str, list[Example]] = defaultdict(list)
    count = _token_counter(tokenizer)
    doc_pool = [
        d
        for d in docs
        if not d.meta.get("reviewed") and any(d.system_of(ev.code) is d.code_system for ev in d.evidence)
    ]
    doc_ids = {d.id for d in _take(doc_pool, data.document.fraction, None, rng)}
    # a note a coder marked done is a document example whatever the share; one still under review is not
    # (codes nobody has looked at yet may stand anywhere in it), nor are random windows of it negatives
    doc_ids |= {d.id for d in docs if d.meta.get("reviewed") and d.meta.get("done")}
    with bar("building examples", len(docs)) as progress:
        for doc in docs:
            reviewed = bool(doc.meta.get("reviewed"))
            spans = span_examples(
                doc, tokenizer=tokenizer, context=data.span.context, context_size=data.span.context_size
            )
            if reviewed:
                for ex in spans:
                    ex.origin = "coder"
                pools["hard_negative"].extend(
                    hard_negative_examples(
                        doc, tokenizer=tokenizer, context=data.span.context, context_size=data.span.context_size
                    )
                )
            pools["span"].extend(spans)
            if spans and data.span.negative_rate > 0 and (not reviewed or doc.meta.get("done")):
                # enough candidates that the mixture can hit its negative rate after sampling
                n_neg = max(1, round(len(spans) * data.span.negative_rate * 1.5))
                pools["negative"].extend(negative_examples(doc, n_neg, [e.end - e.begin for e in spans], rng))
            if doc.id in doc_ids:
                documents = document_examples(
                    doc, count_tokens=count, max_tokens=win.max_tokens, overlap_tokens=win.overlap_tokens
                )
                if reviewed:
                    for ex in documents:
                        ex.origin = "coder"
                pools["document"].extend(documents)
            progress.advance()
    return pools


def mix(pools: dict[str, list[Example]], data: DataSection, rng: random.Random) -> list[Example]:
    spans = _take(pools.get("span", []), data.span.fraction, data.span.max_examples, rng)
    n_neg = round(len(spans) * data.span.negative_rate)
    negatives = _take(pools.get("negative", []), 1.0, n_neg, rng)
    documents = pools.get("document", [])
    if data.document.empty_window_rate < 1.0:  # most windows of a long note hold no evidence at all
        coded = [ex for ex in documents if ex.targets]
        documents = coded + _take(
            [ex for ex in documents if not ex.targets], data.document.empty_window_rate, None, rng
        )
    documents = _take(documents, 1.0, data.document.max_examples, rng)
    synthetic = _take(pools.get("synthetic", []), data.synthesis.fraction, data.synthesis.max_examples, rng)
    # every coder decision is kept: corrections are few and each cost a person's time
    taken = {id(ex) for ex in spans}
    spans += [ex for ex in pools.get("span", []) if ex.origin == "coder" and id(ex) not in taken]
    mixed = spans + negatives + pools.get("hard_negative", []) + documents + synthetic
    rng.shuffle(mixed)
    return mixed


def _token_counter(tokenizer: Any):  # type: ignore[no-untyped-def]
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def check_quotes_fit(docs: list[Document], recipe: Recipe, tokenizer: Any) -> None:
    """Every evidence quote must fit one window and the answer schema, or its code can never be taught."""
    quotes = [(d, ev) for d in docs for ev in d.evidence if d.system_of(ev.code) is d.code_system]
    if not quotes:
        return
    limit = _base_quote_limit()
    for doc, ev in quotes:
        if ev.end - ev.begin > limit:
            raise SclError(
                f"the quote of {ev.code} in note {doc.id} is {ev.end - ev.begin} characters; answers allow {limit}",
                field=f"evidence [{ev.begin}, {ev.end})",
            )
    lengths = tokenizer([doc.quote(ev) for doc, ev in quotes], add_special_tokens=False)["input_ids"]
    n, (doc, ev) = max(zip((len(x) for x in lengths), quotes, strict=True), key=lambda t: t[0])
    if n > recipe.windows.max_tokens:
        raise SclError(
            f"windows.max_tokens ({recipe.windows.max_tokens}) is smaller than the quote of {ev.code} "
            f"in note {doc.id} ({n} tokens)",
            field="windows.max_tokens",
        )


def _base_quote_limit() -> int:
    from sclcoder.sft.answer import answer_schema

    return answer_schema()["properties"]["codes"]["items"]["properties"]["evidence"]["items"]["maxLength"]


# --------------------------------------------------------------------------------------------- render


def render_rows(examples: list[Example], renderer: Renderer) -> list[dict[str, Any]]:
    rows = []
    for ex in examples:
        rows.append(
            {
                "kind": ex.kind,
                "origin": ex.origin,
                "source": ex.source,
                "begin": ex.begin,
                "end": ex.end,
                "text": ex.text,
                "codes": ex.codes,
                "prompt": renderer.prompt(ex.text),
                "completion": renderer.completion(ex.answer()),
            }
        )
    if rows:
        tok = renderer.tokenizer
        p = tok([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
        c = tok([r["completion"] for r in rows], add_special_tokens=False)["input_ids"]
        for row, pi, ci in zip(rows, p, c, strict=True):
            row["prompt_tokens"], row["completion_tokens"] = len(pi), len(ci)
    return rows


def document_only_tokens(docs: list[Document], recipe: Recipe, renderer: Renderer) -> dict[str, int]:
    """Tokens of document-only SFT on these notes: every annotated note, windowed as for predict."""
    count = _token_counter(renderer.tokenizer)
    examples = [
        ex
        for d in docs
        if any(d.system_of(ev.code) is d.code_system for ev in d.evidence)
        for ex in document_examples(
            d,
            count_tokens=count,
            max_tokens=recipe.windows.max_tokens,
            overlap_tokens=recipe.windows.overlap_tokens,
        )
    ]
    rows = render_rows(examples, renderer)
    return {
        "examples": len(rows),
        "tokens": sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows),
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    for r in rows:
        k = by_kind.setdefault(r["kind"], {"examples": 0, "prompt_tokens": 0, "completion_tokens": 0})
        k["examples"] += 1
        k["prompt_tokens"] += r["prompt_tokens"]
        k["completion_tokens"] += r["completion_tokens"]
    for k in by_kind.values():
        k["tokens"] = k["prompt_tokens"] + k["completion_tokens"]
    return {
        "examples": len(rows),
        "tokens": sum(k["tokens"] for k in by_kind.values()),
        "by_kind": dict(sorted(by_kind.items())),
        "codes": len({c for r in rows for c in r["codes"]}),
        "max_tokens": max((r["prompt_tokens"] + r["completion_tokens"] for r in rows), default=0),
    }


def replay_rows(recipe: Recipe, n_new: int, template: Any, rng: random.Random) -> list[dict[str, Any]]:
    """Training rows of the parent adapter's dataset, as many as make `parent.replay` of this run's examples."""
    from sclcoder.artifacts import open_adapter, open_dataset

    assert recipe.parent is not None
    parent = open_adapter(recipe.parent.adapter)
    want = round(n_new * recipe.parent.replay / (1 - recipe.parent.replay))
    if want == 0:
        return []
    source = parent.record.dataset.get("path")
    # older records hold the path as given when training (relative to where it ran); the default place of a
    # run's dataset is beside its adapter
    found = [p for p in (Path(source or ""), parent.path.parent / "dataset") if source and (p / BUILD_FILE).is_file()]
    if not found:
        raise SclError(
            f"the parent's dataset {source} is gone: nothing to replay",
            field="parent.replay",
            hint="set parent.replay: 0, or rebuild the parent's dataset there",
        )
    dataset = open_dataset(found[0])
    if dataset.record.prompt.model_dump() != template.describe():
        raise SclError(
            "the parent was trained with another prompt than this recipe renders: its examples cannot be mixed in",
            field="data.prompt",
        )
    rows = [dict(r) | {"origin": "replay"} for r in dataset.load()["train"]]
    rng.shuffle(rows)
    return rows[:want]


def _corrections_summary(docs: list[Document], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What a coder's review put into the dataset (None when no corrections source was read)."""
    reviewed = [d for d in docs if d.meta.get("reviewed")]
    if not reviewed:
        return None
    by_kind: dict[str, int] = {}
    for r in rows:
        if r["origin"] == "coder":
            by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + 1
    return {
        "notes": len(reviewed),
        "done": sum(1 for d in reviewed if d.meta.get("done")),
        "decisions": sum(d.meta.get("actions", 0) for d in reviewed),
        "codes_kept": sum(len(d.codes) for d in reviewed),
        "codes_rejected": sum(len(d.meta.get("hard_negatives") or {}) for d in reviewed),
        "examples": dict(sorted(by_kind.items())),
    }


# ---------------------------------------------------------------------------------------------- build


def default_dataset_dir(recipe: Recipe) -> Path:
    return Path(recipe.data.dataset_dir or Path(recipe.train.output_dir) / "dataset")


def build_dataset(
    recipe: Recipe, out_dir: str | PathLike[str] | None = None, *, overwrite: bool = False
) -> BuildResult:
    """Build the recipe's SFT dataset into `out_dir` (atomically: a rebuild replaces it whole)."""
    from datasets import Dataset, DatasetDict

    started = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else default_dataset_dir(recipe)
    ours = (out / BUILD_FILE).exists()  # a dataset of ours, marked or written before the marker existed
    check_replaceable(out, replace=ours or overwrite, what="dataset directory")
    data = recipe.data
    system = CodeSystem.parse(data.code_system)
    tokenizer = load_tokenizer(recipe.model.tokenizer or recipe.model.model_name_or_path, recipe.model.chat_template)
    template = load_prompt(data.prompt)
    renderer = Renderer(tokenizer, template, system)
    rng = random.Random(data.seed)

    train_docs, val_docs = load_notes(data)
    if not train_docs:
        raise SclError("the training sources hold no notes", field="data.train")
    synthesis_report: dict[str, Any] = {}
    synthetic: list[Example] = []
    if data.synthesis.teacher or data.synthesis.offline_fallback:
        from sclcoder.sft.teacher import synthesise

        cache = Path(data.synthesis.cache_dir) if data.synthesis.cache_dir else sclcoder_cache() / "teacher"
        train_docs, synthetic, synthesis_report = synthesise(
            data.synthesis,
            train_docs=train_docs,
            system=system,
            # its own stream: switching synthesis on or off must not redraw the windows and documents below,
            # or an ablation of it would compare two samples of the notes as well
            rng=random.Random(f"{data.seed}:synthesis"),
            offline=offline_examples,
            cache_dir=cache,
        )
    check_quotes_fit(train_docs + val_docs, recipe, tokenizer)
    annotated = [d for d in train_docs if d.evidence]
    if not annotated and not synthetic:
        raise SclError(
            f"none of the {len(train_docs)} training notes has evidence, and nothing was synthesised",
            field="data.train",
            hint="give annotated notes, or a teacher with synthesis.rationales: true",
        )

    pools = candidate_examples(train_docs, recipe, tokenizer, rng)
    pools["synthetic"] = synthetic
    train_rows = render_rows(mix(pools, data, rng), renderer)
    if recipe.parent is not None:  # continuing an adapter: some of its own examples, so that it does not forget
        train_rows += replay_rows(recipe, len(train_rows), template, random.Random(f"{data.seed}:replay"))
        random.Random(data.seed).shuffle(train_rows)
    val_pools = candidate_examples(val_docs, recipe, tokenizer, random.Random(data.seed + 1))
    val_rows = render_rows(mix(val_pools, data, random.Random(data.seed + 1)), renderer)
    if not train_rows:
        raise SclError("the mixture is empty: every kind's share or cap is 0", field="data")
    baseline = document_only_tokens(train_docs, recipe, renderer)
    train_summary = _summary(train_rows)
    train_codes = sorted({c for r in train_rows for c in r["codes"]})
    stats = {
        "train": train_summary,
        "validation": _summary(val_rows),
        "candidates": {k: len(v) for k, v in sorted(pools.items())},
        "notes": {
            "train": len(train_docs),
            "validation": len(val_docs),
            "train_with_evidence": len(annotated),
        },
        "codes_covered": len(train_codes),
        "corrections": _corrections_summary(train_docs, train_rows),
        "replayed": sum(1 for r in train_rows if r["origin"] == "replay"),
        "document_only_sft": baseline,
        "token_cost_vs_document_sft": round(train_summary["tokens"] / baseline["tokens"], 4)
        if baseline["tokens"]
        else None,
        "synthesis": synthesis_report,
        "tokenizer": recipe.model.tokenizer or recipe.model.model_name_or_path,
        "seconds": round(time.perf_counter() - started, 2),
        "notes_per_second": round((len(train_docs) + len(val_docs)) / max(1e-9, time.perf_counter() - started), 2),
    }
    record = DatasetRecord(
        format=DATASET_FORMAT,
        sclcoder_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        prompt=PromptIdentity(**template.describe()),
        code_system=system.value,
        windows=recipe.windows,
        codes=train_codes,
        recipe=recipe_dict(recipe),
    )
    with atomic_dir(out, replace=ours or overwrite) as tmp:
        # a split of no rows is left out: datasets saves it as no shards, then cannot load it back
        splits = {"train": Dataset.from_list(train_rows)} | (
            {"validation": Dataset.from_list(val_rows)} if val_rows else {}
        )
        DatasetDict(splits).save_to_disk(str(tmp / "hf"))
        shutil.copyfile(resource_path(data.prompt), tmp / PROMPT_FILE)
        (tmp / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
        (tmp / BUILD_FILE).write_text(record.model_dump_json(indent=2) + "\n")
    return BuildResult(out, stats)
