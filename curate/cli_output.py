"""What every `curate` command shares for output: `--json`, -v/-q, untruncated tables when piped.

Conventions (as `hf` and `trl` do): data goes to stdout, messages and progress to stderr. With
`--json` a command prints exactly one JSON document on stdout and nothing else there, so
`curate versions NAME --json | jq` works. When stdout is not a terminal, tables are rendered at
their natural width (no `…`): `curate versions NAME | cat` shows full commit ids and dates.

Another command module adds `--json` like this (engineer 13's `benchmarks` does)::

    from curate.cli_output import JsonFlag, emit_json, stdout_console
    def benchmarks(json_out: JsonFlag = False) -> None:
        rows = ...
        if json_out:
            return emit_json(rows)
        stdout_console().print(table)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (for scripts).")]

#: Natural-width rendering when stdout is not a terminal; no real table is this wide.
_PIPE_WIDTH = 100_000


@dataclasses.dataclass
class OutputState:
    verbosity: int = 0  # -1 quiet, 0 default, 1 -v (info), 2 -vv (debug)

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0


STATE = OutputState()


def set_verbosity(verbose: int, quiet: bool) -> None:
    """Apply -v/-q to the log level of our loggers; without either they inherit the root level
    (warnings in `curate`, whatever a test's caplog sets in-process)."""
    STATE.verbosity = -1 if quiet else verbose
    level = {-1: logging.ERROR, 0: logging.NOTSET, 1: logging.INFO}.get(STATE.verbosity, logging.DEBUG)
    for name in ("medcurate", "curate", "synth", "train"):
        logging.getLogger(name).setLevel(level)


def stdout_console() -> Console:
    """A console for data on stdout: full width on a terminal, natural width (never `…`) when piped."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=_PIPE_WIDTH, soft_wrap=False, no_color=True, highlight=False)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths, tuples and nested containers -> JSON-able values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


def emit_json(data: Any) -> None:
    """Print `data` as one JSON document on stdout."""
    typer.echo(json.dumps(to_jsonable(data), indent=2, ensure_ascii=False))
