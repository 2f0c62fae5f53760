"""`judge` step: the teacher (or another endpoint) scores each final answer 1-10 against our rubric.

The rubric (`synth.prompts.JUDGE_RUBRIC`) weighs correctness against the reference answer, medical
safety and clarity. The score goes into the `judge_score` column and the side-car; the threshold lives
in the `filter` step (`min_judge_score`), so it can change without paying for new calls. Rows whose
reply carries no parsable score after `max_attempts` leave with `no_score`; rows whose calls fail for
good leave with `teacher_error`.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from pydantic import Field

from curate.steps import BuildContext, Step, StepResult
from synth.cache import CallCache, call_key
from synth.client import TeacherClient, TeacherError
from synth.parse import parse_score
from synth.prompts import JUDGE, judge_fields
from synth.runner import FrameRows, TeacherStepParams, cache_path, derive_seed, profile_for, run_rows


def response_of(row: dict[str, Any]) -> str:
    """What is judged: the CoT when there is one, else the last assistant message, else explanation + answer."""
    if row.get("cot"):
        return row["cot"]
    for msg in reversed(row.get("messages") or []):
        if msg.get("role") == "assistant" and msg.get("content"):
            return msg["content"]
    expl = (row.get("explanation") or "").strip()
    return f"{expl}\n\nAnswer: {row.get('answer') or ''}".strip()


class Judge(Step):
    name = "judge"
    scope = "row"
    description = "teacher scores each answer 1-10 (correctness, safety, clarity); threshold in `filter`"

    class Params(TeacherStepParams):
        max_attempts: int = Field(default=2, ge=1, le=10, description="re-asks (new seed) when no score parses")
        temperature: float = Field(default=0.0, ge=0)
        max_tokens: int = Field(default=256, gt=0)
        seed: int | None = None
        extra_body: dict[str, Any] = Field(default_factory=dict)

    params: Params

    def gen_params(self, seed: int) -> dict[str, Any]:
        p = self.params
        return {**p.extra_body, "temperature": p.temperature, "max_tokens": p.max_tokens, "seed": seed}

    def _messages(self, row: dict[str, Any]) -> list[dict[str, str]]:
        return JUDGE.render(judge_fields(row, response_of(row)))

    async def _row(self, client: TeacherClient, row: dict[str, Any], base_seed: int) -> tuple[float | None, int, str | None, str | None]:
        messages = self._messages(row)
        last = ""
        for attempt in range(1, self.params.max_attempts + 1):
            try:
                comp = await client.chat(
                    messages, self.gen_params(derive_seed(base_seed, row["id"], attempt)), template=JUDGE.version
                )
            except TeacherError as err:
                return None, attempt, "teacher_error", f"attempt {attempt}: {err}"
            score = parse_score(comp.text)
            if score is not None:
                return score, attempt, None, None
            last = comp.text.strip().replace("\n", " ")[:80]
        return None, self.params.max_attempts, "no_score", f"{self.params.max_attempts} attempt(s); last reply {last!r}"

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        profile = profile_for(self.params, ctx)
        base_seed = self.params.seed if self.params.seed is not None else ctx.seed
        cols = [c for c in ("id", "task", "question", "context", "options", "answer", "explanation", "cot", "messages")
                if c in frame.columns]
        rows = FrameRows(frame.select(cols))

        outs, client_stats = run_rows(rows, lambda c, r: self._row(c, r, base_seed), profile,
                                      cache_path(self.params, ctx), ctx, "judge", self.params.log_every_s, base_seed)
        scores_col = pl.Series("judge_score", [o[0] for o in outs], dtype=pl.Float64)
        tagged = frame.with_columns(
            scores_col,
            pl.Series("reason", [o[2] for o in outs], dtype=pl.Utf8),
            pl.Series("detail", [o[3] for o in outs], dtype=pl.Utf8),
        )
        kept = tagged.filter(pl.col("reason").is_null()).drop("reason", "detail")
        rejected = tagged.filter(pl.col("reason").is_not_null()).drop("judge_score")
        scores = pl.DataFrame({"id": frame["id"], "judge_score": scores_col,
                               "judge_attempts": pl.Series([o[1] for o in outs], dtype=pl.Int32)})
        hist = kept["judge_score"].round(0).cast(pl.Int64).value_counts().sort("judge_score").rows() if kept.height else []
        stats = {
            "judge": {"model": profile.model, "template": JUDGE.version,
                      "params": {"temperature": self.params.temperature, "max_tokens": self.params.max_tokens}},
            "score_histogram": {str(s): int(n) for s, n in hist},
            "mean_score": round(float(kept["judge_score"].mean()), 3) if kept.height else None,
            "client": client_stats,
        }
        return StepResult(kept=kept, rejected=rejected, scores=scores, stats=stats)

    def estimate(self, frame: pl.DataFrame, ctx: BuildContext) -> dict[str, Any]:
        profile = profile_for(self.params, ctx)
        base_seed = self.params.seed if self.params.seed is not None else ctx.seed
        cols = [c for c in ("id", "task", "question", "context", "options", "answer", "explanation", "cot", "messages")
                if c in frame.columns]
        keys, chars = [], 0
        for row in frame.select(cols).to_dicts():
            messages = self._messages(row)
            chars += sum(len(m["content"]) for m in messages)
            keys.append(call_key(profile.model, {**profile.extra_body, **self.gen_params(derive_seed(base_seed, row["id"], 1))},
                                 messages, JUDGE.version))
        path = cache_path(self.params, ctx)
        judged_known = "cot" in frame.columns or "messages" in frame.columns
        hits = 0
        if judged_known and path.is_file():
            with CallCache(path) as cache:
                hits = len(cache.contains(keys))
        to_pay = len(keys) - hits
        out = {
            "step": self.name, "teacher": profile.public(), "rows": frame.height,
            "calls_min": len(keys), "calls_max": len(keys) * self.params.max_attempts,
            "cache_hits": hits if judged_known else None,
            "calls_to_pay_min": to_pay,
            "tokens_in_est": int(chars / 4 / max(len(keys), 1) * to_pay),
            "tokens_out_est": int(min(60, self.params.max_tokens) * to_pay),
        }
        if not judged_known:
            out["note"] = ("the answers to judge come from `cot`, which a dry run does not call: counts assume every "
                           "row reaches the judge, tokens_in is estimated from the source text, cache hits are unknown")
        return out
