"""`curate` command line: build recipes, list them, and (via curate.registry.cli) push / pull / versions / diff."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from curate.errors import MedcurateError

app = typer.Typer(help="Curate medical QA data into versioned instruction datasets.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console(stderr=True)

#: Modules that add commands with `register(app)`.
COMMAND_MODULES = ("curate.registry.cli",)


def _parse_sources(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise MedcurateError(f"--source {v!r} must look like NAME=PATH", hint="e.g. --source medqa=data/medqa.jsonl")
        out[name] = path
    return out


@app.command()
def build(
    name: Annotated[str, typer.Argument(help="Recipe name (see `curate recipes`) or path to a recipe YAML.")],
    source: Annotated[list[str], typer.Option("--source", "-s", help="Override a source: NAME=PATH (repeatable).")] = [],  # noqa: B006
    limit: Annotated[int | None, typer.Option(help="Read only the first N rows of each source.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the build here instead of builds/NAME/<build-id>.")] = None,
    teacher_url: Annotated[list[str], typer.Option("--teacher-url", help="OpenAI-compatible base URL(s), e.g. http://127.0.0.1:8000/v1 (repeatable).")] = [],  # noqa: B006
    teacher_model: Annotated[str | None, typer.Option(help="Model name the teacher server serves.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Estimate teacher calls and tokens; write nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    executor: Annotated[str, typer.Option(help="Where row steps run: local (in-process) or ray (pip install 'medcurate[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(envvar="RAY_ADDRESS", help="Ray cluster to join (default: $RAY_ADDRESS, else start a local one).")] = None,
    batch_rows: Annotated[int | None, typer.Option(min=1, help="Rows per spilled batch (default 50000); memory grows with it.")] = None,
) -> None:
    """Run a recipe: read sources, run its steps, write a build folder (data, rejects, scores, manifest, report, card)."""
    from curate.build import run_build

    options = {k: v for k, v in {"teacher_url": teacher_url or None, "teacher_model": teacher_model}.items() if v}
    options.update({k: v for k, v in {"executor": executor if executor != "local" else None,
                                      "ray_address": ray_address if executor == "ray" else None,
                                      "batch_rows": batch_rows}.items() if v})
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                  console=console, disable=quiet, transient=False) as bars:

        def progress(description: str, total: int):
            task = bars.add_task(description, total=total, info="")
            return lambda n=1, **fields: bars.update(task, advance=n, **fields)

        def on_stage(stage: str, meta: dict) -> None:
            if quiet:
                return
            kept, rej = meta.get("rows_kept"), meta.get("rows_rejected")
            bars.console.print(f"[green]✓[/] {stage}: kept {kept}, rejected {rej}"
                               + (f" ({meta['seconds']} s)" if meta.get("seconds") is not None else ""))

        result = run_build(name, source_overrides=_parse_sources(source), limit=limit, out=out,
                           options=options, dry_run=dry_run, progress=progress, on_stage=on_stage)
    m = result.manifest
    if dry_run:
        console.print(f"[bold]dry run[/]: {m['rows_out']} rows would reach the teacher steps")
        typer.echo(json.dumps(result.estimates or {"teacher_calls": 0}, indent=2))
        return
    console.print(f"[bold green]build complete[/]: {m['rows_in']} rows in → {m['rows_out']} kept, "
                  f"{m['rows_rejected']} rejected; output sha256 {m['output']['sha256'][:16]}")
    typer.echo(str(result.path))



@app.command("slurm")
def slurm(
    name: Annotated[str, typer.Argument(help="Recipe name or path to build on the cluster.")],
    nodes: Annotated[int, typer.Option(help="Nodes to allocate (one Ray node each).")] = 2,
    cpus_per_task: Annotated[int, typer.Option(help="CPUs per node given to Ray.")] = 32,
    time: Annotated[str, typer.Option(help="Slurm time limit.")] = "04:00:00",
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account.")] = None,
    venv: Annotated[str | None, typer.Option(help="Virtual environment to activate on the nodes.")] = None,
    builds: Annotated[str, typer.Option(help="MEDCURATE_BUILDS on shared storage.")] = "$PWD/builds",
    build_arg: Annotated[list[str], typer.Option("--build-arg", help="Extra `curate build` argument (repeatable).")] = [],  # noqa: B006
) -> None:
    """Print a Slurm batch script that starts a Ray cluster on the allocation and runs the build on it."""
    from curate.runner.slurm import SlurmJob, render_slurm

    typer.echo(render_slurm(SlurmJob(recipe=name, nodes=nodes, cpus_per_task=cpus_per_task, time=time,
                                     partition=partition, account=account, venv=venv, builds=builds,
                                     build_args=build_arg)), nl=False)

@app.command()
def recipes() -> None:
    """List the dataset recipes (shipped ones and those in ./recipes)."""
    from curate.recipe import list_recipes

    table = Table("recipe", "description")
    for r in list_recipes():
        table.add_row(r["name"], r["description"])
    Console().print(table)


@app.command()
def steps() -> None:
    """List the registered steps."""
    from curate.steps import get_step, step_names

    table = Table("step", "scope", "description")
    for n in step_names():
        cls = get_step(n)
        table.add_row(n, cls.scope, cls.description)
    Console().print(table)


def _register_commands() -> None:
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as err:
            if err.name != mod_name:
                raise
            continue
        mod.register(app)


_register_commands()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    try:
        app()
    except MedcurateError as err:
        console.print(f"[bold red]error:[/] {err}")
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: no build folder was left half-written")
        sys.exit(130)


if __name__ == "__main__":
    main()
