"""Progress bars for long work (rich), quiet when output is not a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

console = Console(stderr=True)


class Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def update(self, **fields: object) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, **fields)  # type: ignore[arg-type]


@contextlib.contextmanager
def bar(description: str, total: float | None, *, unit: str = "items", extra: str = "") -> Iterator[Bar]:
    """A progress bar; `unit="bytes"` shows a transfer rate. `extra` is a rich format string over
    task fields (e.g. "{task.fields[rate]}") shown at the end of the line."""
    if not console.is_terminal or "pytest" in sys.modules:
        yield Bar(None, None)
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn()]
    columns.append(TransferSpeedColumn() if unit == "bytes" else MofNCompleteColumn())
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    if extra:
        columns.append(TextColumn(extra))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, rate="")
        yield Bar(progress, task)
