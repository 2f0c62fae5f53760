"""What `dedup` decided, as compact per-row arrays, applied to the whole rows one part at a time.

Per row (rows of earlier builds first, then the stage's rows): a reason code, the row it duplicates and
the similarity to it, 17 bytes; plus the ids of the rows that rejected rows point at (only those). The
`dup_cluster` column, the reject details and the scores are made per part from these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from curate.steps.base import StepResult
from curate.steps.keyed import ROW

KEPT, EXACT, NEAR = 0, 1, 2
REASONS = {EXACT: "exact_duplicate", NEAR: "near_duplicate"}


@dataclass
class DedupDecision:
    n_old: int  # rows of earlier builds, numbered before the stage's rows
    code: np.ndarray  # int8: KEPT, EXACT or NEAR
    rep: np.ndarray  # int64: the kept row each row duplicates (itself when kept)
    sim: np.ndarray  # float64: Jaccard similarity to it (1.0 for kept rows and exact duplicates)
    is_old: np.ndarray  # bool
    rep_ids: pl.DataFrame  # `_rep` (int64), `_rep_id`: ids of the rows rejected stage rows point at
    stats: dict[str, Any] = field(default_factory=dict)

    def apply(self, rows: pl.DataFrame) -> StepResult:
        at = rows[ROW].to_numpy().astype(np.int64) + self.n_old
        code, rep, sim = self.code[at], self.rep[at], self.sim[at]
        near = code == NEAR
        uniq = pl.Series(sim[near]).unique().sort()
        shown = pl.Series([f"{s:.2f}" for s in uniq.to_list()], dtype=pl.Utf8)
        tags = pl.DataFrame({"_code": code, "_rep": rep, "_rep_old": self.is_old[rep],
                             "dup_similarity": sim}).join(self.rep_ids, on="_rep", how="left", maintain_order="left")
        tags = tags.with_columns(
            pl.col("dup_similarity").replace_strict(uniq, shown, default=None).alias("_sim_text"))
        tagged = pl.concat([rows, tags], how="horizontal").with_columns(
            pl.when(pl.col("_code") == KEPT).then(pl.col("id")).otherwise(pl.col("_rep_id")).alias("dup_cluster"))
        detail = pl.concat_str([
            pl.col("dup_cluster"),
            pl.when(pl.col("_rep_old")).then(pl.lit(" (earlier build)")).otherwise(pl.lit("")),
            pl.when(pl.col("_code") == NEAR).then(pl.lit(" (jaccard ") + pl.col("_sim_text") + pl.lit(")"))
            .otherwise(pl.lit("")),
        ])
        helpers = [ROW, "_code", "_rep", "_rep_old", "_rep_id", "_sim_text", "dup_similarity"]
        kept = tagged.filter(pl.col("_code") == KEPT).drop(helpers)
        rejected = (
            tagged.filter(pl.col("_code") != KEPT)
            .with_columns(pl.col("_code").replace_strict(REASONS, return_dtype=pl.Utf8).alias("reason"),
                          detail.alias("detail"))
            .drop(helpers, *([] if "dup_cluster" in rows.columns else ["dup_cluster"]))
        )
        return StepResult(kept, rejected, scores=tagged.select("id", "dup_cluster", "dup_similarity"))
