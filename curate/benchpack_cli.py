"""`curate benchmarks`: list the shipped benchmark pack (added to the `curate` app by ``register(app)``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from curate.benchpack import pack_dir, pack_sets


def benchmarks(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the benchmark test sets shipped with medcurate (what `decontaminate` checks by default)."""
    sets = pack_sets()
    if as_json:
        rows = [{k: v for k, v in asdict(s).items() if k != "path"} | {"path": str(s.path)} for s in sets]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"benchmark pack ({pack_dir()})")
    table.add_column("name", no_wrap=True)
    for col in ("split", "rows", "version", "licence"):
        table.add_column(col)
    for s in sets:
        table.add_row(s.name, s.split, f"{s.rows:,}", s.version, s.license)
    Console().print(table)
    Console().print(f"{len(sets)} sets, {sum(s.rows for s in sets):,} rows; licence files in {pack_dir() / 'licenses'}")


def register(app: typer.Typer) -> None:
    app.command("benchmarks")(benchmarks)
