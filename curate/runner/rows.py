"""Stage 3: consecutive row steps (`scope = "row"`), run together shard by shard.

A shard is one spilled part of the previous stage. For each shard the steps run in recipe order; the
shard's kept rows, each step's rejects and scores and each step's meta are spilled into
`shard-NNNNN/`, then its marker is written. A resumed build skips shards with a marker, so completed
teacher calls are neither repeated nor re-read (calls of a half-done shard come from the call cache).
Shards are independent, which is what lets `--executor ray` map them in parallel (see `executors.py`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import polars as pl

from curate.runner.accounting import apply_step, empty_meta
from curate.runner.state import RunDir, write_part
from curate.steps import BuildContext, Step

NamedStep = tuple[str, Step]


def run_shard(steps: list[NamedStep], source: Path, shard: Path, ctx: BuildContext) -> dict[str, Any]:
    """Run the steps over one shard; spill its outputs; return its marker (the per-step metas)."""
    frame = pl.read_parquet(source)
    metas = []
    for name, step in steps:
        if frame.height == 0:  # nothing left for this shard; count the step as seeing 0 rows
            metas.append({**empty_meta(name, step), "empty": True})
            continue
        result, meta = apply_step(name, step, frame, ctx)
        if result.rejected.height:
            write_part(result.rejected.with_columns(pl.lit(name).alias("step")), shard / f"{name}.rejects.parquet")
        if result.scores is not None:
            write_part(result.scores, shard / f"{name}.scores.parquet")
        metas.append(meta)
        frame = result.kept
    write_part(frame, shard / "part.parquet")
    meta = {"steps": metas}
    RunDir.mark(shard, meta)
    return meta


def shard_jobs(inputs: list[Path], folder: Path) -> list[tuple[int, Path, Path]]:
    """(index, input part, shard folder) of every shard not yet complete."""
    jobs = []
    for i, src in enumerate(inputs):
        shard = folder / f"shard-{i:05d}"
        shard.mkdir(parents=True, exist_ok=True)
        if RunDir.done(shard) is None:
            jobs.append((i, src, shard))
    return jobs


def shard_context(ctx: BuildContext, rank: int, world_size: int) -> BuildContext:
    """The context a shard's steps see: rank = the shard's index, world_size = the number of shards."""
    return dataclasses.replace(ctx, rank=rank, world_size=world_size)


def run_local(steps: list[NamedStep], jobs: list[tuple[int, Path, Path]], ctx: BuildContext, world: int) -> None:
    """The in-process executor: shards one after the other."""
    for i, src, shard in jobs:
        run_shard(steps, src, shard, shard_context(ctx, i, world))


def collect(folder: Path, n: int, steps: list[NamedStep]) -> tuple[list[Path], list[list[dict[str, Any]]]]:
    """Output parts of the stage in order, and for each step its metas over shards."""
    shards = [folder / f"shard-{i:05d}" for i in range(n)]
    per_step: list[list[dict[str, Any]]] = [[] for _ in steps]
    for shard in shards:
        marker = RunDir.done(shard)
        assert marker is not None, f"shard {shard} has no completion marker"
        for j, meta in enumerate(marker["steps"]):
            if not meta.get("empty"):
                per_step[j].append(meta)
    for j, (name, step) in enumerate(steps):
        if not per_step[j]:  # every shard was empty before this step
            per_step[j] = [empty_meta(name, step)]
    return [s / "part.parquet" for s in shards], per_step
