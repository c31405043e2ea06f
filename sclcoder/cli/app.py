"""The `sclcoder` application object and what every command group shares: the error boundary, the
global options, and the recipe arguments."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from sclcoder import __version__
from sclcoder.errors import SclError


class _Group(TyperGroup):
    """Turns user mistakes (SclError) into one red line and exit code 2, without a traceback."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except SclError as exc:
            _say_error(str(exc))
            raise typer.Exit(2) from None
        # The readers turn these into SclErrors naming file and line; this is the net for any path they miss
        # (a file the system will not let us read or write, bytes that are not text, absurd nesting).
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            _say_error(f"{exc.strerror or exc}{where}")
            raise typer.Exit(2) from None
        except UnicodeDecodeError as exc:
            _say_error(f"an input is not UTF-8 text ({exc.reason}); convert it to UTF-8")
            raise typer.Exit(2) from None
        except RecursionError:
            _say_error("an input is nested too deeply to read")
            raise typer.Exit(2) from None


def _say_error(message: str) -> None:
    from sclcoder.progress import console

    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Evidence-based ICD coding with LLMs: build span-centric datasets, fine-tune, predict codes with "
    "auditable evidence, and evaluate codes and rationales.",
)


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


def print_written(what: str, n: int, out: Path, report: dict | None = None, skipped: int = 0) -> None:
    from sclcoder.progress import console

    console.print(f"wrote {n} {what} to [bold]{out}[/]")
    if report:
        for reason, count in sorted(report.get("dropped", {}).items()):
            console.print(f"  dropped {count} {reason}")
        for what, count in sorted(report.get("changed", {}).items()):
            console.print(f"  changed {count} {what}")
    if skipped:
        console.print(f"  [yellow]skipped {skipped} invalid input item(s) (--skip-invalid)[/]")


RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/smollm2_cpu.yaml.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override one recipe value, e.g. --set train.max_steps=20.")
]


# MDACE options, shared by `data convert mdace` and `eval --benchmark mdace`; their defaults live in
# sclcoder.recipe.MdaceFilters (the MDACE authors' scoring script), a preset names a published setting.
PresetOpt = Annotated[
    str,
    typer.Option(help="MDACE setting: official (the scoring script's defaults), paper-discharge, paper-codeable."),
]
CategoryOpt = Annotated[
    list[str] | None, typer.Option("--category", help="Keep notes of this category (repeatable). Default: all.")
]
DiagnosesOnlyOpt = Annotated[
    bool | None, typer.Option("--diagnoses-only", help="Drop procedure codes (PCS, ICD-9 procedures, CPT).")
]
TrimOpt = Annotated[bool | None, typer.Option("--trim/--no-trim", help="Trim punctuation/whitespace at span ends.")]
MergeOpt = Annotated[
    bool | None,
    typer.Option("--merge-adjacent/--no-merge-adjacent", help="Merge same-code spans split only by punctuation."),
]
NewlinesOpt = Annotated[
    str | None,
    typer.Option(help="official: CR LF in TEXT becomes LF, as the authors' text injection reads it; keep: exact."),
]


def mdace_filters(
    preset: str, category: list[str] | None, diagnoses_only: bool | None, trim: bool | None,
    merge_adjacent: bool | None, newlines: str | None,
) -> Any:  # fmt: skip
    from sclcoder.recipe import MdaceFilters

    return MdaceFilters.preset(
        preset,
        categories=category or None,
        diagnoses_only=diagnoses_only,
        trim=trim,
        merge_adjacent=merge_adjacent,
        newlines=newlines,
    )
