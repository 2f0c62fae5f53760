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
from rich.markup import escape
from rich.table import Table

from curate import __version__
from curate.cli_output import JsonFlag, emit_json, set_verbosity, stdout_console
from curate.errors import MedcurateError

app = typer.Typer(help="Curate medical QA data into versioned instruction datasets.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=True,
                  context_settings={"help_option_names": ["-h", "--help"]})
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medcurate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More log output (-v info, -vv debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors; no progress.")] = False,
) -> None:
    """Curate medical QA data into versioned instruction datasets."""
    set_verbosity(verbose, quiet)

#: Modules that add commands with `register(app)`.
COMMAND_MODULES = ("curate.registry.cli", "curate.benchpack_cli")


def _parse_sources(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise MedcurateError(f"--source {v!r} must look like NAME=PATH", hint="e.g. --source medqa=data/medqa.jsonl")
        out[name] = path
    return out


def _parse_source_splits(values: list[str]) -> dict[str, str]:
    """`--source-split NAME=SPLIT`: the split a `--source NAME=PATH` file is (default "unknown")."""
    out = {}
    for v in values:
        name, sep, split = v.partition("=")
        if not sep or not name or not split.strip():
            raise MedcurateError(f"--source-split {v!r} must look like NAME=SPLIT",
                                 hint="e.g. --source medqa=data/dev.jsonl --source-split medqa=validation")
        out[name] = split.strip()
    return out


@app.command()
def build(
    name: Annotated[str, typer.Argument(help="Recipe name (see `curate recipes`) or path to a recipe YAML.")],
    source: Annotated[list[str], typer.Option("--source", "-s", help="Override a source: NAME=PATH (repeatable).")] = [],  # noqa: B006
    source_split: Annotated[list[str], typer.Option("--source-split", help="The split of a --source file: NAME=SPLIT (repeatable; default unknown).")] = [],  # noqa: B006
    limit: Annotated[int | None, typer.Option(help="Read only the first N rows of each source.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the build here instead of builds/NAME/<build-id>.")] = None,
    teacher_url: Annotated[list[str], typer.Option("--teacher-url", help="OpenAI-compatible base URL(s), e.g. http://127.0.0.1:8000/v1 (repeatable).")] = [],  # noqa: B006
    teacher_model: Annotated[str | None, typer.Option(help="Model name the teacher server serves.")] = None,
    teacher_timeout: Annotated[float | None, typer.Option("--teacher-timeout", min=0.001, help="Seconds one teacher request may take (overrides the profile's timeout_s).")] = None,
    policy_url: Annotated[list[str], typer.Option("--policy-url", help="Policy (model being aligned) base URL(s) for red-team pairs (repeatable).")] = [],  # noqa: B006
    policy_model: Annotated[str | None, typer.Option(help="Model name the policy server serves.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Estimate teacher calls and tokens; write nothing.")] = False,
    allow_empty: Annotated[bool, typer.Option("--allow-empty", help="Accept a build with no rows out (else it fails and LATEST stays).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    tokenizer: Annotated[str | None, typer.Option(help="tokenizer.json, a folder with one, or a cached Hub id (overrides the recipe's `tokenizer:`): exact token counts in the manifest, report, card and `mix: {unit: tokens}`.")] = None,
    json_out: JsonFlag = False,
    executor: Annotated[str, typer.Option(help="Where row steps and global steps' per-part passes run: local (in-process) or ray (pip install 'medcurate[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(envvar="RAY_ADDRESS", help="Ray cluster to join (default: $RAY_ADDRESS, else start a local one).")] = None,
    batch_rows: Annotated[int | None, typer.Option(min=1, help="Rows per spilled batch (default 50000); memory grows with it.")] = None,
) -> None:
    """Run a recipe: read sources, run its steps, write a build folder (data, rejects, scores, manifest, report, card)."""
    from curate.build import run_build
    from curate.cli_output import STATE
    from curate.progress import build_progress

    options = {k: v for k, v in {"teacher_url": teacher_url or None, "teacher_model": teacher_model,
                                  "teacher_timeout": teacher_timeout, "allow_empty": allow_empty,
                                  "tokenizer": tokenizer,
                                  "policy_url": policy_url or None, "policy_model": policy_model}.items() if v}
    options.update({k: v for k, v in {"executor": executor if executor != "local" else None,
                                      "ray_address": ray_address if executor == "ray" else None,
                                      "batch_rows": batch_rows}.items() if v})
    with build_progress(console, quiet=quiet or STATE.quiet) as (progress, on_stage):
        result = run_build(name, source_overrides=_parse_sources(source), source_splits=_parse_source_splits(source_split),
                           limit=limit, out=out,
                           options=options, dry_run=dry_run, progress=progress, on_stage=on_stage)
    m = result.manifest
    if dry_run:
        if json_out:
            return emit_json({"dry_run": True, "rows_out": m["rows_out"],
                              "estimates": result.estimates or {"teacher_calls": 0}})
        console.print(f"[bold]dry run[/]: {m['rows_out']} rows would reach the teacher steps")
        typer.echo(json.dumps(result.estimates or {"teacher_calls": 0}, indent=2))
        return
    if json_out:
        return emit_json({"path": str(result.path), "build_id": m["build_id"], "rows_in": m["rows_in"],
                          "rows_out": m["rows_out"], "rows_rejected": m["rows_rejected"],
                          "output_sha256": m["output"]["sha256"], "manifest": m})
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
def recipes(json_out: JsonFlag = False) -> None:
    """List the dataset recipes (shipped ones and those in ./recipes)."""
    from curate.recipe import list_recipes

    rows = list_recipes()
    if json_out:
        return emit_json(rows)
    table = Table("recipe", "description")
    for r in rows:
        table.add_row(r["name"], r["description"])
    stdout_console().print(table)


def _default(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


@app.command()
def steps(
    name: Annotated[str | None, typer.Argument(help="Show only this step.")] = None,
    json_out: JsonFlag = False,
) -> None:
    """List the registered steps with their parameters (type, default, description)."""
    from curate.step_docs import step_params, steps_catalogue
    from curate.steps import get_step

    if name is not None:
        cls = get_step(name)
        rows = [{"name": name, "scope": cls.scope, "description": cls.description, "params": step_params(name)}]
    else:
        rows = steps_catalogue()
    if json_out:
        return emit_json(rows)
    out = stdout_console()
    for s in rows:
        table = Table("param", "type", "default", "description", title=f"{s['name']} ({s['scope']})",
                      caption=s["description"], title_justify="left", caption_justify="left")
        for p in s["params"]:
            default = "(required)" if p["required"] else _default(p["default"])
            table.add_row(p["name"], escape(p["type"]), escape(default), escape(p["description"]))
        out.print(table)


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
                        handlers=[RichHandler(console=console, show_path=False)] if console.is_terminal
                        else [logging.StreamHandler(sys.stderr)])
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
