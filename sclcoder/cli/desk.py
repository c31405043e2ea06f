"""`sclcoder review`: the coder's desk in the browser (sclcoder.review)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sclcoder import defaults
from sclcoder.cli.app import app


@app.command("review")
def review_cmd(
    predictions: Annotated[Path, typer.Argument(help="Predictions JSONL written by `sclcoder predict`.")],
    notes: Annotated[Path, typer.Option(help="The notes JSONL those predictions were made on.")],
    gold: Annotated[
        Path | None, typer.Option(help="Gold evidence JSONL: shows the gold codes beside each note.")
    ] = None,
    coder: Annotated[str, typer.Option(help="Who reviews: written with every decision.")] = "",
    corrections: Annotated[
        Path | None, typer.Option(help="Corrections JSONL (default: PREDICTIONS with .corrections.jsonl).")
    ] = None,
    code_system: Annotated[str, typer.Option(help="Code system of the predictions.")] = defaults.CODE_SYSTEM,
    host: Annotated[
        str, typer.Option(help="Interface to bind; loopback unless you name another on purpose.")
    ] = defaults.LOOPBACK,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = defaults.REVIEW_PORT,
) -> None:
    """Review predictions in the browser: accept, reject or re-highlight evidence, add missed codes; every decision
    is appended to the corrections file at once, and reopening resumes where you stopped."""
    import os

    from sclcoder.progress import console
    from sclcoder.review.app import serve
    from sclcoder.review.session import ReviewSession

    session = ReviewSession(predictions, notes, corrections, coder=coder, gold=gold, code_system=code_system)
    # a fixed token from the environment lets a script drive the app; otherwise a fresh random one per start
    serve(session, host=host, port=port, token=os.environ.get("SCLCODER_REVIEW_TOKEN"), say=console.print)
