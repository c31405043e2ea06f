"""The `sclcoder` command line: parses arguments and calls the library functions the tests call too.

Heavy libraries (torch, transformers, vLLM) are imported inside commands so that `--help` is instant.
Each module registers one group of commands on the shared `app`: `data` (corpus, conversion, datasets),
`run` (model, train, predict, serve, demo), `review` (eval, report) and `desk` (the coder's review app).
"""

# Importing a module registers its commands; `--help` lists them in this (the workflow's) order.
from sclcoder.cli import data, run  # noqa: F401

# isort: split
from sclcoder.cli import desk, review  # noqa: F401
from sclcoder.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
