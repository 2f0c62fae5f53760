"""Stages 3-4 in recipe order: runs of consecutive row steps, and each global step on its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.runner.accounting import merge_meta
from curate.runner.executors import LOCAL, Executor
from curate.runner.globals import run_global
from curate.runner.rows import NamedStep, collect, shard_jobs
from curate.runner.state import RunDir, rows_in
from curate.steps import BuildContext


@dataclass
class StepsOutcome:
    parts: list[Path]
    metas: list[dict[str, Any]] = field(default_factory=list)  # counted steps, recipe order
    estimates: dict[str, Any] = field(default_factory=dict)  # dry run: steps estimated, not run
    rejects: dict[str, list[Path]] = field(default_factory=dict)
    scores: dict[str, list[Path]] = field(default_factory=dict)


def stages(recipe: Any) -> list[tuple[str, list[NamedStep]]]:
    """[(kind, steps)]: kind "row" for a run of consecutive row steps, "global" for one global step."""
    out: list[tuple[str, list[NamedStep]]] = []
    for spec in recipe.steps:
        step = spec.build()
        if step.scope == "row" and out and out[-1][0] == "row":
            out[-1][1].append((spec.name, step))
        else:
            out.append((step.scope, [(spec.name, step)]))
    return out


def run_steps(recipe: Any, inputs: list[Path], run: RunDir, ctx: BuildContext, *, batch_rows: int,
              executor: Executor = LOCAL,
              on_stage: Callable[[str, dict[str, Any]], None] | None = None) -> StepsOutcome:
    """Run every step of the recipe over the spilled parts `inputs`; return outputs and accounting."""
    done = StepsOutcome(parts=inputs)
    for k, (kind, steps) in enumerate(stages(recipe), start=1):
        folder = run.sub(f"s{k:02d}-{kind}-" + "+".join(n for n, _ in steps))
        total = sum(rows_in(done.parts))
        bars = [ctx.start_progress(f"step {name}", total) for name, _ in steps]  # teacher steps add row bars
        if kind == "row":
            executor(steps, shard_jobs(done.parts, folder), ctx, len(done.parts))
            done.parts, per_step = collect(folder, len(done.parts), steps)
            shards = sorted(folder.glob("shard-*"))
            for name, _ in steps:
                done.rejects[name] = [s / f"{name}.rejects.parquet" for s in shards
                                      if (s / f"{name}.rejects.parquet").is_file()]
                done.scores[name] = [s / f"{name}.scores.parquet" for s in shards
                                     if (s / f"{name}.scores.parquet").is_file()]
            metas = [merge_meta(m, step) for m, (_, step) in zip(per_step, steps, strict=True)]
        else:
            (name, step), = steps
            done.parts, meta = run_global(name, step, done.parts, folder, ctx, batch_rows,
                                           map_parts=executor.map_parts)
            done.rejects[name] = sorted(folder.glob("rejects*.parquet"))
            done.scores[name] = sorted(folder.glob("scores*.parquet"))
            metas = [meta]
        for advance in bars:
            advance(total)
        for meta in metas:
            if "estimate" in meta:
                done.estimates[meta["name"]] = meta["estimate"]
                continue
            done.metas.append(meta)
            if on_stage:
                on_stage(meta["name"], meta)
    return done
