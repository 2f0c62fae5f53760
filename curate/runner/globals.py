"""Stage 4: one global step (`scope = "global"`: dedup, decontaminate, mix) over the whole stage.

The step reads the previous stage's spilled parts as one frame, so a global stage holds that stage's
rows in memory (the steps themselves reduce rows to keys: dedup hashes and MinHash signatures,
decontaminate n-gram sets). Its kept rows are re-spilled in parts of `batch_rows` so the row stage
after it is sharded again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from curate.runner.accounting import apply_step
from curate.runner.state import RunDir, parts, read_parts, write_part
from curate.steps import BuildContext, Step


def run_global(name: str, step: Step, inputs: list[Path], folder: Path, ctx: BuildContext,
               batch_rows: int) -> tuple[list[Path], dict[str, Any]]:
    """Run (or resume past) one global step; return its output parts and its meta."""
    meta = RunDir.done(folder)
    if meta is None:
        for old in folder.glob("*.parquet"):
            old.unlink()
        frame = read_parts(inputs)
        result, meta = apply_step(name, step, frame, ctx)
        del frame
        kept = result.kept
        for i, start in enumerate(range(0, max(kept.height, 1), batch_rows)):
            write_part(kept.slice(start, batch_rows), folder / f"part-{i:05d}.parquet")
        if result.rejected.height:
            write_part(result.rejected.with_columns(pl.lit(name).alias("step")), folder / "rejects.parquet")
        if result.scores is not None:
            write_part(result.scores, folder / "scores.parquet")
        RunDir.mark(folder, meta)
    return parts(folder), meta
