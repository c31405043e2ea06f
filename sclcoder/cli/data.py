"""`sclcoder data ...`: generate the demo corpus, convert sources to evidence JSONL, build SFT datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sclcoder import defaults
from sclcoder.cli.app import (
    CategoryOpt,
    DiagnosesOnlyOpt,
    MergeOpt,
    NewlinesOpt,
    PresetOpt,
    RecipeArg,
    SetOpt,
    TrimOpt,
    app,
    mdace_filters,
    print_written,
)
from sclcoder.files import check_writable

data_app = typer.Typer(no_args_is_help=True, help="Read, convert and build datasets.")
convert_app = typer.Typer(
    no_args_is_help=True,
    help="Convert a source (MDACE + MIMIC-III, MIMIC-IV, the demo corpus) into generic evidence JSONL.",
)
app.add_typer(data_app, name="data")
data_app.add_typer(convert_app, name="convert")


@data_app.command("demo")
def data_demo(
    out: Annotated[Path, typer.Argument(help="Directory to write the corpus to (an earlier corpus is replaced).")],
    charts: Annotated[int, typer.Option(min=10, help="Number of admissions.")] = defaults.DEMO_CHARTS,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same corpus.")] = defaults.DEMO_SEED,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a directory that holds anything else (its files are lost).")
    ] = False,
) -> None:
    """Generate the synthetic demo corpus (MDACE layout: annotations, NOTEEVENTS.csv, splits)."""
    from sclcoder.demo.corpus import generate_demo
    from sclcoder.progress import console

    summary = generate_demo(out, n_charts=charts, seed=seed, replace=overwrite)
    from sclcoder.demo.corpus import describe_statistics

    console.print(
        f"wrote {summary.charts} admissions, {summary.notes} notes, {summary.spans} evidence spans over "
        f"{summary.codes} ICD-10-CM codes to [bold]{out}[/] (splits: "
        + ", ".join(f"{k} {v}" for k, v in summary.splits.items())
        + ")"
    )
    for line in describe_statistics(summary.statistics):
        console.print(f"  {line}")


@convert_app.command("mdace")
def convert_mdace(
    annotations: Annotated[
        Path, typer.Option(help="MDACE annotation directory, e.g. MDACE/data/Inpatient/ICD-10/1.0.")
    ],
    noteevents: Annotated[Path, typer.Option(help="MIMIC-III NOTEEVENTS.csv (streamed; may be gigabytes).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Generic evidence JSONL to write.")],
    split: Annotated[
        Path | None, typer.Option(help="Split file with HADM ids (MDace-ev-*.csv, MDace-code-ev-*.csv).")
    ] = None,
    preset: PresetOpt = "official",
    category: CategoryOpt = None,
    diagnoses_only: DiagnosesOnlyOpt = None,
    trim: TrimOpt = None,
    merge_adjacent: MergeOpt = None,
    newlines: NewlinesOpt = None,
    skip_invalid: Annotated[
        bool, typer.Option(help="Skip (and count) notes with bad annotations instead of stopping.")
    ] = False,
) -> None:
    """MDACE annotations joined with the MIMIC-III note text -> generic evidence JSONL."""
    from sclcoder.data.documents import write_documents
    from sclcoder.data.readers import ReadReport, read_mdace
    from sclcoder.errors import Skips

    check_writable(output)
    filters = mdace_filters(preset, category, diagnoses_only, trim, merge_adjacent, newlines)
    report, skips = ReadReport(), Skips(skip_invalid)
    docs = read_mdace(annotations, noteevents, split=split, filters=filters, skips=skips, report=report)
    n = write_documents(output, docs)
    print_written("notes", n, output, report.as_dict(), skips.count)


@convert_app.command("mimic4")
def convert_mimic4(
    discharge: Annotated[Path, typer.Option(help="MIMIC-IV-Note discharge.csv.")],
    diagnoses: Annotated[Path, typer.Option(help="MIMIC-IV hosp/diagnoses_icd.csv.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Generic evidence JSONL to write.")],
    version: Annotated[int, typer.Option(help="ICD version to keep (9 or 10).")] = defaults.ICD_VERSION,
    procedures: Annotated[
        Path | None, typer.Option(help="hosp/procedures_icd.csv, to keep procedure codes too.")
    ] = None,
    split: Annotated[Path | None, typer.Option(help="File of HADM ids to keep, one per line.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip (and count) rows with bad codes or ids.")] = False,
) -> None:
    """MIMIC-IV discharge notes with their ICD codes (no evidence) -> generic evidence JSONL."""
    from sclcoder.data.documents import write_documents
    from sclcoder.data.mimic4 import read_mimic4
    from sclcoder.data.readers import ReadReport, read_split
    from sclcoder.errors import Skips

    check_writable(output)
    report, skips = ReadReport(), Skips(skip_invalid)
    docs = read_mimic4(
        discharge,
        diagnoses,
        version=version,
        procedures=procedures,
        hadm_ids=read_split(split) if split else None,
        skips=skips,
        report=report,
    )
    n = write_documents(output, docs)
    print_written("notes", n, output, report.as_dict(), skips.count)


@convert_app.command("demo")
def convert_demo(
    corpus: Annotated[Path, typer.Option(help="Directory written by `sclcoder data demo`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Generic evidence JSONL to write.")],
    split: Annotated[
        str | None, typer.Option(help="train, val, test or test-unseen (phrase-disjoint); default: all.")
    ] = None,
    all_categories: Annotated[bool, typer.Option(help="Also keep the radiology reports.")] = False,
) -> None:
    """The demo corpus, read through the MDACE reader -> generic evidence JSONL."""
    from sclcoder.data.corpus_folder import read_demo
    from sclcoder.data.documents import write_documents
    from sclcoder.data.readers import ReadReport

    check_writable(output)
    report = ReadReport()
    docs = read_demo(corpus, split=split, all_categories=all_categories, report=report)
    n = write_documents(output, docs)
    print_written("notes", n, output, report.as_dict())


@data_app.command("build")
def data_build(
    recipe: RecipeArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Dataset directory (default: data.dataset_dir).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a directory that is not an sclcoder dataset.")] = False,
    set_: SetOpt = None,
) -> None:
    """Build the span-centric SFT dataset (span, negative, document, synthetic examples) and stats.json."""
    from sclcoder.demo.corpus import ensure_sources
    from sclcoder.recipe import load_recipe
    from sclcoder.sft.build import build_dataset

    loaded = load_recipe(recipe, set_ or [])
    ensure_sources(loaded)
    result = build_dataset(loaded, output, overwrite=overwrite)
    _stats_table(result.stats, result.out_dir)


@data_app.command("stats")
def data_stats(
    directory: Annotated[Path, typer.Argument(help="Dataset directory written by `data build`.")],
) -> None:
    """Summarise a built dataset: examples and tokens per kind, coverage, cost against document SFT."""
    from sclcoder.artifacts import open_dataset

    ds = open_dataset(directory)
    _stats_table(ds.stats, ds.path)


def _stats_table(stats: dict, path: Path) -> None:
    from rich.table import Table

    from sclcoder.progress import console

    table = Table(title=f"SFT dataset {path}", show_lines=False)
    for col in ("split", "kind", "examples", "prompt tokens", "completion tokens", "tokens"):
        table.add_column(col, justify="right" if col not in ("split", "kind") else "left")
    for split in ("train", "validation"):
        for kind, k in stats[split]["by_kind"].items():
            table.add_row(
                split,
                kind,
                str(k["examples"]),
                str(k["prompt_tokens"]),
                str(k["completion_tokens"]),
                str(k["tokens"]),
            )
        table.add_row(split, "[bold]all", str(stats[split]["examples"]), "", "", f"[bold]{stats[split]['tokens']}")
    console.print(table)
    base = stats["document_only_sft"]
    console.print(
        f"codes covered: {stats['codes_covered']}   notes: {stats['notes']['train']} train, "
        f"{stats['notes']['validation']} validation   dataset tokens: "
        f"{stats['token_cost_vs_document_sft']:.2f}x those of document-only SFT on the same notes ({base['tokens']}); "
        "what training costs is the optimizer's tokens and time (the adapter's sclcoder.json)"
    )
    fixed = stats.get("corrections")
    if fixed:
        made = ", ".join(f"{n} {kind}" for kind, n in fixed["examples"].items()) or "no examples"
        console.print(
            f"corrections: {fixed['decisions']} decisions on {fixed['notes']} notes ({fixed['done']} done), "
            f"{fixed['codes_kept']} codes kept, {fixed['codes_rejected']} rejected -> {made}"
        )
    syn = stats.get("synthesis") or {}
    if syn.get("teacher", {}).get("skipped"):
        console.print(f"[yellow]teacher answers skipped:[/] {syn['teacher']['skipped']}")
