"""`holdout`: held-out test splits named in the recipe never become training rows.

A recipe names its test sets as ordinary sources with `split: test` (e.g. a safety benchmark's test
prompts); they enter the build so that this step can see them, and leave it here:

- every row whose `source_split` is in `test_splits` is rejected `held_out_test`;
- every other row whose question matches a test row is rejected `test_overlap`, detail
  `<source>:<source_id>` of the test row: the same normalised text (case, punctuation and spacing
  ignored, `curate.textnorm.norm_expr`), or at least `min_overlap` of the test row's word `ngram`-grams
  (default 0.5 of its 8-grams: short unsafe requests, 10-40 words in MedSafetyBench, are shorter than
  the 13-grams the benchmark `decontaminate` step uses; rewording half of a request is a new request).

Run it before `dedup` and `attack`, so neither a test request nor its near copies are expanded.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from pydantic import Field

from curate.steps import BuildContext, Step, StepParams, StepResult
from curate.textnorm import norm_expr


def grams(text: str, n: int) -> set[str]:
    words = text.split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


class Holdout(Step):
    name = "holdout"
    scope = "global"
    description = "reject test-split rows and training rows that overlap them (held-out sets never train)"

    class Params(StepParams):
        test_splits: list[str] = Field(default_factory=lambda: ["test"], description="source splits held out")
        ngram: int = Field(default=8, ge=2, le=30)
        min_overlap: float = Field(default=0.5, gt=0, le=1, description="share of a test row's n-grams")

    params: Params

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p = self.params
        tagged = frame.with_columns(norm_expr(pl.col("question")).alias("_norm"))
        is_test = pl.col("source_split").is_in(p.test_splits)
        test = tagged.filter(is_test)
        train = tagged.filter(~is_test)
        exact = {t: f"{s}:{i}" for t, s, i in test.select("_norm", "source", "source_id").iter_rows()}
        test_grams = [(grams(t, p.ngram), f"{s}:{i}") for t, s, i in test.select("_norm", "source", "source_id").iter_rows()]
        index: dict[str, list[int]] = {}
        for k, (gs, _) in enumerate(test_grams):
            for g in gs:
                index.setdefault(g, []).append(k)
        details: list[str | None] = []
        for text in train["_norm"].to_list():
            hit = exact.get(text)
            if hit is None:
                mine = grams(text, p.ngram)
                shared: dict[int, int] = {}
                for g in mine:
                    for k in index.get(g, ()):
                        shared[k] = shared.get(k, 0) + 1
                best = max(shared.items(), key=lambda kv: kv[1] / len(test_grams[kv[0]][0]), default=None)
                if best is not None and best[1] / len(test_grams[best[0]][0]) >= p.min_overlap:
                    share = best[1] / len(test_grams[best[0]][0])
                    hit = f"{test_grams[best[0]][1]} ({share:.0%} of its {p.ngram}-grams)"
            details.append(hit)
        train = train.with_columns(pl.Series("_hit", details, dtype=pl.Utf8))
        kept = train.filter(pl.col("_hit").is_null()).drop("_norm", "_hit")
        overlap = train.filter(pl.col("_hit").is_not_null()).with_columns(
            pl.lit("test_overlap").alias("reason"), pl.col("_hit").alias("detail")).drop("_norm", "_hit")
        held = test.drop("_norm").with_columns(
            pl.lit("held_out_test").alias("reason"),
            (pl.lit("test split of source ") + pl.col("source")).alias("detail"))
        rejected = pl.concat([held, overlap], how="vertical_relaxed")
        stats: dict[str, Any] = {"test_rows": test.height, "overlap_rows": overlap.height,
                                 "test_splits": p.test_splits}
        return StepResult(kept=kept, rejected=rejected, stats=stats)
