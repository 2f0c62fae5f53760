"""`filter`: heuristic rules declared in the recipe; each rule that fires is a named reason.

Every rule is off unless its parameter is set. Rules are checked in the order of `RULES` and a row is
rejected with the first one that fires; detail gives the measured value and the bound. Lengths are in
characters after trimming. The answer text of an MCQ row is its gold option's text.

| reason                 | parameter(s)                                     |
|------------------------|--------------------------------------------------|
| question_too_short/long | min_question_chars / max_question_chars         |
| answer_too_short/long  | min_answer_chars / max_answer_chars              |
| missing_explanation    | require_explanation                              |
| explanation_too_short/long | min_explanation_chars / max_explanation_chars (rows with an explanation) |
| too_few/many_options   | min_options / max_options (MCQ rows)             |
| answer_in_question     | answer_leak: the gold option text (>= leak_min_chars) appears in the stem |
| placeholder_option     | drop_placeholders: an option is empty, "-", "...", "n/a", "null", "tbd", "option a", ... |
| all_of_the_above       | drop_all_of_the_above: an option like "all of the above", "both a and b", "none of these" |
| low_judge_score / missing_judge_score | min_judge_score (when a `judge_score` column exists) |
| bottom_percentile      | drop_bottom (+ drop_bottom_by, default `evol_score`): see below |

Percentile rule (`drop_bottom: 0.10`): applied last, to the rows that passed every other rule. They are
ranked by the `drop_bottom_by` column ascending (a missing value ranks lowest), ties broken by `id`
ascending (the content hash: deterministic and independent of row order), and exactly
floor(fraction x rows) of the lowest are rejected, so rows with the same score as the cut may fall on
either side of it by id. The cut is in `stats.drop_bottom` (the highest dropped and lowest kept value)
and in the report, with the column's histogram and how many rows each bin lost.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from curate.errors import RecipeError
from curate.steps import BuildContext, Step, StepParams, StepResult, split_by
from curate.textnorm import answer_texts, norm_expr

# on normalised text (punctuation already spaces): "", "-", "...", "N/A", "null", "TBD", "Option C", ...
# Single letters are not placeholders (blood group "A", vitamin "D"), nor is "None" (an answer in MedMCQA).
PLACEHOLDER = r"^(n a|na|null|nan|tbd|todo|xxx+|option [a-e1-5]|choice [a-e1-5])$"
BLANK = r"^[\s\-_.?…]*$"  # on the raw text: empty, dashes, dots, question marks (arrows etc. are content)
ALL_OF_ABOVE = (
    r"\b(all|none|both|neither) (of )?(the )?(above|these|of the above)\b"
    r"|\bboth [a-e1-5] (and|&) [a-e1-5]\b|\b[a-e] (and|&) [a-e]( (and|&) [a-e])? (are|is) (correct|true)\b"
    r"|^all$|^none$"
)


class FilterParams(StepParams):
    min_question_chars: int | None = Field(None, ge=0)
    max_question_chars: int | None = Field(None, ge=1)
    min_answer_chars: int | None = Field(None, ge=0)
    max_answer_chars: int | None = Field(None, ge=1)
    require_explanation: bool = False
    min_explanation_chars: int | None = Field(None, ge=0)
    max_explanation_chars: int | None = Field(None, ge=1)
    min_options: int | None = Field(None, ge=0)
    max_options: int | None = Field(None, ge=1)
    answer_leak: bool = False
    leak_min_chars: int = Field(12, ge=1)
    drop_placeholders: bool = False
    drop_all_of_the_above: bool = False
    min_judge_score: float | None = None
    drop_bottom: float | None = Field(None, gt=0.0, lt=1.0)  # fraction of the lowest-scored rows to drop
    drop_bottom_by: str = "evol_score"  # any numeric score column, e.g. complexity_score, judge_score
    #: When the rows lack the `drop_bottom_by` column: `error` (default), or `skip` the cut loudly (recipes whose
    #: `score` step runs only with a teacher, like aloe-medical-sft).
    drop_bottom_missing: Literal["error", "skip"] = "error"


def _len(col: str) -> pl.Expr:
    return pl.col(col).fill_null("").str.strip_chars().str.len_chars()


def _rules(p: FilterParams, has_judge: bool) -> list[tuple[str, pl.Expr, pl.Expr]]:
    """(reason, fires, detail) for every enabled rule, in order."""
    q, a, e = _len("question"), _len("_answer_text"), _len("explanation")
    mcq = pl.col("options").list.len() > 0
    nopt = pl.col("options").list.len()
    out: list[tuple[str, pl.Expr, pl.Expr]] = []

    def bound(reason: str, value: pl.Expr, limit: int | float | None, low: bool, what: str,
              when: pl.Expr | None = None) -> None:
        if limit is None:
            return
        fires = value < limit if low else value > limit
        if when is not None:
            fires = fires & when
        sign = "<" if low else ">"
        out.append((reason, fires, pl.format(f"{what} {{}} {sign} {limit}", value)))

    bound("question_too_short", q, p.min_question_chars, True, "question chars")
    bound("question_too_long", q, p.max_question_chars, False, "question chars")
    bound("answer_too_short", a, p.min_answer_chars, True, "answer chars")
    bound("answer_too_long", a, p.max_answer_chars, False, "answer chars")
    if p.require_explanation:
        out.append(("missing_explanation", e == 0, pl.lit("no explanation")))
    bound("explanation_too_short", e, p.min_explanation_chars, True, "explanation chars", e > 0)
    bound("explanation_too_long", e, p.max_explanation_chars, False, "explanation chars")
    bound("too_few_options", nopt, p.min_options, True, "options", mcq)
    bound("too_many_options", nopt, p.max_options, False, "options")
    if p.answer_leak:
        ans = norm_expr(pl.col("_answer_text"))
        stem = pl.lit(" ") + norm_expr(pl.col("question")) + pl.lit(" ")
        fires = mcq & (ans.str.len_chars() >= p.leak_min_chars) & stem.str.contains(
            pl.lit(" ") + ans + pl.lit(" "), literal=True)
        out.append(("answer_in_question", fires, pl.format("answer text '{}' is in the question", ans)))
    raw = pl.col("options").list.eval(pl.element().struct.field("text").fill_null(""))
    for flag, reason, pattern, what in (
        (p.drop_placeholders, "placeholder_option", PLACEHOLDER, "placeholder option"),
        (p.drop_all_of_the_above, "all_of_the_above", ALL_OF_ABOVE, "'all of the above'-style option"),
    ):
        if flag:
            text = pl.element().struct.field("text")
            flag_expr = norm_expr(text).str.contains(pattern)
            if reason == "placeholder_option":
                flag_expr = flag_expr | text.fill_null("").str.contains(BLANK)
            hit = pl.col("options").list.eval(flag_expr)
            out.append((reason, mcq & hit.list.any(), pl.format(f"{what}: {{}}", _first_match(raw, hit))))
    if p.min_judge_score is not None and has_judge:
        js = pl.col("judge_score")
        out.append(("missing_judge_score", js.is_null(), pl.lit("no judge score")))
        out.append(("low_judge_score", js < p.min_judge_score,
                    pl.format(f"judge score {{}} < {p.min_judge_score}", js)))
    return out


def _first_match(texts: pl.Expr, hits: pl.Expr) -> pl.Expr:
    """Quoted text of the first option whose flag is true."""
    idx = hits.list.eval(pl.element().arg_max())
    return pl.concat_str([pl.lit("'"), texts.list.get(idx.list.first(), null_on_oob=True), pl.lit("'")])


class Filter(Step):
    name = "filter"
    scope = "row"
    description = "length, option and heuristic rules; judge-score threshold; drop_bottom percentile cut"
    Params = FilterParams

    def __init__(self, params=None):
        super().__init__(params)
        if self.params.drop_bottom is not None:  # a percentile needs every row at once: never per shard/batch
            self.scope = "global"

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p: FilterParams = self.params  # type: ignore[assignment]
        rules = _rules(p, "judge_score" in frame.columns)
        enabled = [r for r, _, _ in rules]
        if p.drop_bottom is not None:
            return percentile_cut(self._apply_rules(frame, rules, enabled, p), p, ctx)
        return self._apply_rules(frame, rules, enabled, p)

    @staticmethod
    def _apply_rules(frame: pl.DataFrame, rules: list, enabled: list[str], p: FilterParams) -> StepResult:
        if not rules:
            kept, rejected = split_by(frame, pl.lit(None, dtype=pl.Utf8))
            return StepResult(kept, rejected, stats={"rules": [], "rejected": {}})
        work = frame.with_columns(answer_texts(frame).alias("_answer_text"))
        reason: pl.Expr = pl.lit(None, dtype=pl.Utf8)
        detail: pl.Expr = pl.lit(None, dtype=pl.Utf8)
        for name, fires, why in reversed(rules):  # first rule in order wins
            reason = pl.when(fires.fill_null(False)).then(pl.lit(name)).otherwise(reason)
            detail = pl.when(fires.fill_null(False)).then(why).otherwise(detail)
        kept, rejected = split_by(work, reason, detail)
        counts = rejected.group_by("reason").len().sort("reason") if rejected.height else None
        stats = {"rules": enabled, "params": p.model_dump(exclude_defaults=True),
                 "rejected": {} if counts is None else {str(k): int(v) for k, v in counts.iter_rows()}}
        return StepResult(kept.drop("_answer_text"), rejected.drop("_answer_text"), stats=stats)


def percentile_cut(res: StepResult, p: FilterParams, ctx: BuildContext) -> StepResult:
    """Drop exactly floor(drop_bottom x rows) of the rows that passed the rules, lowest `drop_bottom_by`
    first (missing values lowest, ties by `id`); stats and a report table say where the cut fell."""
    by, frame = p.drop_bottom_by, res.kept
    if by not in frame.columns and p.drop_bottom_missing == "skip":
        msg = (f"filter: drop_bottom SKIPPED: the rows have no `{by}` column (its scoring step did not run), so "
               "no quality cut was made")
        ctx.logger.warning(msg)
        table = {"title": "Percentile cut", "header": ["status"], "rows": [[msg]]}
        return StepResult(res.kept, res.rejected,
                          stats=dict(res.stats, drop_bottom={"skipped": msg}, report_tables=[table]))
    if by not in frame.columns:
        raise RecipeError(f"filter: drop_bottom needs a `{by}` column, which the rows do not have",
                          hint="put a `score` step (or the step that adds it) before `filter`, or set "
                               "`drop_bottom_by` to an existing score column")
    n_drop = int(math.floor(p.drop_bottom * frame.height + 1e-9))
    order = frame.with_row_index("_pos").sort([pl.col(by).is_not_null(), by, "id"])
    mask = np.zeros(frame.height, dtype=bool)
    mask[order["_pos"].head(n_drop).to_numpy()] = True
    is_drop = pl.lit(pl.Series(mask))
    fraction = f"{p.drop_bottom:g}"
    kept, rejected = split_by(frame, pl.when(is_drop).then(pl.lit("bottom_percentile")),
                              pl.format(f"{by} {{}} in the bottom {fraction} (cut at {{}})", pl.col(by),
                                        pl.lit(None if not n_drop else order[by][n_drop - 1])))
    cut = order[by][n_drop - 1] if n_drop else None
    above = order[by][n_drop] if n_drop < order.height else None
    info = {"by": by, "fraction": p.drop_bottom, "rows_ranked": frame.height, "dropped": n_drop,
            "cut": cut, "lowest_kept": above,
            "ties_at_cut_kept": int((kept[by] == cut).sum()) if cut is not None else 0,
            "tie_rule": "lowest first, missing lowest, ties by id ascending"}
    stats = dict(res.stats, drop_bottom=info)
    stats["rejected"] = dict(stats.get("rejected") or {}, **({"bottom_percentile": n_drop} if n_drop else {}))
    stats["report_tables"] = [_cut_table(frame[by], rejected[by], info)]
    return StepResult(kept, pl.concat([res.rejected, rejected], how="diagonal_relaxed"), stats=stats)


def _cut_table(values: pl.Series, dropped: pl.Series, info: dict) -> dict:
    """The score's histogram (10 equal bins over its range) with the rows each bin lost to the cut."""
    v = values.drop_nulls()
    lo, hi = (float(v.min()), float(v.max())) if v.len() else (0.0, 0.0)
    width = (hi - lo) / 10 or 1.0
    rows = []
    for i in range(10):
        a, b = lo + i * width, lo + (i + 1) * width
        inside = (v >= a) & ((v <= b) if i == 9 else (v < b))
        gone = (dropped >= a) & ((dropped <= b) if i == 9 else (dropped < b))
        mark = "<- cut" if info["cut"] is not None and a <= info["cut"] < b + (1e-12 if i == 9 else 0) else ""
        rows.append([f"[{a:.3g}, {b:.3g}{']' if i == 9 else ')'}", int(inside.sum()), int(gone.fill_null(False).sum()),
                     mark])
    if values.null_count():
        rows.insert(0, ["missing", 0, int(dropped.null_count()), ""])
    title = (f"Quality cut: bottom {info['fraction']:g} by {info['by']} ({info['dropped']} of "
             f"{info['rows_ranked']} rows; cut at {info['cut']}, lowest kept {info['lowest_kept']})")
    return {"title": title, "header": ["bin", "rows", "dropped", ""], "rows": rows}
