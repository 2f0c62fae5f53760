"""`cot` step: gold-conditioned chain-of-thought from the teacher, verified against the gold answer.

For each row the teacher sees the question, the options and the gold answer (templates in
`synth.prompts`) and writes a rephrasing, the reasoning and a final `Answer: X` line. A reply is kept
only when its parsed answer equals the gold one, it is not cut off (finish_reason=length), and it is a
real explanation rather than an echo of the question. Otherwise the row is asked again with a new
seed, up to `max_attempts`, then rejected with the last reason (`wrong_answer`, `no_answer`, `echo`,
`truncated`, `teacher_error`) and the attempt count. Seeds are derived from (seed, row id, attempt),
so a re-run with the same cache reproduces every call and every output byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import Field

from curate.steps import BuildContext, Step, StepResult
from synth.cache import CallCache, call_key
from synth.client import Choice, Completion, TeacherClient, TeacherError
from synth.cot_verify import ROW_FIELDS, Verdict, gold_display, verify, verify_batch
from synth.lane import Lane, LaneError, lane_for
from synth.prompts import COT_TEMPLATES, fields
from synth.runner import FrameRows, TeacherStepParams, cache_path, derive_seed, profile_for, run_rows

COT_REASONS = ("wrong_answer", "no_answer", "echo", "truncated", "teacher_error", "unsupported_task")
__all__ = ["COT_REASONS", "Cot", "RowOutcome", "Verdict", "gold_display", "verify"]
#: frames of at least this many rows decide replies in the helper process (`synth.lane`); below, the helper
#: would hardly be up before the frame is done
LANE_MIN_ROWS = 256
#: ... and clients with at least this many requests in flight. Below, the event-loop thread has time to spare and
#: the helper's round trip (a median 3.3 ms at 64 in flight) only lengthens each row's cycle: issue 17,
#: benchmarks/teacher_client.py, interleaved A/B, medians of 7, deciding in-process against the helper:
#: 4,521 vs 3,718 req/s at 64 in flight, 4,805 vs 4,683 at 128, 5,616 vs 5,888 at 256, 5,945 vs 6,166 at 512
LANE_MIN_CONCURRENCY = 256


@dataclass
class RowOutcome:
    cot: str | None
    attempts: int
    reason: str | None
    detail: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: int = 0


class Cot(Step):
    name = "cot"
    scope = "row"
    description = "gold-conditioned chain-of-thought from the teacher, verified against the gold answer"

    class Params(TeacherStepParams):
        max_attempts: int = Field(default=3, ge=1, le=20)
        temperature: float = Field(default=0.7, ge=0)
        top_p: float = Field(default=0.95, gt=0, le=1)
        max_tokens: int = Field(default=1024, gt=0)
        seed: int | None = Field(default=None, description="base seed; default the recipe seed")
        extra_body: dict[str, Any] = Field(
            default_factory=dict, description="extra request fields for this step (vLLM: top_k, min_p, ...)"
        )
        min_new_words: int = Field(default=15, ge=0, description="an explanation needs this many words not in the question")
        max_copied: float = Field(default=0.6, ge=0, le=1, description="max share of 5-grams copied from the question")
        expected_completion_tokens: int = Field(default=350, gt=0, description="for --dry-run when the cache is empty")

    params: Params

    # -- params -------------------------------------------------------------------------------------
    def gen_params(self, seed: int) -> dict[str, Any]:
        p = self.params
        return {**p.extra_body, "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens, "seed": seed}

    def _base_seed(self, ctx: BuildContext) -> int:
        return self.params.seed if self.params.seed is not None else ctx.seed

    def public_params(self) -> dict[str, Any]:
        p = self.params
        return {"temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens,
                "max_attempts": p.max_attempts, **({"extra_body": p.extra_body} if p.extra_body else {})}

    # -- apply ----------------------------------------------------------------------------------------
    async def _row(self, client: TeacherClient, row: dict[str, Any], base_seed: int, lane: Lane | None) -> RowOutcome:
        template = COT_TEMPLATES.get(row["task"])
        if template is None:
            return RowOutcome(None, 0, "unsupported_task", f"no CoT template for task {row['task']!r}")
        first = row.pop("_first", None)  # (messages, params, key) of attempt 1, from `_prefetch`
        messages = first[0] if first else template.render(fields(row))
        out = RowOutcome(None, 0, None, None)
        for attempt in range(1, self.params.max_attempts + 1):
            out.attempts = attempt
            try:
                if first and attempt == 1:
                    comp: Completion = await client.chat(messages, first[1], template=template.version, key=first[2])
                else:
                    comp = await client.chat(messages, self.gen_params(derive_seed(base_seed, row["id"], attempt)),
                                             template=template.version)
            except TeacherError as err:
                out.reason, out.detail = "teacher_error", f"attempt {attempt}: {err}"
                return out
            out.prompt_tokens += comp.usage["prompt_tokens"]
            out.completion_tokens += comp.usage["completion_tokens"]
            out.cached += comp.cached
            verdict = await self._decide(row, comp, lane)
            if verdict.cot is not None:
                out.cot, out.reason, out.detail = verdict.cot, None, None
                return out
            out.reason, out.detail = verdict.reason, f"{attempt} attempt(s); last: {verdict.detail}"
        return out

    async def _decide(self, row: dict[str, Any], comp: Completion, lane: Lane | None) -> Verdict:
        """The verdict on a reply: the first acceptable choice wins (n > 1: vLLM `n`)."""
        verdict = Verdict(None, "no_answer", "empty reply")
        for choice in comp.choices:
            verdict = await self._verdict(row, choice, lane)
            if verdict.cot is not None:
                break
        return verdict

    async def _verdict(self, row: dict[str, Any], choice: Choice, lane: Lane | None) -> Verdict:
        """`verify`, in the helper process while it is up (`synth.lane`), else (and for a batch the helper
        fails) here: the same function either way (tests/test_lane.py)."""
        p = self.params
        if lane is not None and lane.ready:
            item = (tuple(row[f] for f in ROW_FIELDS), choice.text, choice.finish_reason, p.min_new_words, p.max_copied)
            try:
                return Verdict(*await lane.submit(item))
            except LaneError:
                pass  # decided here below
        return verify(row, choice.text, choice.finish_reason, min_new_words=p.min_new_words, max_copied=p.max_copied)

    def _prefetch(self, client: TeacherClient, rows: list[dict[str, Any]], base_seed: int) -> None:
        """Render the prompts of a chunk of rows and look up their first attempts in the cache in one batch
        (`prefetch`): `_row` reuses the messages and keys, and no call pays a SELECT of its own."""
        keys = []
        for row in rows:
            template = COT_TEMPLATES.get(row["task"])
            if template is not None:
                messages = template.render(fields(row))
                params = self.gen_params(derive_seed(base_seed, row["id"], 1))
                key = client.key(messages, params, template.version)
                row["_first"] = (messages, params, key)
                keys.append(key)
        client.prefetch(keys)

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        profile = profile_for(self.params, ctx)
        base_seed = self._base_seed(ctx)
        rows = FrameRows(frame.select("id", "task", "question", "context", "options", "answer"))

        busy = len(rows) >= LANE_MIN_ROWS and profile.max_concurrency >= LANE_MIN_CONCURRENCY
        lane = lane_for(verify_batch) if busy else None
        outs, client_stats = run_rows(rows, lambda c, r: self._row(c, r, base_seed, lane), profile,
                                      cache_path(self.params, ctx), ctx, "cot", self.params.log_every_s, base_seed,
                                      prepare=lambda c, chunk: self._prefetch(c, chunk, base_seed))

        tagged = frame.with_columns(
            pl.Series("cot", [o.cot for o in outs], dtype=pl.Utf8),
            pl.Series("cot_attempts", [o.attempts for o in outs], dtype=pl.Int32),
            pl.Series("reason", [o.reason for o in outs], dtype=pl.Utf8),
            pl.Series("detail", [o.detail for o in outs], dtype=pl.Utf8),
        )
        kept = tagged.filter(pl.col("reason").is_null()).drop("reason", "detail")
        rejected = tagged.filter(pl.col("reason").is_not_null()).drop("cot", "cot_attempts")
        scores = pl.DataFrame(
            {
                "id": frame["id"],
                "cot_attempts": pl.Series([o.attempts for o in outs], dtype=pl.Int32),
                "cot_status": pl.Series([o.reason or "kept" for o in outs], dtype=pl.Utf8),
                "cot_prompt_tokens": pl.Series([o.prompt_tokens for o in outs], dtype=pl.Int64),
                "cot_completion_tokens": pl.Series([o.completion_tokens for o in outs], dtype=pl.Int64),
                "cot_cached_calls": pl.Series([o.cached for o in outs], dtype=pl.Int32),
            }
        )
        attempts = kept["cot_attempts"].value_counts().sort("cot_attempts").rows() if kept.height else []
        stats = {
            "teacher": {"model": profile.model, "params": self.public_params()},
            "templates": {task: t.version for task, t in COT_TEMPLATES.items()},
            "kept_by_attempt": {str(a): int(n) for a, n in attempts},
            "client": client_stats,
        }
        return StepResult(kept=kept, rejected=rejected, scores=scores, stats=stats)

    # -- dry run ----------------------------------------------------------------------------------------
    def estimate(self, frame: pl.DataFrame, ctx: BuildContext) -> dict[str, Any]:
        """Rows, calls, tokens in/out (about 4 characters a token) and calls already in the cache."""
        profile = profile_for(self.params, ctx)
        base_seed = self._base_seed(ctx)
        params_of = {**profile.extra_body}
        first_keys: list[str] = []
        all_keys: list[str] = []
        chars = 0
        rows = frame.select("id", "task", "question", "context", "options", "answer").to_dicts()
        supported = 0
        for row in rows:
            template = COT_TEMPLATES.get(row["task"])
            if template is None:
                continue
            supported += 1
            messages = template.render(fields(row))
            chars += sum(len(m["content"]) for m in messages)
            for attempt in range(1, self.params.max_attempts + 1):
                k = call_key(profile.model, {**params_of, **self.gen_params(derive_seed(base_seed, row["id"], attempt))},
                             messages, template.version)
                (first_keys if attempt == 1 else all_keys).append(k)
        path = cache_path(self.params, ctx)
        hits_first = hits_retry = 0
        if Path(path).is_file():
            with CallCache(path) as cache:
                hits_first = len(cache.contains(first_keys))
                hits_retry = len(cache.contains(all_keys))
        to_pay = supported - hits_first
        tokens_in_per_call = chars / 4 / max(supported, 1)
        return {
            "step": self.name,
            "teacher": profile.public(),
            "rows": len(rows),
            "rows_unsupported_task": len(rows) - supported,
            "calls_min": supported,
            "calls_max": supported * self.params.max_attempts,
            "cache_hits": hits_first + hits_retry,
            "calls_to_pay_min": to_pay,
            "tokens_in_est": int(tokens_in_per_call * to_pay),
            "tokens_out_est": int(min(self.params.expected_completion_tokens, self.params.max_tokens) * to_pay),
            "tokens_out_max": self.params.max_tokens * (supported * self.params.max_attempts - hits_first - hits_retry),
        }
