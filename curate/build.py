"""The build runner: recipe + sources -> build folder in which every input row is accounted for.

`run_build` reads as its stage list: read sources -> ingest -> row steps -> global steps -> write; the
stages live in `curate.runner` (spilled parquet parts, completion markers, resume, executors). Output is
written to a temporary folder that is renamed into place only when complete, so a killed build never
leaves a folder that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curate import __version__
from curate.build_checks import check_not_empty, warn_emptied_sources
from curate.errors import MedcurateError, ReconciliationError
from curate.outdir import check_out_dir
from curate.recipe import Recipe
from curate.recipe_input import RecipeLike, resolve_recipe
from curate.resources import recipes_dir
from curate.runner.executors import executor_for
from curate.runner.pipeline import run_steps
from curate.runner.sources import INGEST, ingest, read_sources, source_rejects
from curate.runner.state import RunDir, run_key
from curate.runner.state import parts as parts_of
from curate.runner.state import rows_in as part_rows
from curate.runner.tokens import account_tokens, build_counter
from curate.runner.write import final_path, reject_summaries, write_build
from curate.steps import BuildContext

log = logging.getLogger("medcurate.build")
DEFAULT_BATCH_ROWS = 50_000  # rows per spilled part: ~150 MB of MedMCQA-shaped rows in memory per batch


def builds_root() -> Path:
    """Where builds live: $MEDCURATE_BUILDS or ./builds."""
    return Path(os.environ.get("MEDCURATE_BUILDS", "builds"))


def find_build(name: str, build_id: str | None = None, root: Path | None = None) -> Path:
    """A complete build folder of recipe `name` (the newest when `build_id` is None)."""
    base = (root or builds_root()) / name
    if build_id is None:
        latest = base / "LATEST"
        if not latest.is_file():
            raise MedcurateError(f"no build of {name!r} under {base}", hint=f"run `curate build {name}` first")
        build_id = latest.read_text().strip()
    path = base / build_id
    if not (path / "manifest.json").is_file():
        known = sorted(p.name for p in base.glob("*") if (p / "manifest.json").is_file()) if base.is_dir() else []
        raise MedcurateError(f"build {build_id!r} of {name!r} not found or incomplete at {path}",
                             hint=f"complete builds: {', '.join(known) or 'none'}")
    return path


@dataclass
class BuildResult:
    path: Path | None  # None for a dry run
    manifest: dict[str, Any]
    estimates: dict[str, Any] = field(default_factory=dict)


def _versions() -> dict[str, str]:
    out = {"medcurate": __version__, "python": platform.python_version()}
    for pkg in ("polars", "pyarrow", "datasets", "datatrove", "datasketch", "lingua-language-detector", "langdetect"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    return out


def _build_id(recipe_sha: str, sources: list[dict[str, Any]], limit: int | None) -> str:
    h = hashlib.sha256(json.dumps([recipe_sha, [s.get("sha256") for s in sources], limit]).encode()).hexdigest()
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{h[:8]}"


ProgressFactory = Callable[[str, int], Callable[[int], None]]


def run_build(
    recipe_ref: RecipeLike,
    *,
    source_overrides: dict[str, str] | None = None,
    source_splits: dict[str, str] | None = None,
    limit: int | None = None,
    out: Path | None = None,
    options: dict[str, Any] | None = None,
    dry_run: bool = False,
    progress: ProgressFactory | None = None,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
    base_dir: Path | None = None,
) -> BuildResult:
    """Run a recipe end to end: read sources -> ingest -> row steps -> global steps -> write.

    `recipe_ref` is a recipe name, a YAML path, a dict or a `Recipe` (see `curate.recipe_input`); `base_dir`
    is where an in-memory recipe's relative source paths resolve (default: the cwd).
    `progress(description, total) -> advance(n)` wires progress bars. Options the runner reads:
    `batch_rows` (rows per spilled part, default 50,000), `executor` ("local" or "ray"), `ray_address`,
    `tokenizer` (overrides the recipe's `tokenizer:`; see `curate.runner.tokens`), `allow_empty`.
    """
    recipe, recipe_path, recipe_sha = resolve_recipe(recipe_ref, base_dir=base_dir)
    if out is not None and not dry_run:
        check_out_dir(out)  # before any source is read or teacher called
    overrides = _checked_overrides(recipe, source_overrides, source_splits)
    splits = dict(source_splits or {})
    counter = build_counter((options or {}).get("tokenizer"), recipe.tokenizer, recipe_path.parent)  # fail fast
    opts = {**(options or {}), "dry_run": dry_run, "tokenizer": counter.path and str(counter.path)}  # for `mix`
    batch_rows = int(opts.get("batch_rows") or DEFAULT_BATCH_ROWS)
    progress = progress or (lambda description, total: lambda n: None)
    base = builds_root() / recipe.name
    work_dir = Path(opts.get("work_dir") or base / ".work")
    ctx = BuildContext(recipe_name=recipe.name, work_dir=work_dir, seed=recipe.seed, options=opts,
                       recipe=recipe, start_progress=progress)
    run = RunDir(work_dir / "runs" / run_key(recipe, recipe_path, recipe_sha, overrides, limit,
                                             {**opts, "source_splits": splits}))
    with run.lock():
        infos = read_sources(recipe, recipe_path, run, overrides=overrides, splits=splits, limit=limit,
                             batch_rows=batch_rows, progress=progress, on_stage=on_stage)
        src_rejects = source_rejects(recipe, run)
        warn_emptied_sources(infos, _emptied_source_rejects(infos, src_rejects))
        parts, ingest_meta = ingest(recipe, run)
        done = run_steps(recipe, parts, run, ctx, batch_rows=batch_rows, executor=executor_for(opts),
                         on_stage=on_stage)
        rejects = {**src_rejects, INGEST: parts_of(run.path / f"s00-{INGEST}", "rejects-"),
                   **done.rejects}
        manifest = _manifest(recipe, recipe_path, recipe_sha, infos, [ingest_meta, *done.metas], done.parts,
                             limit, opts, batch_rows)
        manifest.update(account_tokens(done.parts, manifest["steps"], counter))  # `tokens`, `composition`
        if dry_run:
            run.remove()
            return BuildResult(path=None, manifest=manifest, estimates=done.estimates)
        final = final_path(base, _build_id(recipe_sha, infos, limit), out)
        manifest, written_rejects = write_build(final, manifest, done.parts, recipe.output.split,
                                                recipe.output.max_rows_per_shard,
                                                {k: v for k, v in rejects.items() if v}, done.scores)
    run.remove()
    check_not_empty(manifest, written_rejects, path=final, allow_empty=bool(opts.get("allow_empty")))
    if not out:
        (base / "LATEST.tmp").write_text(final.name + "\n")
        os.replace(base / "LATEST.tmp", base / "LATEST")
    return BuildResult(path=final, manifest=manifest)


def _emptied_source_rejects(infos: list[dict[str, Any]], rejects: dict[str, list[Path]]) -> dict[str, Any]:
    """A summary of the rejects of each source that lost every row (only those are read, part by part)."""
    return reject_summaries({f"source-{i['name']}": rejects[f"source-{i['name']}"] for i in infos
                             if i.get("rows") and not i.get("rows_kept") and rejects.get(f"source-{i['name']}")})


def _checked_overrides(recipe: Recipe, source_overrides: dict[str, str] | None,
                       source_splits: dict[str, str] | None) -> dict[str, str]:
    overrides = dict(source_overrides or {})
    unknown = set(overrides) - {s.name for s in recipe.sources}
    if unknown:
        raise MedcurateError(
            f"--source names {sorted(unknown)} are not sources of recipe {recipe.name!r}",
            hint=f"its sources are: {', '.join(s.name for s in recipe.sources)}",
        )
    stray = set(source_splits or {}) - set(overrides)
    if stray:
        raise MedcurateError(f"--source-split names {sorted(stray)} have no --source NAME=PATH",
                             hint="--source-split states the split of a file given with --source")
    return overrides


def _manifest(recipe: Recipe, recipe_path: Path, recipe_sha: str, infos: list[dict[str, Any]],
              steps_meta: list[dict[str, Any]], out_parts: list[Path], limit: int | None,
              opts: dict[str, Any], batch_rows: int) -> dict[str, Any]:
    """The manifest before the write stage adds build_id, created and output; checks the overall funnel."""
    rows_in = sum(s["rows"] for s in infos)
    rows_out = sum(part_rows(out_parts))
    rows_rejected = sum(s["rows_rejected"] for s in infos) + sum(m["rows_rejected"] for m in steps_meta)
    rows_added = sum(m.get("rows_added", 0) for m in steps_meta)  # rows created by expanding steps (attack)
    if rows_in + rows_added != rows_out + rows_rejected:
        raise ReconciliationError(
            f"build: rows_in {rows_in} + rows_added {rows_added} != rows_out {rows_out} + "
            f"rows_rejected {rows_rejected}"
        )
    teacher = None
    for meta in steps_meta:
        if meta["stats"].get("teacher"):
            teacher = meta["stats"]["teacher"]
    return {
        "name": recipe.name,
        "recipe": _recipe_meta(recipe, recipe_path, recipe_sha),
        "sources": infos,
        "steps": steps_meta,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_rejected": rows_rejected,
        **({"rows_added": rows_added} if rows_added else {}),
        "splits": {recipe.output.split: rows_out},
        "teacher": teacher,
        "limit": limit,
        "seed": recipe.seed,
        "versions": _versions(),
        "runner": {"executor": opts.get("executor") or "local", "batch_rows": batch_rows},
    }


def _portable_path(path: Path) -> str:
    """A recipe path without this machine's folder layout: shipped recipes as `recipes/...`, else relative."""
    path = path.resolve()
    for base, prefix in ((recipes_dir().resolve(), "recipes/"), (Path.cwd().resolve(), "")):
        if path.is_relative_to(base):
            return prefix + path.relative_to(base).as_posix()
    return path.name


def _recipe_meta(recipe: Recipe, path: Path, sha: str) -> dict[str, Any]:
    return {
        "name": recipe.name, "sha256": sha, "path": _portable_path(path), "description": recipe.description,
        "license": recipe.license, "pretty_name": recipe.pretty_name or recipe.name,
        "language": recipe.language, "task_categories": recipe.task_categories, "tags": recipe.tags,
    }


# `curate.build(recipe, sources=...)` is the Python API (curate.api.build) although `curate.build` is
# also this module: the import system binds the submodule over any package attribute of that name.
from curate.api import make_callable  # noqa: E402

make_callable(__name__)
