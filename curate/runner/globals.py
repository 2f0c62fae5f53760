"""Stage 4: one global step (`scope = "global"`: dedup, decontaminate, mix) over the whole stage.

A step that names what it `reads` (dedup, decontaminate) decides on those key columns (`StageKeys`: read
from the spilled parts one part at a time, only the columns its expressions name) and returns a Decision;
the decision is then applied to the whole rows one spilled part at a time, each part reconciled on its own
(rows in = kept + rejected, same ids) and its rejects and scores spilled per part. So the stage holds what
the step keeps of the keys, never the rows. A step without `reads` (mix) gets the whole stage as one frame.
A step's pure per-part pass over the keys (`StageKeys.map`) runs on the build's executor: Ray tasks under
`--executor ray`, each reading its own part; the decision itself is made on the driver.

Kept rows are re-spilled in parts of `batch_rows` (the same parts either way), so the row stage after
it is sharded again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from curate.runner.accounting import apply_step, check, empty_meta, ordered_reasons, reasons
from curate.runner.executors import PartMap, map_local
from curate.runner.state import RunDir, parts, read_parts, rows_in, unified, write_part
from curate.steps import BuildContext, Step
from curate.steps.keyed import ROW, Decision

R = TypeVar("R")


def run_global(name: str, step: Step, inputs: list[Path], folder: Path, ctx: BuildContext,
               batch_rows: int, *, map_parts: PartMap = map_local) -> tuple[list[Path], dict[str, Any]]:
    """Run (or resume past) one global step; return its output parts and its meta. `map_parts` (the
    executor's) runs the step's pure per-part passes over its keys."""
    meta = RunDir.done(folder)
    if meta is None:
        for old in folder.glob("*.parquet"):
            old.unlink()
        like = unified(inputs)
        reads = step.reads(like.columns)
        if reads is None:
            result, meta = apply_step(name, step, read_parts(inputs, like), ctx)
            _spill(iter([result.kept]), folder, batch_rows, like)
            _write_rejects(name, result.rejected, folder / "rejects.parquet")
            if result.scores is not None:
                write_part(result.scores, folder / "scores.parquet")
        else:
            meta = _run_keyed(name, step, StageKeys(inputs, like, reads, map_parts), folder, ctx, batch_rows)
        RunDir.mark(folder, meta)
    return parts(folder), meta


@dataclass(frozen=True)
class PartReader:
    """Reads key part `i` of a stage: from disk only the columns the step's `reads` expressions name, the
    expressions applied, `ROW` numbered from the rows before it. Small and picklable (absolute paths, an
    empty schema frame), so a Ray task reads its own part from the work folder."""

    files: list[Path]
    offsets: list[int]
    shape: pl.DataFrame
    reads: list[pl.Expr]

    def __call__(self, i: int) -> pl.DataFrame:
        f = self.files[i]
        cols = [c for c in pl.read_parquet_schema(f) if c in self.shape.columns]
        part = pl.concat([self.shape, pl.read_parquet(f, columns=cols)], how="diagonal_relaxed")
        return part.select(pl.col("id"), *self.reads).with_row_index(ROW, offset=self.offsets[i])


def _read_then(read: PartReader, fn: Callable[[pl.DataFrame], R], i: int) -> R:
    return fn(read(i))


class StageKeys:
    """`KeyParts` over the spilled parts of a stage: `id`, the step's `reads` expressions and `ROW`, read
    part by part; `map` runs a function over the parts with the executor's `map_parts` (Ray tasks under
    `--executor ray`, each reading its own part)."""

    def __init__(self, files: list[Path], like: pl.DataFrame, reads: list[pl.Expr], map_parts: PartMap = map_local):
        self.files, self.reads, self.like, self._map = files, reads, like, map_parts
        names = {"id"} | {n for e in reads for n in e.meta.root_names()}
        shape = like.select([c for c in like.columns if c in names])
        self.sizes = rows_in(files)
        self.height = sum(self.sizes)
        self.columns = [ROW, *shape.select(pl.col("id"), *reads).columns]
        offsets = list(accumulate(self.sizes, initial=0))[:-1]
        self._read = PartReader([Path(f).resolve() for f in files], offsets, shape, reads)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return map(self._read, range(len(self.files)))

    def map(self, fn: Callable[[pl.DataFrame], R]) -> Iterator[R]:
        return self._map(partial(_read_then, self._read, fn), len(self.files))

    def collect(self) -> pl.DataFrame:
        frames = list(self)
        return pl.concat(frames) if frames else self._read.shape.select(pl.col("id"), *self.reads).with_row_index(ROW)


def _run_keyed(name: str, step: Step, keys: StageKeys, folder: Path, ctx: BuildContext, batch_rows: int
               ) -> dict[str, Any]:
    """Decide on the keys, apply the decision part by part; the step's meta summed over the parts."""
    if keys.height == 0:
        _spill(iter([]), folder, batch_rows, keys.like)
        return empty_meta(name, step)
    t0 = time.perf_counter()
    decision = step.decide(keys, dataclasses.replace(ctx, scratch_dir=folder))
    meta: dict[str, Any] = {"name": name, "rows_in": keys.height, "rows_kept": 0, "rows_rejected": 0}
    totals: dict[str, int] = {}
    _spill(_applied(name, decision, keys, folder, meta, totals), folder, batch_rows, keys.like)
    meta.update({"seconds": round(time.perf_counter() - t0, 3), "params": step.params.model_dump(mode="json"),
                 "stats": decision.stats, "reasons": ordered_reasons(totals)})
    return meta


def _applied(name: str, decision: Decision, keys: StageKeys, folder: Path, meta: dict[str, Any],
             totals: dict[str, int]) -> Iterator[pl.DataFrame]:
    """Each part's kept rows; its rejects and scores are spilled, its counts added to `meta` / `totals`."""
    offset = 0
    for i, f in enumerate(keys.files):
        rows = read_parts([f], keys.like)
        result = decision.apply(rows.with_row_index(ROW, offset=offset))
        offset += rows.height
        check(name, rows, result)
        meta["rows_kept"] += result.kept.height
        meta["rows_rejected"] += result.rejected.height
        for r, n in reasons(result.rejected).items():
            totals[r] = totals.get(r, 0) + n
        _write_rejects(name, result.rejected, folder / f"rejects-{i:05d}.parquet")
        if result.scores is not None and result.scores.height:
            write_part(result.scores, folder / f"scores-{i:05d}.parquet")
        yield result.kept


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
