"""What the report and the empty-build check read of a stage's rejects, without the rejected rows in memory.

`report.md` shows the first row of each of the first reasons (in order of first appearance) and the empty
build error shows the first few rows and the count. Both used to receive every rejected row of every stage
as one frame (570k whole rows for `dedup` in a 1M-row build, +840 MB at the write stage); a
`RejectSummary` is built part by part while the parts are streamed into `rejects/<stage>.parquet` and holds
the row count plus at most `EXAMPLE_ROWS` + one row per distinct reason, of the few columns those readers
show (`SUMMARY_COLUMNS`). `summarize(frame)` of a whole frame equals the merge of its parts' summaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import polars as pl

#: Rows kept from the head of the stage's rejects (the empty-build error shows 3).
EXAMPLE_ROWS = 5
#: The columns the readers show: where the row came from, why, and its text.
SUMMARY_COLUMNS = ("id", "source_row", "reason", "detail", "question", "raw")


@dataclass(frozen=True)
class RejectSummary:
    """`rows` rejected; `head`: the first rows; `firsts`: the first row of each reason, in order of first
    appearance (both limited to `SUMMARY_COLUMNS`)."""

    rows: int
    head: pl.DataFrame
    firsts: pl.DataFrame

    @property
    def height(self) -> int:  # reads like the frame it replaces
        return self.rows

    def reasons(self, n: int) -> list[dict[str, object]]:
        """The first row of each of the first `n` reasons."""
        return self.firsts.head(n).to_dicts()


def _slim(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select([c for c in SUMMARY_COLUMNS if c in frame.columns])


def summarize(frame: pl.DataFrame) -> RejectSummary:
    """The summary of one frame of rejected rows (a whole stage or one of its parts)."""
    slim = _slim(frame)
    firsts = slim.unique("reason", keep="first", maintain_order=True) if "reason" in slim.columns else slim.head(0)
    return RejectSummary(frame.height, slim.head(EXAMPLE_ROWS), firsts)


def merge(summaries: Iterable[RejectSummary]) -> RejectSummary | None:
    """The summary of consecutive parts in order (None for no parts)."""
    out: RejectSummary | None = None
    for s in summaries:
        if out is None:
            out = s
            continue
        head = pl.concat([out.head, s.head], how="diagonal_relaxed").head(EXAMPLE_ROWS)
        firsts = pl.concat([out.firsts, s.firsts], how="diagonal_relaxed")
        if "reason" in firsts.columns:
            firsts = firsts.unique("reason", keep="first", maintain_order=True)
        out = RejectSummary(out.rows + s.rows, head, firsts)
    return out


def as_summaries(rejects: Mapping[str, RejectSummary | pl.DataFrame] | None) -> dict[str, RejectSummary]:
    """Summaries by stage from summaries or whole frames (callers that still hold frames)."""
    return {k: v if isinstance(v, RejectSummary) else summarize(v) for k, v in (rejects or {}).items()}
