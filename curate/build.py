"""The build runner: recipe + sources -> build folder in which every input row is accounted for.

Row-local steps receive only rows and params, so a later executor can shard them by rank; global steps
(dedup, decontaminate) see the whole frame. Output is written to a temporary folder that is renamed
into place only when complete, so a killed build never leaves a folder that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from curate import __version__
from curate.build_checks import check_not_empty, warn_emptied_sources
from curate.composition import composition
from curate.errors import MedcurateError, ReconciliationError
from curate.fsutil import sha256_file
from curate.outdir import check_out_dir, clean_stale_tmp, finish_tmp, make_tmp
from curate.recipe import Recipe
from curate.recipe_input import RecipeLike, resolve_recipe
from curate.record import conform
from curate.report import render_report
from curate.resources import recipes_dir
from curate.steps import BuildContext, StepResult

log = logging.getLogger("medcurate.build")
INGEST = "ingest"


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


def _check(stage: str, frame: pl.DataFrame, result: StepResult, expands: bool = False) -> int:
    """rows_in == kept + rejected, and the ids that came out are exactly the ids that went in.

    An expanding step (`expands = True`, e.g. `attack`) turns each input row into one or more rows that
    carry `parent_id`: then every input id must be the parent of at least one output row, every parent
    must be an input id, and the output ids must be unique. Returns the rows added (0 for other steps).
    """
    kept, rejected = result.kept.height, result.rejected.height
    if "reason" not in result.rejected.columns or (rejected and result.rejected["reason"].null_count()):
        raise ReconciliationError(f"step {stage!r}: rejected rows without a `reason`")
    if expands:
        out = pl.concat([result.kept.select("id", "parent_id"), result.rejected.select("id", "parent_id")])
        if out["id"].n_unique() != out.height or set(out["parent_id"].to_list()) != set(frame["id"].to_list()):
            raise ReconciliationError(f"step {stage!r}: expanded rows must have unique ids and `parent_id` "
                                      "covering exactly the input ids")
        return out.height - frame.height
    if frame.height != kept + rejected:
        raise ReconciliationError(
            f"step {stage!r}: rows_in {frame.height} != kept {kept} + rejected {rejected}: "
            "rows would be lost silently; this is a bug in the step"
        )
    ids_in = frame["id"].sort()
    ids_out = pl.concat([result.kept["id"], result.rejected["id"]]).sort()
    if not ids_in.equals(ids_out):
        raise ReconciliationError(f"step {stage!r}: the ids of kept + rejected rows differ from the input ids")
    return 0


def _ingest(frames: list[pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Concatenate sources and reject repeats of the same content id (the first occurrence is kept,
    test-split rows first)."""
    frame = pl.concat([conform(f) for f in frames], how="diagonal_relaxed") if frames else None
    if frame is None:
        raise MedcurateError("the recipe has no sources", hint="add a `sources:` entry")
    # a held-out test row wins over a training copy of it whatever the source order (the `holdout` step
    # then drops it); a stable sort, so nothing moves when no source has `split: test`
    frame = frame.sort((pl.col("source_split") != "test").fill_null(True), maintain_order=True)
    first = frame.with_row_index("_row").group_by("id", maintain_order=True).agg(
        pl.col("_row").first().alias("_first"), pl.col("source").first().alias("_fsrc"),
        pl.col("source_id").first().alias("_fsid"),
    )
    tagged = frame.with_row_index("_row").join(first, on="id", how="left", maintain_order="left")
    dup = pl.col("_row") != pl.col("_first")
    kept = tagged.filter(~dup).drop("_row", "_first", "_fsrc", "_fsid")
    rejected = tagged.filter(dup).with_columns(
        pl.lit("duplicate_id").alias("reason"),
        (pl.lit("same content as ") + pl.col("_fsrc") + pl.lit(":") + pl.col("_fsid").fill_null("?")).alias("detail"),
    ).drop("_row", "_first", "_fsrc", "_fsid")
    return kept, rejected


def _build_id(recipe_sha: str, sources: list[dict[str, Any]], limit: int | None) -> str:
    h = hashlib.sha256(json.dumps([recipe_sha, [s.get("sha256") for s in sources], limit]).encode()).hexdigest()
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{h[:8]}"


