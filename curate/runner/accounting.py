"""Accounting: every row that leaves a step leaves with a reason, per shard, per step and per build.

Shard metadata is merged into one entry per step: row counts, reasons and seconds are summed; `stats`
are merged by `merge_stats`. With one shard the merge is the identity, so a build that fits one batch
has exactly the manifest of the in-memory runner.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl

from curate.errors import ReconciliationError
from curate.steps import BuildContext, Step, StepResult, no_rejects


def check(stage: str, frame: pl.DataFrame, result: StepResult, expands: bool = False) -> int:
    """rows_in == kept + rejected, and the ids that came out are exactly the ids that went in.

    An expanding step (`expands = True`, e.g. `attack`) turns each input row into one or more rows that
    carry `parent_id`: then every input id must be the parent of at least one output row, every parent
    must be an input id, and the output ids must be unique. Returns the rows added (0 for other steps).
    """
    kept, rejected = result.kept.height, result.rejected.height
    if "reason" not in result.rejected.columns or (rejected and result.rejected["reason"].null_count()):
        raise ReconciliationError(f"step {stage!r}: rejected rows without a `reason`")
    if expands:
        out = pl.concat([result.kept.select("id", "parent_id"), result.rejected.select("id", "parent_id")])
        if out["id"].n_unique() != out.height or set(out["parent_id"].to_list()) != set(frame["id"].to_list()):
            raise ReconciliationError(f"step {stage!r}: expanded rows must have unique ids and `parent_id` "
                                      "covering exactly the input ids")
        return out.height - frame.height
    if frame.height != kept + rejected:
        raise ReconciliationError(
            f"step {stage!r}: rows_in {frame.height} != kept {kept} + rejected {rejected}: "
            "rows would be lost silently; this is a bug in the step"
        )
    ids_in = frame["id"].sort()
    ids_out = pl.concat([result.kept["id"], result.rejected["id"]]).sort()
    if not ids_in.equals(ids_out):
        raise ReconciliationError(f"step {stage!r}: the ids of kept + rejected rows differ from the input ids")
    return 0


def reasons(rejected: pl.DataFrame) -> dict[str, int]:
    if rejected.height == 0:
        return {}
    counts = rejected.group_by("reason").len().sort(["len", "reason"], descending=[True, False])
    return {r: int(n) for r, n in counts.iter_rows()}


def ordered_reasons(totals: dict[str, int]) -> dict[str, int]:
    """Reason counts summed over parts, most frequent first (ties by name): the order `reasons` gives."""
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def apply_step(name: str, step: Step, frame: pl.DataFrame, ctx: BuildContext
               ) -> tuple[StepResult, dict[str, Any]]:
    """Run one step on one frame (a shard or a whole stage) and account for it.

    In a dry run a step with a cost estimate (teacher steps) is estimated, not run: its rows flow on
    unchanged and the meta carries `estimate` instead of counts. A step never runs on zero rows (no
    teacher is contacted for nothing; see curate.build_checks for how an emptied build is explained)."""
    if frame.height == 0:
        return StepResult(kept=frame, rejected=no_rejects(frame)), empty_meta(name, step)
    if ctx.options.get("dry_run"):
        est = step.estimate(frame, ctx)
        if est is not None:
            return StepResult(kept=frame, rejected=no_rejects(frame)), {"name": name, "estimate": est}
    t0 = time.perf_counter()
    result = step.apply(frame, ctx)
    seconds = round(time.perf_counter() - t0, 3)
    added = check(name, frame, result, getattr(step, "expands", False))
    meta = {"name": name, "rows_in": frame.height, "rows_kept": result.kept.height,
            "rows_rejected": result.rejected.height, "seconds": seconds,
            "params": step.params.model_dump(mode="json"), "stats": result.stats,
            "reasons": reasons(result.rejected)}
    if added:
        meta["rows_added"] = added
    return result, meta


def empty_meta(name: str, step: Step) -> dict[str, Any]:
    """The accounting of a step that saw no rows."""
    return {"name": name, "rows_in": 0, "rows_kept": 0, "rows_rejected": 0, "seconds": 0.0,
            "params": step.params.model_dump(mode="json"), "stats": {}, "reasons": {}}


def merge_stats(parts: list[Any], constants: frozenset[str] = frozenset()) -> Any:
    """Merge the `stats` of one step over shards.

    Rules, chosen for the stats our steps report: equal values stay; dicts merge key by key; numbers are
    counts and are summed, except under a key named in `constants` (the step's params, `seed`, versions;
    a dict under such a key is still merged) or ending in `_per_s` (rates: the last shard's rate is kept); lists and strings that differ keep the
    first value. A step whose stats need other rules defines `merge_shard_stats(parts) -> dict`."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    first = parts[0]
    if all(isinstance(p, dict) for p in parts):
        keys = list(dict.fromkeys(k for p in parts for k in p))
        out = {}
        for k in keys:
            vals = [p[k] for p in parts if k in p]
            if (k in constants and not isinstance(vals[0], dict)) or k.endswith("_per_s"):
                out[k] = vals[-1] if k.endswith("_per_s") else vals[0]
            else:
                out[k] = merge_stats(vals, constants)
        return out
    if all(isinstance(p, int | float) and not isinstance(p, bool) for p in parts):
        total = sum(parts)
        return round(total, 6) if isinstance(total, float) else total
    return first


def merge_meta(metas: list[dict[str, Any]], step: Step) -> dict[str, Any]:
    """One manifest entry for a step run over several shards."""
    if len(metas) == 1:
        return metas[0]
    counted = [m for m in metas if "rows_in" in m]
    constants = frozenset(type(step.params).model_fields) | {"seed", "template_version", "version"}
    if not counted:  # estimated in a dry run
        return {"name": metas[0]["name"], "estimate": merge_stats([m["estimate"] for m in metas], constants)}
    out = dict(counted[0])
    for key in ("rows_in", "rows_kept", "rows_rejected"):
        out[key] = sum(m[key] for m in counted)
    if any(m.get("rows_added") for m in counted):
        out["rows_added"] = sum(m.get("rows_added", 0) for m in counted)
    out["seconds"] = round(sum(m["seconds"] for m in counted), 3)
    custom = getattr(step, "merge_shard_stats", None)
    stats = [m["stats"] for m in counted]
    out["stats"] = custom(stats) if custom else merge_stats(stats, constants)
    totals: dict[str, int] = {}
    for m in counted:
        for r, n in m["reasons"].items():
            totals[r] = totals.get(r, 0) + n
    out["reasons"] = ordered_reasons(totals)
    return out
