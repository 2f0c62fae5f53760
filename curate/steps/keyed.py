"""The keyed contract of global steps: decide on compact keys, apply the decision one part at a time.

A global step that names what it `reads` (dedup, decontaminate) gets those key columns of every row as
`KeyParts`, one part at a time, never the whole rows. Its `decide` returns a `Decision`: compact per-row
arrays (which rows leave, why, which columns they gain). The runner then reads the whole rows one spilled
part at a time and calls `Decision.apply` on each, so no stage ever holds all rows, nor even all keys
unless the step chooses to (the default `decide` does: it runs `apply` on every key at once).

Rows carry their stage row number in `ROW` (0..n-1, the stage's input order) from the keys to the parts.

A step whose pass over the parts is a pure function of each part (dedup's shingles, signatures and band keys)
maps it with `map_parts(keys, fn)`: the runner's `StageKeys.map` runs it as Ray tasks under `--executor ray`
(each task reads its own part), in process otherwise; results come back in part order either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import polars as pl

from curate.errors import ReconciliationError
from curate.steps.base import StepResult

if TYPE_CHECKING:
    from curate.steps.base import BuildContext, Step

ROW = "__row"
R = TypeVar("R")


class KeyParts(Protocol):
    """The key columns of a global stage (`id`, what `Step.reads` named, and `ROW`), part by part in order.
    It may also offer `map(fn) -> Iterator[R]` (`fn` over each part as `__iter__` yields it, results in part
    order, possibly in other processes: `fn` must be picklable and pure); see `map_parts`."""

    height: int
    columns: list[str]

    def __iter__(self) -> Iterator[pl.DataFrame]: ...

    def collect(self) -> pl.DataFrame: ...


class Decision(Protocol):
    """What a keyed global step decided. `apply` gets the whole rows of one part (with `ROW`) and returns
    them split into kept rows (plus the step's new columns), rejected rows (plus `reason`, `detail`) and the
    part's scores; `stats` go to the manifest."""

    stats: dict[str, Any]

    def apply(self, rows: pl.DataFrame) -> StepResult: ...


@dataclass
class KeyFrame:
    """`KeyParts` over one frame in memory (a step's whole-row `apply`, tests)."""

    frame: pl.DataFrame

    @property
    def height(self) -> int:
        return self.frame.height

    @property
    def columns(self) -> list[str]:
        return self.frame.columns

    def __iter__(self) -> Iterator[pl.DataFrame]:
        yield self.frame

    def collect(self) -> pl.DataFrame:
        return self.frame

    def map(self, fn: Callable[[pl.DataFrame], R]) -> Iterator[R]:
        yield fn(self.frame)


def map_parts(keys: KeyParts, fn: Callable[[pl.DataFrame], R]) -> Iterator[R]:
    """`fn` over every key part, results in part order: through `keys.map` where the parts offer it (the
    runner's `StageKeys`: Ray tasks under `--executor ray`), else in process over `iter(keys)`."""
    mapped = getattr(keys, "map", None)
    return mapped(fn) if mapped is not None else map(fn, keys)


def key_frame(step: Step, frame: pl.DataFrame) -> KeyFrame:
    """The keys `step` reads from whole rows in memory (every column when it names none)."""
    reads = step.reads(frame.columns)
    return KeyFrame((frame if reads is None else frame.select(pl.col("id"), *reads)).with_row_index(ROW))


def decide_rows(step: Step, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
    """A keyed step run on whole rows in memory: decide on their keys, apply to the rows (one part)."""
    decision = step.decide(key_frame(step, frame), ctx)
    result = decision.apply(frame.with_row_index(ROW))
    result.stats = decision.stats
    return result


@dataclass
class FrameDecision:
    """The decision of a step that decided with `apply` on all keys at once: its kept rows (with `ROW` and the
    columns it added) and rejected rows (with `ROW`, `reason`, `detail`), joined onto each part."""

    name: str
    kept: pl.DataFrame
    rejected: pl.DataFrame
    read: list[str]
    scores: pl.DataFrame | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for side, frame in (("kept", self.kept), ("rejected", self.rejected)):
            if ROW not in frame.columns:
                raise ReconciliationError(f"step {self.name!r}: its {side} rows lost the row number `{ROW}`: a "
                                          "step with `reads` must keep the columns it was given")
        rows = self.kept[ROW]
        if rows.len() > 1 and not (rows.diff().drop_nulls() > 0).all():
            raise ReconciliationError(f"step {self.name!r}: kept rows are not in input order; a step that "
                                      "reorders rows must not declare `reads`")
        self.added = [c for c in self.kept.columns if c not in self.read]
        self.dropped = [c for c in self.read if c not in self.kept.columns and c not in (ROW, "id")]
        self.kept = self.kept.select(ROW, *self.added)
        self.rejected = self.rejected.select(ROW, *[c for c in self.rejected.columns if c not in self.read])

    def apply(self, rows: pl.DataFrame) -> StepResult:
        lo, n = (rows[ROW].min(), rows.height) if rows.height else (0, 0)
        window = pl.col(ROW).is_between(lo, (lo or 0) + n, closed="left")
        base = rows.drop(*[c for c in self.added if c in rows.columns])
        kept = base.join(self.kept.filter(window), on=ROW, how="inner", maintain_order="left")
        rejected = base.join(self.rejected.filter(window), on=ROW, how="inner", maintain_order="left")
        scores = None
        if self.scores is not None:
            scores = self.scores.join(rows.select("id"), on="id", how="semi", maintain_order="left")
        return StepResult(kept.drop(ROW, *[c for c in self.dropped if c in kept.columns]), rejected.drop(ROW),
                          scores=scores)
