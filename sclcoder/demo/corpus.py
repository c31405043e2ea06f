"""A synthetic discharge-summary corpus for the demo and the tests, written in MDACE layout (read back by
sclcoder.data.corpus_folder, through the MDACE reader).

The notes are made up from scratch (no MIMIC text): sections, history, hospital course, medications and
discharge diagnoses, MIMIC-style de-identification brackets and abbreviations, and *negated or family*
mentions ("CTA negative for PE", "mother with CAD") that must not be coded. Every affirmed mention of a
coded condition is annotated with its character offsets, as MDACE coders did. The output goes through
the very same MDACE reader a user runs on real data:

    OUT/data/Inpatient/ICD-10/1.0/<hadm_id>-ICD-10.json   annotations, one file per admission
    OUT/NOTEEVENTS.csv                                     note text, joined on ROW_ID = note_id
    OUT/splits/demo-{train,val,test,test-unseen}.csv       HADM ids per split
    OUT/demo.json                                          generator version, size, seed, phrase overlap
    OUT/negated_mentions.jsonl                             negated or family mentions (not coded)

Generation is deterministic for a seed. Phrasing varies along several axes (synonyms and abbreviations
per condition, sentence templates, section order details, which sections mention a condition, filler
findings) so that memorising a template is not enough.

Two test splits: `test` holds out admissions but shares the surface forms of training (every condition is
named from one list), and `test-unseen` (phrase-disjoint) names every condition only with forms no other
split uses (`unseen_names` in conditions.yaml), so that a model must code what it has not read
verbatim. demo.json records how many of its evidence strings occur in the training and validation notes:
0 by construction, checked at generation.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder import defaults
from sclcoder.data import codes as codes_mod
from sclcoder.data.codes import CodeSystem
from sclcoder.data.corpus_folder import (
    ANNOTATIONS,
    MANIFEST,
    NEGATED,
    NOTEEVENTS,
    SPLIT_FILE,
    SPLITS,
    UNSEEN_SPLIT,
    read_manifest,
)
from sclcoder.data.readers import DISCHARGE
from sclcoder.demo.charts import write_chart
from sclcoder.demo.conditions import CONDITIONS_FILE, TABLE, says
from sclcoder.errors import SclError
from sclcoder.files import atomic_dir, check_replaceable
from sclcoder.recipe import DemoSource, Recipe

UNSEEN_SHARE = 0.075  # of the corpus's admission count, written on top of it (train/val/test stay as they are)
GENERATOR_VERSION = 5  # bump when the generator changes: corpora written by another version are rebuilt


@dataclass
class DemoSummary:
    out_dir: Path
    charts: int
    notes: int
    spans: int
    codes: int
    splits: dict[str, int]
    statistics: dict[str, Any]


def generate_demo(
    out_dir: str | PathLike[str],
    *,
    n_charts: int = defaults.DEMO_CHARTS,
    seed: int = defaults.DEMO_SEED,
    replace: bool = False,
) -> DemoSummary:
    """Write the demo corpus in MDACE layout (atomically: an existing corpus is replaced whole). A directory
    that holds anything but a demo corpus is refused before any work, unless `replace`."""
    replace = replace or read_manifest(out_dir) is not None  # a corpus written before the marker existed
    check_replaceable(out_dir, replace=replace, what="demo corpus directory")
    rng, unseen_rng = random.Random(seed), random.Random(seed + 2)
    charts, texts, negations = [], [], []
    n_notes = n_spans = 0
    codes_seen: set[str] = set()
    n_unseen = max(1, round(UNSEEN_SHARE * n_charts))
    # the split of each admission is drawn first: a chart for validation or test may hold held-out codes
    order = [300000 + i for i in range(n_charts)]
    random.Random(seed + 1).shuffle(order)
    n_test = n_val = max(1, round(0.15 * n_charts))
    split_ids = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
        UNSEEN_SPLIT: [300000 + i for i in range(n_charts, n_charts + n_unseen)],
    }
    tail = tail_codes(split_ids)
    for i in range(n_charts + n_unseen):
        hadm_id, note_id = 300000 + i, 5_000_000 + 10 * i
        chart = {"hadm_id": hadm_id, "comment": "", "notes": []}
        if i < n_charts:
            written = write_chart(rng, tail=tail.get(hadm_id, ()))
        else:
            written = write_chart(unseen_rng, unseen_phrases=True, tail=tail.get(hadm_id, ()))
        for nid, note in enumerate(written, start=note_id):
            texts.append((nid, hadm_id, note.category, note.description, note.text))
            negations.extend({"note_id": nid, "begin": b, "end": e, "code": c} for b, e, c in note.negated)
            n_notes += 1
            chart["notes"].append(
                {
                    "note_id": nid,
                    "category": note.category,
                    "description": note.description,
                    "annotations": [
                        {
                            "begin": b,
                            "end": e,
                            "code": code,
                            "code_system": "ICD-10-CM",
                            "description": codes_mod.describe(code, CodeSystem.ICD10CM),
                            "type": "Human",
                        }
                        for b, e, code in sorted(note.spans)
                    ],
                }
            )
            n_spans += len(note.spans)
            codes_seen |= {code for _, _, code in note.spans}
        charts.append(chart)

    stats = corpus_statistics(charts, texts, split_ids)
    overlap = phrase_overlap(texts, charts, split_ids)
    if overlap["shared"]:
        raise SclError(f"unseen surface forms occur in training notes: {overlap['shared'][:5]}", path=CONDITIONS_FILE)

    with atomic_dir(out_dir, replace=replace) as tmp:
        ann_dir = tmp / ANNOTATIONS
        ann_dir.mkdir(parents=True)
        for chart in charts:
            (ann_dir / f"{chart['hadm_id']}-ICD-10.json").write_text(json.dumps(chart, indent=1), encoding="utf-8")
        with open(tmp / NOTEEVENTS, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION", "ISERROR", "TEXT"]
            )
            for nid, hadm_id, category, description, body in texts:
                writer.writerow([nid, hadm_id - 200000, hadm_id, "", category, description, "", body])
        with open(tmp / NEGATED, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in negations)
        (tmp / SPLIT_FILE).parent.mkdir()
        for name in SPLITS:
            (tmp / SPLIT_FILE.format(split=name)).write_text(
                "".join(f"{h}\n" for h in sorted(split_ids[name])), encoding="utf-8"
            )
        manifest = {
            "generator_version": GENERATOR_VERSION,
            "charts": n_charts,
            "seed": seed,
            "unseen_phrase_overlap": {k: overlap[k] for k in ("evidence_strings", "in_training_notes")},
            "statistics": stats,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(
            f"Synthetic sclcoder demo corpus (generator version {GENERATOR_VERSION}, seed {seed}, {n_charts} "
            "admissions). Not patient data.\n\n"
            + "\n".join(describe_statistics(stats))
            + "\n\nRead it with the MDACE reader, e.g.\n\n"
            "    sclcoder data convert demo --corpus THIS_DIR --split test -o demo-test.jsonl\n",
            encoding="utf-8",
        )
    return DemoSummary(
        Path(out_dir), n_charts, n_notes, n_spans, len(codes_seen), {k: len(v) for k, v in split_ids.items()}, stats
    )


def tail_codes(split_ids: dict[str, list[int]]) -> dict[int, tuple[str, ...]]:
    """Which admissions get which codes of the tail: each rare code one training chart (a span or two of it in
    training), spread over the split; in the validation and test splits, a rare code every 4th chart and a
    held-out code every 5th, in rotation, so that their scores rest on several mentions each."""
    training = sorted(split_ids["train"])
    out: dict[int, tuple[str, ...]] = {
        training[k * len(training) // len(TABLE.rare)]: (code,) for k, code in enumerate(TABLE.rare)
    }
    evaluation = sorted(h for name, ids in split_ids.items() if name != "train" for h in ids)
    for i, hadm in enumerate(evaluation):
        codes = ()
        if i % 4 == 1:
            codes += (TABLE.rare[(i // 4) % len(TABLE.rare)],)
        if i % 5 == 0:
            codes += (TABLE.held_out[(i // 5) % len(TABLE.held_out)],)
        if codes:
            out[hadm] = codes
    return out


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def corpus_statistics(
    charts: list[dict], texts: list[tuple[int, int, str, str, str]], split_ids: dict[str, list[int]]
) -> dict[str, Any]:
    """The distributions a reader checks the corpus against (discharge summaries: characters, evidence spans
    and codes per note), and the tail: codes with at most 3 training spans, held-out codes never in training."""
    text_of = {nid: body for nid, _, category, _, body in texts if category == DISCHARGE}
    summaries = [(c["hadm_id"], n) for c in charts for n in c["notes"] if n["note_id"] in text_of]
    lengths = [len(text_of[n["note_id"]]) for _, n in summaries]
    spans = [len(n["annotations"]) for _, n in summaries]
    codes = [len({a["code"] for a in n["annotations"]}) for _, n in summaries]
    training = set(split_ids["train"])
    train_spans: Counter[str] = Counter(
        a["code"] for hadm, n in summaries if hadm in training for a in n["annotations"]
    )
    all_codes = {a["code"] for _, n in summaries for a in n["annotations"]}
    return {
        "discharge_summaries": len(summaries),
        "characters": {"median": _quantile(lengths, 0.5), "p90": _quantile(lengths, 0.9), "max": max(lengths)},
        "evidence_spans_per_note": {"median": _quantile(spans, 0.5), "p90": _quantile(spans, 0.9)},
        "codes_per_note": {"median": _quantile(codes, 0.5), "p90": _quantile(codes, 0.9)},
        "rare_codes": sorted(c for c in all_codes if 0 < train_spans[c] <= 3),
        "codes_absent_from_training": sorted(all_codes - set(train_spans)),
    }


def describe_statistics(stats: dict[str, Any]) -> list[str]:
    """The statistics as lines for a terminal or a README."""
    ch, sp, co = stats["characters"], stats["evidence_spans_per_note"], stats["codes_per_note"]
    return [
        f"{stats['discharge_summaries']} discharge summaries: characters median {ch['median']:.0f}, p90 "
        f"{ch['p90']:.0f}, max {ch['max']}; evidence spans per note median {sp['median']:.0f} (p90 {sp['p90']:.0f}); "
        f"codes per note median {co['median']:.0f} (p90 {co['p90']:.0f})",
        f"codes with at most 3 training spans: {', '.join(stats['rare_codes']) or 'none'}; codes in no training "
        f"note: {', '.join(stats['codes_absent_from_training']) or 'none'}",
    ]


def phrase_overlap(
    texts: list[tuple[int, int, str, str, str]], charts: list[dict], split_ids: dict[str, list[int]]
) -> dict[str, Any]:
    """The distinct evidence strings of the phrase-disjoint split (case-folded) and those of them found as
    whole words in any train or validation note."""
    seen_hadm = set(split_ids["train"]) | set(split_ids["val"])
    training = "\n".join(body for _, hadm, _, _, body in texts if hadm in seen_hadm).casefold()
    body_of = {nid: body for nid, _, _, _, body in texts}
    unseen = set(split_ids[UNSEEN_SPLIT])
    strings = sorted(
        {
            body_of[n["note_id"]][a["begin"] : a["end"]].casefold()
            for c in charts
            if c["hadm_id"] in unseen
            for n in c["notes"]
            for a in n["annotations"]
        }
    )
    shared = [x for x in strings if says(training, x, folded=True)]
    return {"evidence_strings": len(strings), "in_training_notes": len(shared), "shared": shared}


def ensure_demo(
    corpus: str | PathLike[str], *, n_charts: int = defaults.DEMO_CHARTS, seed: int = defaults.DEMO_SEED
) -> Path:
    """The demo corpus at `corpus`, generated when missing or written by an older generator.

    A corpus of this generator but another size or seed is an error rather than overwritten: results
    computed on it would silently stop being comparable.
    """
    root = Path(corpus)
    want = {"generator_version": GENERATOR_VERSION, "charts": n_charts, "seed": seed}
    have = read_manifest(root)
    if have is not None and {k: have.get(k) for k in want} == want:
        return root
    if have and have.get("generator_version") == GENERATOR_VERSION:
        raise SclError(
            f"this demo corpus has {have.get('charts')} charts with seed {have.get('seed')}, the recipe asks for "
            f"{n_charts} with seed {seed}; point demo.corpus at another directory or delete this one",
            path=root / MANIFEST,
        )
    generate_demo(root, n_charts=n_charts, seed=seed)
    return root


def ensure_sources(recipe: Recipe) -> None:
    """Generate every demo corpus the recipe reads that is missing (or written by an older generator): the
    entry points (`sclcoder train`, `data build`, the demo) call this before the stages read the corpus."""
    for source in [*recipe.data.train, *recipe.data.validation]:
        if isinstance(source, DemoSource):
            ensure_demo(source.demo.corpus, n_charts=source.demo.charts, seed=source.demo.seed)
