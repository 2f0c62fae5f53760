"""Stage 4: one global step (`scope = "global"`: dedup, decontaminate, mix) over the whole stage.

A step that names what it `reads` (dedup, decontaminate) gets only those columns of every row, plus a
row number; its decision (kept row numbers + the columns it adds, rejected row numbers + reason and
detail) is then applied to the whole rows one spilled part at a time. So the stage holds the keys, not
the rows: at 1M MedMCQA rows the explanations, metadata and option structs of the other columns never
sit in memory together. A step without `reads` (mix) gets the whole stage as one frame.

Kept rows are re-spilled in parts of `batch_rows` (the same parts either way), so the row stage after
it is sharded again; rejects are spilled one file per input part.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import ReconciliationError
from curate.runner.accounting import apply_step
from curate.runner.state import RunDir, parts, read_parts, unified, write_part
from curate.steps import BuildContext, Step, StepResult

ROW = "__row"


def run_global(name: str, step: Step, inputs: list[Path], folder: Path, ctx: BuildContext,
               batch_rows: int) -> tuple[list[Path], dict[str, Any]]:
    """Run (or resume past) one global step; return its output parts and its meta."""
    meta = RunDir.done(folder)
    if meta is None:
        for old in folder.glob("*.parquet"):
            old.unlink()
        like = unified(inputs)
        reads = step.reads(like.columns)
        if reads is None:
            result, meta = apply_step(name, step, read_parts(inputs, like), ctx)
            kept: Iterator[pl.DataFrame] = iter([result.kept])
            _write_rejects(name, result.rejected, folder / "rejects.parquet")
        else:
            keys = _read_keys(inputs, like, reads)
            result, meta = apply_step(name, step, keys, ctx)
            kept = _apply_decision(name, result, keys.columns, inputs, like, folder)
            del keys
        _spill(kept, folder, batch_rows, like)
        if result.scores is not None:
            write_part(result.scores, folder / "scores.parquet")
        RunDir.mark(folder, meta)
    return parts(folder), meta


def _read_keys(inputs: list[Path], like: pl.DataFrame, reads: list[pl.Expr]) -> pl.DataFrame:
    """The columns a step reads, over every part in order, with the row number `__row`. Only the columns the
    expressions name are read from disk."""
    names = {"id"} | {n for e in reads for n in e.meta.root_names()}
    shape = like.select([c for c in like.columns if c in names])
    frames = [pl.concat([shape, pl.read_parquet(f, columns=[c for c in pl.read_parquet_schema(f) if c in names])],
                        how="diagonal_relaxed").select(pl.col("id"), *reads)
              for f in inputs]
    keys = pl.concat(frames) if frames else shape.select(pl.col("id"), *reads)
    return keys.with_row_index(ROW)


def _apply_decision(name: str, result: StepResult, read: list[str], inputs: list[Path], like: pl.DataFrame,
                    folder: Path) -> Iterator[pl.DataFrame]:
    """Whole kept rows part by part (with the columns the step added); rejects written per part."""
    for side, frame in (("kept", result.kept), ("rejected", result.rejected)):
        if ROW not in frame.columns:
            raise ReconciliationError(f"step {name!r}: its {side} rows lost the row number `{ROW}`: a step with "
                                      "`reads` must keep the columns it was given")
    rows = result.kept[ROW]
    if rows.len() > 1 and not (rows.diff().drop_nulls() > 0).all():
        raise ReconciliationError(f"step {name!r}: kept rows are not in input order; a step that reorders rows "
                                  "must not declare `reads`")
    added = [c for c in result.kept.columns if c not in read]
    dropped = [c for c in read if c not in result.kept.columns and c in like.columns]
    kept_cols = result.kept.select(ROW, *added)
    rej_cols = result.rejected.select(ROW, *[c for c in result.rejected.columns if c not in read])
    offset = 0
    for i, f in enumerate(inputs):
        part = read_parts([f], like).with_row_index(ROW, offset=offset).drop(*[c for c in added if c in like.columns])
        window = pl.col(ROW).is_between(offset, offset + part.height, closed="left")
        offset += part.height
        rej = part.join(rej_cols.filter(window), on=ROW, how="inner", maintain_order="left")
        _write_rejects(name, rej.drop(ROW), folder / f"rejects-{i:05d}.parquet")
        yield part.join(kept_cols.filter(window), on=ROW, how="inner", maintain_order="left").drop(ROW, *dropped)


def _write_rejects(name: str, rejected: pl.DataFrame, path: Path) -> None:
    if rejected.height:
        write_part(rejected.with_columns(pl.lit(name).alias("step")), path)


def _spill(frames: Iterator[pl.DataFrame], folder: Path, batch_rows: int, like: pl.DataFrame) -> None:
    """Write kept rows in parts of exactly `batch_rows` (the last one shorter; one empty part if none)."""
    held: list[pl.DataFrame] = []
    n_held, n_parts = 0, 0
    schema: pl.DataFrame | None = None
    for frame in frames:
        schema = frame.clear() if schema is None else schema
        held.append(frame)
        n_held += frame.height
        while n_held >= batch_rows:
            block = pl.concat(held)
            write_part(block.slice(0, batch_rows), folder / f"part-{n_parts:05d}.parquet")
            n_parts += 1
            rest = block.slice(batch_rows)
            held, n_held = [rest], rest.height
    if n_held or not n_parts:
        block = pl.concat(held) if held else (schema if schema is not None else like)
        write_part(block, folder / f"part-{n_parts:05d}.parquet")
