"""The step contract: a step maps a frame to kept rows + rejected rows (with reasons) + side-car scores."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import polars as pl
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from curate.steps.keyed import Decision, KeyParts

T = TypeVar("T")


class StepParams(BaseModel):
    """Base for step params: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StepResult:
    """What a step returns.

    kept:     rows that continue (may carry new columns, never renamed ones)
    rejected: rows that leave, same columns as the input plus `reason` (short code) and `detail`
    scores:   optional side-car frame keyed by `id` (written to `scores/<step>.parquet`)
    stats:    JSON-able facts for the manifest (parameters used, hit tables, teacher info, ...)
    """

    kept: pl.DataFrame
    rejected: pl.DataFrame
    scores: pl.DataFrame | None = None
    stats: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[int], None]


def _no_progress(_: int) -> None:  # pragma: no cover - trivial
    pass


@dataclass
class BuildContext:
    """Everything a step may read besides its rows and params. Row-local steps must not keep state here."""

    recipe_name: str
    work_dir: Path  # persistent across builds of this recipe (caches live here)
    seed: int = 0
    rank: int = 0  # row steps: index of the shard being run (curate.runner.rows); global steps: 0
    world_size: int = 1  # row steps: number of shards in the stage; global steps: 1
    options: dict[str, Any] = field(default_factory=dict)  # CLI overrides (teacher_url, teacher_model, ...)
    recipe: Any = None  # curate.recipe.Recipe
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("medcurate"))
    # progress: called as progress(total) once, then advance(n) repeatedly; the runner wires rich bars.
    start_progress: Callable[[str, int], ProgressFn] = field(
        default=lambda description, total: _no_progress
    )
    scratch_dir: Path | None = None  # global steps: the stage's folder in the run (removed with the run)

    @contextmanager
    def scratch(self, prefix: str) -> Iterator[Path]:
        """A private temporary folder for spilled intermediate files, removed on exit (also on errors). It
        lives in the stage folder of the run when there is one, else in the recipe's work folder."""
        base = self.scratch_dir or self.work_dir
        base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=prefix, dir=base) as tmp:
            yield Path(tmp)

    def track(self, items: Iterable[T], total: int, description: str) -> Iterator[T]:
        """Iterate with a progress bar."""
        advance = self.start_progress(description, total)
        for item in items:
            yield item
            advance(1)


class Step:
    """Base class. Subclasses set `name`, `Params` and implement `apply`.

    scope = "row": each row is decided on its own (the runner may shard by rank);
    scope = "global": needs all rows at once (dedup, decontaminate, mix).
    """

    name: ClassVar[str]
    Params: ClassVar[type[StepParams]] = StepParams
    scope: ClassVar[Literal["row", "global"]] = "row"
    description: ClassVar[str] = ""

    def __init__(self, params: StepParams | dict[str, Any] | None = None):
        if params is None:
            params = {}
        self.params = params if isinstance(params, StepParams) else self.Params.model_validate(params)

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def reads(self, columns: list[str]) -> list[pl.Expr] | None:
        """Global steps: the columns `apply` decides on, as expressions over the stage's `columns`.

        When given, the runner hands these (plus `id` and the row number) to `decide`, part by part, and
        applies the returned decision to the whole rows one part at a time, so a global stage never holds
        its rows (see `curate.steps.keyed`). With the default `decide` the step's `apply` gets all keys at
        once and must keep its kept rows in input order and not change the columns it reads (it may add
        columns: they travel to the whole rows). None (the default): `apply` gets the whole rows.
        """
        return None

    def decide(self, keys: KeyParts, ctx: BuildContext) -> Decision:
        """Global steps with `reads`: decide on the keys (`id`, what `reads` named and the row number `__row`,
        part by part), return a Decision the runner applies to the whole rows one part at a time (see
        `curate.steps.keyed`). This default runs `apply` on all keys at once; a step whose keys do not fit
        in memory (dedup, decontaminate) walks `keys` part by part and keeps only compact arrays."""
        from curate.steps.keyed import FrameDecision

        res = self.apply(keys.collect(), ctx)
        return FrameDecision(self.name, res.kept, res.rejected, keys.columns, res.scores, res.stats)

    def estimate(self, frame: pl.DataFrame, ctx: BuildContext) -> dict[str, Any] | None:
        """Optional cost estimate for `--dry-run` (teacher steps). None means "free"."""
        return None


def reject(frame: pl.DataFrame, reason: str | pl.Expr, detail: str | pl.Expr | None = None) -> pl.DataFrame:
    """Mark rows as rejected: adds `reason` and `detail` columns (strings or expressions)."""
    r = pl.lit(reason) if isinstance(reason, str) else reason
    if detail is None:
        d = pl.lit(None, dtype=pl.Utf8)
    elif isinstance(detail, str):
        d = pl.lit(detail)
    else:
        d = detail
    return frame.with_columns(r.cast(pl.Utf8).alias("reason"), d.cast(pl.Utf8).alias("detail"))


def split_by(
    frame: pl.DataFrame, reason: pl.Expr, detail: pl.Expr | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows by a `reason` expression that is null for rows to keep.

    Returns (kept, rejected) with `reason`/`detail` on the rejected rows.
    """
    tagged = frame.with_columns(
        reason.cast(pl.Utf8).alias("reason"),
        (detail if detail is not None else pl.lit(None, dtype=pl.Utf8)).cast(pl.Utf8).alias("detail"),
    )
    kept = tagged.filter(pl.col("reason").is_null()).drop("reason", "detail")
    rejected = tagged.filter(pl.col("reason").is_not_null())
    return kept, rejected


def no_rejects(frame: pl.DataFrame) -> pl.DataFrame:
    """An empty rejected frame with the right columns."""
    return reject(frame.clear(), "")
