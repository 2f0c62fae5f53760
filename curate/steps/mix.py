"""mix: weighted combination of sources (built datasets or any other), seeded, without upsampling.

Semantics
- Rows are grouped by `by` (default `source`, i.e. the recipe source each row came from). A group's
  weight is `weights[group]` when given, else the recipe source's `weight:` (default 1).
- Target share of group g = w_g / sum(w). Rows are never repeated (every id stays unique) and a
  weight of 0 drops the group.
- `total: N` asks for N rows. Each group gets round(N * share) rows (largest remainders, so the
  targets sum to N). A group with fewer rows than its target gives all it has and the mix comes out
  smaller than N (the shortfall is in the report); other groups are not topped up, so no group ever
  exceeds its share.
- Without `total`, the mix is the largest one that meets every share (up to rounding to whole rows):
  the group that runs out first (fewest rows per unit of weight) is taken whole, the others are
  down-sampled to match.
- Which rows a group keeps is a seeded ranking by sha256(seed:id): independent of row order, stable
  when rows are added, different for another seed. Kept rows stay in input order.
- Rows left out leave with reason `mix_downsampled` (the detail says kept k of n, and the weight).
- `unit: tokens` (issue 11; the Aloe paper reports its mix in tokens) measures shares, `total` and
  availability in tokens (`curate.tokens.row_tokens`: exact with the step's `tokenizer`, else with the
  build's - `--tokenizer` or the recipe's `tokenizer:`, so the mix and the manifest's `tokens` agree -
  else an estimate): each group keeps its rows in the same seeded order while their running token sum
  stays within its token target. `unit: rows` (default) is the row-count mix above. (`by` already names
  the group column.)
- Contract columns that are null in every kept row are dropped (a `build` source may carry columns
  its rows do not use, such as `messages` in a preference mix, which would confuse TRL's format checks).
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from typing import Any, Literal

import polars as pl
from pydantic import Field

from curate.errors import RecipeError
from curate.record import ADDED_COLUMNS
from curate.steps import BuildContext, Step, StepParams, StepResult, reject
from curate.tokens import row_tokens, token_counter


def allocate(available: dict[str, int], weights: dict[str, float], total: int | None) -> dict[str, int]:
    """Rows to keep per group (see the module docstring for the rules)."""
    live = {g: Fraction(w).limit_denominator(10**6) for g, w in weights.items() if w > 0 and available.get(g, 0) > 0}
    out = dict.fromkeys(available, 0)
    if not live:
        return out
    wsum = sum(live.values())
    if total is None:
        total = min(math.floor(Fraction(available[g]) * wsum / w) for g, w in live.items())
    exact = {g: Fraction(total) * w / wsum for g, w in live.items()}
    base = {g: math.floor(x) for g, x in exact.items()}
    left = total - sum(base.values())
    for g in sorted(live, key=lambda g: (-(exact[g] - base[g]), g))[:left]:
        base[g] += 1
    for g, n in base.items():
        out[g] = min(n, available[g])
    return out


def rank_key(seed: int, row_id: str) -> str:
    return hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()


class MixParams(StepParams):
    weights: dict[str, float] | None = Field(
        default=None, description="weight per group; default each recipe source's `weight:`")
    total: int | None = Field(default=None, gt=0, description="rows wanted; default the largest exact mix")
    by: str = Field(default="source", description="column that names the groups")
    seed: int | None = Field(default=None, description="default the recipe seed")
    unit: Literal["rows", "tokens"] = Field(default="rows", description="what weights and `total` measure")
    tokenizer: str | None = Field(default=None, description="tokenizer.json, folder (relative to the cwd) or cached Hub id "
                                  "for unit: tokens (default the build's tokenizer, else an estimate)")


class Mix(Step):
    name = "mix"
    scope = "global"
    Params = MixParams
    description = "weighted, seeded combination of sources without upsampling; extra rows leave as mix_downsampled"

    def _weights(self, groups: list[str], ctx: BuildContext) -> dict[str, float]:
        p: MixParams = self.params
        if p.weights is not None:
            table, origin = dict(p.weights), "the mix step's `weights`"
        else:
            recipe = ctx.recipe
            table = {s.name: s.weight for s in recipe.sources} if recipe is not None else {}
            origin = "the recipe sources' `weight:`"
        missing = [g for g in groups if g not in table]
        if missing and (p.weights is not None or p.by != "source"):
            raise RecipeError(f"mix: no weight for {p.by} value(s) {missing} (weights come from {origin})",
                              hint=f"give `weights: {{{missing[0]}: 1.0, ...}}` in the mix step")
        bad = {g: w for g, w in table.items() if w < 0}
        if bad:
            raise RecipeError(f"mix: weights must be >= 0, got {bad}")
        return {g: float(table.get(g, 1.0)) for g in groups}

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p: MixParams = self.params
        if p.by not in frame.columns:
            raise RecipeError(f"mix: column {p.by!r} (the `by` param) is not in the data",
                              hint=f"columns: {', '.join(frame.columns)}")
        seed = ctx.seed if p.seed is None else p.seed
        key = pl.col(p.by).fill_null("(null)")
        counts = dict(frame.group_by(key).len().iter_rows())
        groups = sorted(counts)
        weights = self._weights(groups, ctx)

        ranks = pl.Series("_rank", [rank_key(seed, i) for i in frame["id"]], dtype=pl.Utf8)
        tagged = frame.with_columns(ranks, key.alias("_group"))
        tagged = tagged.with_columns(pl.col("_rank").rank("ordinal").over("_group").alias("_pos"))
        counter = token_counter(p.tokenizer or ctx.options.get("tokenizer")) if p.unit == "tokens" else None
        if counter is not None:
            tagged = tagged.with_columns(row_tokens(frame, counter).cast(pl.Int64).alias("_size"))
            running = (tagged.select("_group", "_pos", "_size").sort("_group", "_pos")
                       .with_columns(pl.col("_size").cum_sum().over("_group").alias("_cum")))
            tagged = tagged.join(running.select("_group", "_pos", "_cum"), on=["_group", "_pos"], how="left",
                                 maintain_order="left")
            tokens = dict(tagged.group_by("_group").agg(pl.col("_size").sum()).iter_rows())
            budget = allocate(tokens, weights, p.total)
            within = tagged.with_columns(pl.col("_group").replace_strict(budget, return_dtype=pl.Int64).alias("_b"))
            target = dict(within.group_by("_group").agg((pl.col("_cum") <= pl.col("_b")).sum()).iter_rows())
            target = {g: int(target.get(g, 0)) for g in groups}
        else:
            target = allocate(counts, weights, p.total)
        quota = pl.DataFrame({"_group": list(target), "_quota": list(target.values())},
                             schema={"_group": pl.Utf8, "_quota": pl.Int64})
        tagged = tagged.join(quota, on="_group", how="left", maintain_order="left")
        keep = pl.col("_pos") <= pl.col("_quota")
        helper = [c for c in ("_rank", "_group", "_pos", "_quota", "_size", "_cum") if c in tagged.columns]
        tok_kept = (dict(tagged.filter(keep).group_by("_group").agg(pl.col("_size").sum()).iter_rows())
                    if p.unit == "tokens" else {})
        kept = tagged.filter(keep).drop(helper)
        dropped = tagged.filter(~keep)
        detail = {g: f"{p.by} {g}: kept {target[g]} of {counts[g]} (weight {weights[g]:g})" for g in groups}
        rejected = reject(dropped, "mix_downsampled",
                          pl.col("_group").replace_strict(detail, return_dtype=pl.Utf8)).drop(helper)

        empty = [c for c in kept.columns if c in ADDED_COLUMNS and kept[c].null_count() == kept.height]
        if kept.height and empty:
            kept = kept.drop(empty)

        n_out = sum(target.values())
        wsum = sum(w for g, w in weights.items() if counts[g] and w > 0) or 1.0
        rows = [[g, f"{weights[g]:g}", f"{weights[g] / wsum:.1%}" if weights[g] else "0%", counts[g], target[g],
                 f"{target[g] / n_out:.1%}" if n_out else "-"] for g in groups]
        wanted = allocate(dict.fromkeys(counts, p.total), weights, p.total) if p.total and p.unit == "rows" else target
        short = {g: wanted[g] - target[g] for g in groups if wanted[g] > target[g]}
        stats: dict[str, Any] = {
            "unit": p.unit,
            "seed": seed, "total_requested": p.total, "rows_out": n_out,
            "groups": {g: {"weight": weights[g], "available": counts[g], "kept": target[g]} for g in groups},
            "dropped_empty_columns": empty,
            "report_tables": [{"title": f"Mix by {p.by}" + (f" (total {p.total} requested)" if p.total else ""),
                               "header": [p.by, "weight", "target share", "available", "kept", "share of mix"],
                               "rows": rows}],
        }
        if p.unit == "tokens":
            t_out = sum(tok_kept.values()) or 1
            for g in groups:
                stats["groups"][g].update(tokens_available=int(tokens.get(g, 0)), tokens_kept=int(tok_kept.get(g, 0)))
            table = stats["report_tables"][0]
            table["title"] += " in tokens" + ("" if counter and counter.exact else " (estimated: words + punctuation)")
            table["header"] += ["tokens available", "tokens kept", "token share of mix"]
            for r, g in zip(table["rows"], groups, strict=True):
                r += [int(tokens.get(g, 0)), int(tok_kept.get(g, 0)), f"{tok_kept.get(g, 0) / t_out:.1%}"]
        if short:
            stats["shortfall"] = short
            ctx.logger.warning("mix: groups short of their share (rows missing): %s", short)
        return StepResult(kept=kept, rejected=rejected, stats=stats)
