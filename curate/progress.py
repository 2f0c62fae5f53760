"""Progress for `curate build`: rich bars on a terminal, periodic plain lines when stderr is a log.

`build_progress(console, quiet)` yields `(progress, on_stage)` for `run_build`: `progress(description,
total)` returns `advance(n=1, **fields)`. On a terminal every stage (each source, each step, teacher
calls) gets a rich bar with elapsed time. When stderr is not a terminal (CI, `nohup`, `2> build.log`)
bars would be either invisible or a mess of control codes, so each task instead logs a line when it
starts, then at most every `MEDCURATE_PROGRESS_EVERY` seconds (default 10: a 2-hour teacher run gives
~700 lines, not 100,000), and when it completes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[..., None]


def _every_s() -> float:
    return float(os.environ.get("MEDCURATE_PROGRESS_EVERY", "10"))


class LineProgress:
    """Plain progress lines for logs: start, every `every_s` seconds, done."""

    def __init__(self, console: Console, every_s: float | None = None):
        self.console, self.every_s = console, _every_s() if every_s is None else every_s

    def _line(self, text: str) -> None:
        self.console.print(f"{datetime.now():%H:%M:%S} {text}", markup=False, highlight=False, soft_wrap=True)

    def task(self, description: str, total: int | None) -> Advance:
        start = last = time.monotonic()
        done = 0
        of = f"/{total:,}" if total else ""
        self._line(f"{description}: started ({total:,} rows)" if total else f"{description}: started")

        def advance(n: int = 1, **fields: Any) -> None:
            nonlocal done, last
            done += n
            now = time.monotonic()
            finished = bool(total) and done >= total
            if finished or now - last >= self.every_s:
                last = now
                pct = f" ({done / total:.0%})" if total else ""
                info = f", {fields['info']}" if fields.get("info") else ""
                state = "done" if finished else "running"
                self._line(f"{description}: {state} {done:,}{of} rows{pct}, {now - start:.1f} s{info}")

        return advance


@contextlib.contextmanager
def build_progress(console: Console, quiet: bool = False) -> Iterator[tuple[Callable[[str, int], Advance],
                                                                           Callable[[str, dict], None]]]:
    """(progress factory, on_stage callback) for `run_build`, bars or lines depending on the console."""
    def on_stage(stage: str, meta: dict) -> None:
        if quiet:
            return
        kept, rej = meta.get("rows_kept"), meta.get("rows_rejected")
        console.print(f"[green]✓[/] {stage}: kept {kept}, rejected {rej}"
                      + (f" ({meta['seconds']} s)" if meta.get("seconds") is not None else ""))

    if quiet:
        yield (lambda description, total: lambda n=1, **fields: None), on_stage
        return
    if not console.is_terminal:
        lines = LineProgress(console)
        yield lines.task, on_stage
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                  console=console, transient=False) as bars:

        def progress(description: str, total: int | None) -> Advance:
            task = bars.add_task(description, total=total or None, info="")
            return lambda n=1, **fields: bars.update(task, advance=n, **fields)

        yield progress, on_stage