def _write_shards(frame: pl.DataFrame, data_dir: Path, split: str, max_rows: int) -> list[Path]:
    data_dir.mkdir(parents=True, exist_ok=True)
    n = max(1, -(-frame.height // max_rows))
    paths = []
    for i in range(n):
        path = data_dir / f"{split}-{i:05d}-of-{n:05d}.parquet"
        frame.slice(i * max_rows, max_rows).write_parquet(path, compression="zstd", statistics=True)
        paths.append(path)
    return paths


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
    """Run a recipe end to end. `progress(description, total) -> advance(n)` wires progress bars.

    `recipe_ref` is a recipe name, a YAML path, a dict or a `Recipe` (see `curate.recipe_input`);
    `base_dir` is where an in-memory recipe's relative source paths resolve (default: the cwd).
    """
    recipe, recipe_path, recipe_sha = resolve_recipe(recipe_ref, base_dir=base_dir)
    if out is not None and not dry_run:
        check_out_dir(out)  # before any source is read or teacher called
    overrides = dict(source_overrides or {})
    unknown = set(overrides) - {s.name for s in recipe.sources}
    if unknown:
        raise MedcurateError(
            f"--source names {sorted(unknown)} are not sources of recipe {recipe.name!r}",
            hint=f"its sources are: {', '.join(s.name for s in recipe.sources)}",
        )
    splits = dict(source_splits or {})
    if set(splits) - set(overrides):
        raise MedcurateError(f"--source-split names {sorted(set(splits) - set(overrides))} have no --source NAME=PATH",
                             hint="--source-split states the split of a file given with --source")
    progress = progress or (lambda description, total: lambda n: None)
    opts = {**(options or {}), "dry_run": dry_run}
    base = builds_root() / recipe.name
    work_dir = Path(opts.get("work_dir") or base / ".work")
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = BuildContext(recipe_name=recipe.name, work_dir=work_dir, seed=recipe.seed, options=opts,
                       recipe=recipe, start_progress=progress)

    # 1. sources
    from curate.sources import read_source

    source_infos, frames, stage_rejects = [], [], {}
    for spec in recipe.sources:
        t0 = time.perf_counter()
        advance = progress(f"source {spec.name}", 0)  # a bar with elapsed time; the row count is unknown
        data = read_source(spec, base_dir=recipe_path.parent, limit=limit, path_override=overrides.get(spec.name),
                           split_override=splits.get(spec.name))
        advance(data.info["rows"])
        info = {**data.info, "rows_kept": data.frame.height, "rows_rejected": data.rejected.height,
                "seconds": round(time.perf_counter() - t0, 3)}
        if data.rejected.height:
            info["reasons"] = _reasons(data.rejected)
        if info["rows"] != data.frame.height + data.rejected.height:
            raise ReconciliationError(f"source {spec.name!r}: rows {info['rows']} != parsed + rejected")
        source_infos.append(info)
        frames.append(data.frame)
        if data.rejected.height:
            stage_rejects[f"source-{spec.name}"] = data.rejected.with_columns(pl.lit(f"source-{spec.name}").alias("step"))
        if on_stage:
            on_stage(f"source {spec.name}", info)

    warn_emptied_sources(source_infos, stage_rejects)
    frame, dup = _ingest(frames)
    rows_in = sum(s["rows"] for s in source_infos)
    steps_meta = [{"name": INGEST, "rows_in": frame.height + dup.height, "rows_kept": frame.height,
                   "rows_rejected": dup.height, "seconds": 0.0, "params": {}, "stats": {},
                   "reasons": _reasons(dup)}]
    if dup.height:
        stage_rejects[INGEST] = dup.with_columns(pl.lit(INGEST).alias("step"))

    # 2. steps
    scores: dict[str, pl.DataFrame] = {}
    estimates: dict[str, Any] = {}
    teacher = None
    rows_added = 0  # rows created by expanding steps (attack styles)
    for spec in recipe.steps:
        if frame.height == 0:
            break  # nothing left: no step (and no teacher call) runs on zero rows; see curate.build_checks
        step = spec.build()
        if dry_run:
            est = step.estimate(frame, ctx)
            if est is not None:
                estimates[spec.name] = est
                continue  # teacher steps are estimated, not run; the rows flow on unchanged
        t0 = time.perf_counter()
        advance = progress(f"step {spec.name}", frame.height)  # teacher steps add their own per-row bar
        result = step.apply(frame, ctx)
        advance(frame.height)
        seconds = round(time.perf_counter() - t0, 3)
        added = _check(spec.name, frame, result, getattr(step, "expands", False))
        rows_added += added
        meta = {"name": spec.name, "rows_in": frame.height, "rows_kept": result.kept.height,
                "rows_rejected": result.rejected.height, "seconds": seconds,
                "params": step.params.model_dump(mode="json"), "stats": result.stats,
                "reasons": _reasons(result.rejected)}
        if added:
            meta["rows_added"] = added
        steps_meta.append(meta)
        if result.stats.get("teacher"):
            teacher = result.stats["teacher"]
        if result.rejected.height:
            stage_rejects[spec.name] = result.rejected.with_columns(pl.lit(spec.name).alias("step"))
        if result.scores is not None:
            scores[spec.name] = result.scores
        if on_stage:
            on_stage(spec.name, meta)
        frame = result.kept

    rows_rejected = sum(r.height for r in stage_rejects.values())
    if rows_in + rows_added != frame.height + rows_rejected:
        raise ReconciliationError(
            f"build: rows_in {rows_in} + rows_added {rows_added} != rows_out {frame.height} + "
            f"rows_rejected {rows_rejected}"
        )

    manifest: dict[str, Any] = {
        "name": recipe.name,
        "recipe": _recipe_meta(recipe, recipe_path, recipe_sha),
        "sources": source_infos,
        "steps": steps_meta,
        "rows_in": rows_in,
        "rows_out": frame.height,
        "rows_rejected": rows_rejected,
        **({"rows_added": rows_added} if rows_added else {}),
        "splits": {recipe.output.split: frame.height},
        "teacher": teacher,
        "limit": limit,
        "seed": recipe.seed,
        "versions": _versions(),
        "composition": composition(frame, steps_meta, opts.get("tokenizer")),
    }
    if dry_run:
        return BuildResult(path=None, manifest=manifest, estimates=estimates)

    # 3. write to a temporary folder, rename when complete
    build_id = _build_id(recipe_sha, source_infos, limit)
    if out:
        final = check_out_dir(out)
    else:
        final, n = base / build_id, 1
        while final.exists() or list(base.glob(f".tmp-{final.name}-*")):  # two builds in the same second
            n += 1
            final = base / f"{build_id}.{n}"
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(final.parent)
    tmp = make_tmp(final)
    try:
        files = _write_shards(frame, tmp / "data", recipe.output.split, recipe.output.max_rows_per_shard)
        for stage, rej in stage_rejects.items():
            (tmp / "rejects").mkdir(exist_ok=True)
            rej.write_parquet(tmp / "rejects" / f"{stage}.parquet", compression="zstd")
        for stage, sc in scores.items():
            (tmp / "scores").mkdir(exist_ok=True)
            sc.write_parquet(tmp / "scores" / f"{stage}.parquet", compression="zstd")
        file_sha = {str(p.relative_to(tmp)): sha256_file(p) for p in files}
        total = hashlib.sha256()
        for p in files:
            total.update(bytes.fromhex(file_sha[str(p.relative_to(tmp))]))
        manifest = {
            "name": recipe.name,
            "build_id": final.name,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in manifest.items() if k != "name"},
            "output": {"sha256": total.hexdigest(), "files": list(file_sha), "file_sha256": file_sha,
                       "columns": frame.columns,
                       "rejects": sorted(f"rejects/{s}.parquet" for s in stage_rejects),
                       "scores": sorted(f"scores/{s}.parquet" for s in scores)},
        }
        from curate.report_html import write_html_report  # matplotlib: imported only when writing a build

        manifest["output"]["plots"] = write_html_report(tmp, manifest, frame, scores)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n")
        (tmp / "report.md").write_text(render_report(manifest, stage_rejects), encoding="utf-8")
        if importlib.util.find_spec("curate.card"):
            from curate.card import render_dataset_card

            (tmp / "README.md").write_text(render_dataset_card(manifest, tmp), encoding="utf-8")
        finish_tmp(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    check_not_empty(manifest, stage_rejects, path=final, allow_empty=bool(opts.get("allow_empty")))
    if not out:
        (base / "LATEST.tmp").write_text(final.name + "\n")
        os.replace(base / "LATEST.tmp", base / "LATEST")
    return BuildResult(path=final, manifest=manifest)


def _reasons(rejected: pl.DataFrame) -> dict[str, int]:
    if rejected.height == 0:
        return {}
    counts = rejected.group_by("reason").len().sort(["len", "reason"], descending=[True, False])
    return {r: int(n) for r, n in counts.iter_rows()}


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
