"""Progress for long work: rich bars on a terminal, and plain dated lines when output goes to a file or
a pipe (`make demo > log`), so that a log shows how far a run is and when it will end."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

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

# soft wrap: a long path printed on one line stays one string a user (or a log search) can copy
console = Console(stderr=True, soft_wrap=True)

LINE_EVERY_S = 30.0
"""Without a terminal, a progress line at least this often (and at every tenth of the work)..."""
LINE_GAP_S = 5.0
"""...but never closer together than this: work that ends within seconds prints one line at most."""


def interactive() -> bool:
    """Rich bars only on a terminal, and never inside the test runner (its captured output is no TTY)."""
    return console.is_terminal and "pytest" not in sys.modules


def say(text: str) -> None:
    """One line of information (precision chosen, engine settings) on stderr, terminal or not."""
    console.print(text, highlight=False, soft_wrap=True)


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Lines:
    """Progress as plain lines: `what done/total unit | rate | ETA`, printed when a tenth of the work is done
    or LINE_EVERY_S has passed since the last line, and at the end."""

    def __init__(self, description: str, total: float | None, unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.done = 0.0
        self.started = self._last = time.monotonic()
        self._next_share = 0.1
        self.fields: dict[str, Any] = {}

    def advance(self, n: float = 1) -> None:
        self.done += n
        now = time.monotonic()
        share = self.done / self.total if self.total else 0.0
        finished = bool(self.total) and self.done >= self.total
        due = (share >= self._next_share and now - self._last >= LINE_GAP_S) or now - self._last >= LINE_EVERY_S
        if due or (finished and now - self.started >= LINE_GAP_S):
            self._next_share = (int(share * 10) + 1) / 10
            self._last = now
            say(self.line(now))

    def update(self, **fields: object) -> None:
        self.fields.update(fields)

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        total = f"/{self.total:,.0f}" if self.total else ""
        parts = [f"{self.description}: {self.done:,.0f}{total} {self.unit}", f"elapsed {duration(elapsed)}"]
        if self.fields.get("rate"):
            parts.append(str(self.fields["rate"]))
        elif rate:
            parts.append(f"{rate:.2f} {self.unit}/s")
        if self.total and rate and self.done < self.total:
            parts.append(f"ETA {duration((self.total - self.done) / rate)}")
        return " | ".join(parts)


class Bar:
    def __init__(self, progress: Progress | None, task: int | None, lines: Lines | None = None) -> None:
        self._progress, self._task, self._lines = progress, task, lines

    def advance(self, n: float = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)
        elif self._lines is not None:
            self._lines.advance(n)

    def update(self, **fields: object) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, **fields)  # type: ignore[arg-type]
        elif self._lines is not None:
            self._lines.update(**fields)


@contextlib.contextmanager
def bar(description: str, total: float | None, *, unit: str = "items", extra: str = "") -> Iterator[Bar]:
    """A progress bar; `unit="bytes"` shows a transfer rate. `extra` is a rich format string over
    task fields (e.g. "{task.fields[rate]}") shown at the end of the line. Without a terminal, plain lines
    (byte counts stay silent: a reader's lines would only be noise)."""
    if not interactive():
        quiet = "pytest" in sys.modules or unit == "bytes"
        yield Bar(None, None, None if quiet else Lines(description, total, unit))
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn()]
    columns.append(TransferSpeedColumn() if unit == "bytes" else MofNCompleteColumn())
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    if extra:
        columns.append(TextColumn(extra))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total, rate="")
        yield Bar(progress, task)
