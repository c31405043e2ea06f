"""`sclcoder eval` (codes and evidence against a gold standard) and `sclcoder report` (the HTML audit view)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sclcoder import defaults
from sclcoder.cli.app import (
    CategoryOpt,
    DiagnosesOnlyOpt,
    MergeOpt,
    NewlinesOpt,
    PresetOpt,
    TrimOpt,
    app,
    mdace_filters,
)
from sclcoder.errors import SclError

if TYPE_CHECKING:
    from sclcoder.eval.report import EvalReport


class Benchmark(StrEnum):
    mdace = "mdace"
    rdiv10 = "rdiv10"
    demo = "demo"
    jsonl = "jsonl"


@app.command("eval")
def eval_cmd(
    benchmark: Annotated[
        Benchmark | None, typer.Option(help="Gold standard; default jsonl when --gold is given.")
    ] = None,
    gold: Annotated[Path | None, typer.Option(help="Gold generic evidence JSONL (rdiv10, jsonl).")] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Our predictions JSONL, or an MDACE-layout prediction directory.")
    ] = None,
    adapter: Annotated[
        Path | None, typer.Option(help="Run `predict` with this adapter first (and know its codes).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Report directory.")] = Path(defaults.EVAL_DIR),
    mdace_dir: Annotated[
        Path | None, typer.Option(help="MDACE checkout (data/ and splits/); default $SCLCODER_MDACE_DIR.")
    ] = None,
    noteevents: Annotated[
        Path | None, typer.Option(help="MIMIC-III NOTEEVENTS.csv (mdace); default $MIMIC3_NOTEEVENTS.")
    ] = None,
    split: Annotated[str, typer.Option(help="MDACE split name or file.")] = defaults.MDACE_TEST_SPLIT,
    icd: Annotated[int, typer.Option(help="MDACE code version, 10 or 9.")] = defaults.ICD_VERSION,
    setting: Annotated[str, typer.Option(help="MDACE setting: Inpatient or Profee.")] = "Inpatient",
    preset: PresetOpt = "official",
    category: CategoryOpt = None,
    diagnoses_only: DiagnosesOnlyOpt = None,
    trim: TrimOpt = None,
    merge_adjacent: MergeOpt = None,
    newlines: NewlinesOpt = None,
    corpus: Annotated[Path, typer.Option(help="Demo corpus directory (demo).")] = Path(defaults.DEMO_CORPUS),
    demo_split: Annotated[str, typer.Option(help="Demo test split: test, or test-unseen (phrase-disjoint).")] = "test",
    faithfulness: Annotated[
        bool, typer.Option(help="Also score sufficiency/comprehensiveness (needs --adapter).")
    ] = False,
    faithfulness_pairs: Annotated[
        int, typer.Option(min=1, help="At most this many (note, code) pairs.")
    ] = defaults.FAITHFULNESS_PAIRS,
) -> None:
    """Score codes (micro/macro), MDACE evidence metrics, plausibility (and faithfulness) into a report.

    Filters and clean-ups (--preset, --category, --trim, ...) apply to gold and predictions alike; their
    defaults are those of the MDACE authors' scoring script."""
    from sclcoder.artifacts import open_adapter
    from sclcoder.eval.evaluate import run_eval
    from sclcoder.eval.gold import MdaceLocation

    kind = benchmark or (Benchmark.jsonl if gold else None)
    if kind is None:
        raise SclError("give --benchmark (mdace, rdiv10, demo) or --gold GOLD.jsonl")
    report = run_eval(
        kind.value,
        gold=gold,
        predictions=predictions,
        adapter=open_adapter(adapter) if adapter else None,
        output=output,
        mdace=MdaceLocation.find(mdace_dir, noteevents, split=split, icd=icd, setting=setting)
        if kind is Benchmark.mdace
        else None,
        filters=mdace_filters(preset, category, diagnoses_only, trim, merge_adjacent, newlines),
        corpus=corpus,
        demo_split=demo_split,
        faithfulness_pairs=faithfulness_pairs if faithfulness else None,
    )
    _report_table(report, output)


def _report_table(report: EvalReport, output: Path) -> None:
    from rich.table import Table

    from sclcoder.eval.report import headline
    from sclcoder.progress import console

    table = Table(title=f"{report.benchmark}: {report.gold.notes} notes", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in headline(report):
        table.add_row(key, value)
    console.print(table)
    console.print(f"report: [bold]{output}/report.json[/], report.md, per_code.csv")


@app.command("report")
def report_cmd(
    predictions: Annotated[Path, typer.Argument(help="Predictions JSONL written by `sclcoder predict`.")],
    notes: Annotated[Path, typer.Option(help="The notes JSONL that was predicted (for the text).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
    gold: Annotated[Path | None, typer.Option(help="Gold JSONL: mark correct, spurious and missed codes.")] = None,
    code_system: Annotated[str, typer.Option(help="Code system of the notes.")] = defaults.CODE_SYSTEM,
) -> None:
    """Write a self-contained HTML audit view: each note's text with every code's evidence highlighted."""
    from sclcoder.eval.audit import build_report
    from sclcoder.progress import console

    out = build_report(predictions, notes, output, gold=gold, code_system=code_system)
    console.print(f"audit view written to [bold]{out}[/] (one file, opens offline in any browser)")
