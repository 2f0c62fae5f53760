"""`train` command line: `train sft|merge|dpo|eval CONFIG.yaml [--set key=value ...]`, `train compare`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from curate.errors import MedcurateError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train on medcurate datasets by tag: SFT, weight merges and DPO, each with a model card.")

_SET = typer.Option(None, "--set", help="Override a config key: --set training.learning_rate=1e-4 (repeatable).")
_CHECK = typer.Option(False, "--check", help="Validate the config and open the datasets, then stop (no model load).")
_RESUME = typer.Option(False, "--resume", help="Continue from the last checkpoint-* in output_dir.")


def _fail(err: MedcurateError) -> None:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _load(kind: str, config: Path, overrides: list[str] | None):
    from train.config import load_config

    return load_config(kind, config, overrides or [])


def _done(kind: str, out: Path) -> None:
    typer.secho(f"{kind}: wrote {out} (model card: {out / 'README.md'})", fg=typer.colors.GREEN)


@app.command()
def sft(config: Path = typer.Argument(..., help="SFT config YAML, e.g. recipes/train/tiny-sft.yaml"),
        set_: list[str] = _SET, check: bool = _CHECK, resume: bool = _RESUME) -> None:
    """Supervised fine-tuning (TRL SFTTrainer) on datasets named org/name@vX.Y.Z or build folders."""
    try:
        cfg = _load("sft", config, set_)
        if check:
            from train.data import SFT_COLUMNS, load_mix

            _, lineages = load_mix(cfg.datasets, SFT_COLUMNS, seed=cfg.seed, origin=str(config))
            typer.echo(f"ok: {config} ({sum(lin.rows_used for lin in lineages)} training rows)")
            return
        from train.sft import run_sft

        _done("sft", run_sft(cfg, origin=str(config), resume=resume))
    except MedcurateError as err:
        _fail(err)


@app.command()
def dpo(config: Path = typer.Argument(..., help="DPO config YAML, e.g. recipes/train/tiny-dpo.yaml"),
        set_: list[str] = _SET, check: bool = _CHECK, resume: bool = _RESUME) -> None:
    """Direct Preference Optimization (TRL DPOTrainer) on preference datasets by tag."""
    try:
        cfg = _load("dpo", config, set_)
        if check:
            from train.data import PREFERENCE_COLUMNS, load_mix

            _, lineages = load_mix(cfg.datasets, PREFERENCE_COLUMNS, seed=cfg.seed, origin=str(config))
            typer.echo(f"ok: {config} ({sum(lin.rows_used for lin in lineages)} preference pairs)")
            return
        from train.dpo import run_dpo

        _done("dpo", run_dpo(cfg, origin=str(config), resume=resume))
    except MedcurateError as err:
        _fail(err)


@app.command()
def merge(config: Path = typer.Argument(..., help="Merge config YAML, e.g. recipes/train/tiny-merge.yaml"),
          set_: list[str] = _SET) -> None:
    """Weight merge (DARE-TIES, TIES, linear, SLERP, task arithmetic) with mergekit."""
    try:
        cfg = _load("merge", config, set_)
        from train.merge import run_merge

        _done("merge", run_merge(cfg, origin=str(config)))
    except MedcurateError as err:
        _fail(err)


@app.command("eval")
def eval_(config: Path = typer.Argument(..., help="Eval config YAML, e.g. recipes/train/eval-multimedqa.yaml"),
          base_url: str = typer.Option(None, "--base-url", help="Served model: OpenAI-compatible base URL (.../v1)."),
          model: str = typer.Option(None, "--model", help="Served model name (with --base-url)."),
          checkpoint: str = typer.Option(None, "--checkpoint", help="Local model folder (a train output)."),
          scheme: str = typer.Option(None, "--scheme", help="zero-shot | sc-cot | medprompt"),
          limit: int = typer.Option(None, "--limit", help="First N questions of each benchmark."),
          output: str = typer.Option(None, "--output", help="Output folder (eval.json)."),
          set_: list[str] = _SET) -> None:
    """Score a model on the benchmark pack (MultiMedQA): lm-eval zero-shot, sc-cot or medprompt."""
    try:
        import train.evaluation.config  # noqa: F401 - registers the `eval` config type
        from train.evaluation.run import run_eval

        flags: dict[str, object] = {"scheme": scheme, "limit": limit, "output_dir": output}
        if base_url or model:  # a model on the command line replaces the config's, served or local
            flags |= {"base_url": base_url or "null", "model": model or "null", "checkpoint": "null"}
        if checkpoint:
            flags |= {"checkpoint": checkpoint, "base_url": "null", "model": "null"}
        cfg = _load("eval", config, [f"{k}={v}" for k, v in flags.items() if v is not None] + (set_ or []))
        result = run_eval(cfg, origin=str(config))
        from train.evaluation.report import compare_markdown

        typer.echo(compare_markdown([result]))
        typer.secho(f"eval: wrote {Path(cfg.output_dir) / 'eval.json'}"
                    + (f" (model card: {result['card']})" if result.get("card") else ""), fg=typer.colors.GREEN)
    except MedcurateError as err:
        _fail(err)


@app.command()
def compare(results: list[Path] = typer.Argument(..., help="`train eval` output folders or eval.json files"),
            json_: bool = typer.Option(False, "--json", help="Print JSON instead of a Markdown table.")) -> None:
    """One table across evaluated models, with the dataset versions each was trained on."""
    try:
        import json

        from train.evaluation.report import compare_markdown, compare_rows, read_result

        loaded = [read_result(p) for p in results]
        if json_:
            benches, rows = compare_rows(loaded)
            typer.echo(json.dumps({"benchmarks": benches, "models": rows}, indent=2))
        else:
            typer.echo(compare_markdown(loaded))
    except MedcurateError as err:
        _fail(err)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    sys.exit(main())
