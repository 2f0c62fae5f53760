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
from synth.client import Completion, TeacherClient, TeacherError
from synth.parse import (
    copied_fraction,
    echo_measures,
    find_answer,
    norm,
    open_matches,
    parse_mcq,
    parse_ynm,
    words,
)
from synth.prompts import COT_TEMPLATES, fields
from synth.runner import TeacherStepParams, cache_path, derive_seed, profile_for, run_rows

COT_REASONS = ("wrong_answer", "no_answer", "echo", "truncated", "teacher_error", "unsupported_task")


@dataclass
class Verdict:
    cot: str | None
    reason: str | None
    detail: str | None


@dataclass
class RowOutcome:
    cot: str | None
    attempts: int
    reason: str | None
    detail: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: int = 0


def gold_display(row: dict[str, Any]) -> str:
    return str(row["answer"]).strip().lower() if row["task"] == "yes_no_maybe" else str(row["answer"]).strip()


def verify(row: dict[str, Any], text: str, finish_reason: str | None, *, min_new_words: int, max_copied: float) -> Verdict:
    """Decide one teacher reply for one row. A kept CoT ends with a canonical `Answer: X` line.

    Runs in the row's coroutine as each reply arrives. Issue 17c measured the alternatives on
    benchmarks/teacher_client.py (2,000 real MedQA calls, 512 in flight, three interleaved runs each, loaded
    2-core machine): sending each attempt as a wave and verifying the wave afterwards (same `verify`) gave the
    same CPU per call (0.255-0.257 ms against 0.249-0.263 per reply) and a slightly slower cache replay
    (0.072-0.075 against 0.065-0.071 ms), so the simpler per-reply loop stayed; the echo check as polars
    expressions (NFKD, regex tokenising, explode, join, runs per row) cost about 100 us a reply against about
    19 us for `words` + `echo_measures`. Issue 17d measured deciding each reply as soon as the client parsed
    it (before the wait for its cache commit, while its bytes were in the CPU caches): slower, 86 -> 93 us
    CPU a row for the step without HTTP (9 interleaved runs of 4,000 MedQA rows): the verifications of the
    replies one commit releases run back to back, which keeps this code hot. Issue 17 (later) measured verifying
    in a helper process (a ProcessPoolExecutor of one, items batched per loop turn): 4,191 -> 5,037 req/s, the
    event-loop thread 160 -> 111 us a call (5 interleaved runs, pyreqwest transport); not kept yet because
    multiprocessing's spawn and forkserver children re-run the parent's `__main__`, which breaks unguarded
    user scripts: it needs a `python -m` worker with its own framing."""
    if finish_reason == "length":
        return Verdict(None, "truncated", "finish_reason=length")
    found = find_answer(text)
    if found is None:
        return Verdict(None, "no_answer", "no `Answer:` line")
    task, gold = row["task"], str(row["answer"]).strip()
    if task == "mcq":
        got = parse_mcq(found.text, row["options"] or [])
        ok = got is not None and got.casefold() == gold.casefold()
    elif task == "yes_no_maybe":
        got = parse_ynm(found.text)
        ok = got is not None and got == norm(gold)
    else:
        got = found.text
        ok = open_matches(found.text, gold)
    if got is None:
        return Verdict(None, "no_answer", f"unparsable answer line {found.text[:60]!r}")
    if not ok:
        return Verdict(None, "wrong_answer", f"answered {str(got)[:60]!r}, gold {gold[:60]!r}")
    body = text[: found.start].strip()
    source = " ".join(
        [row.get("question") or "", row.get("context") or ""] + [o["text"] for o in row.get("options") or []]
    )
    body_words, source_words = words(body), words(source)
    new, copied = echo_measures(body_words, source_words, max_copied)  # copied None: at most max_copied
    if new < min_new_words or (copied is not None and copied > max_copied):
        if copied is None:
            copied = copied_fraction(body_words, source_words)
        return Verdict(None, "echo", f"{new} new words, {copied:.0%} copied from the question")
    final = found.text if task == "open_qa" else gold_display(row)
    return Verdict(f"{body}\n\nAnswer: {final}", None, None)


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
    async def _row(self, client: TeacherClient, row: dict[str, Any], base_seed: int) -> RowOutcome:
        template = COT_TEMPLATES.get(row["task"])
        if template is None:
            return RowOutcome(None, 0, "unsupported_task", f"no CoT template for task {row['task']!r}")
        first = row.get("_first")  # (messages, params, key) of attempt 1, from `_prefetch`
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
            verdict = Verdict(None, "no_answer", "empty reply")
            for choice in comp.choices:  # n > 1 (vLLM `n`): first acceptable sample wins
                verdict = verify(row, choice.text, choice.finish_reason,
                                 min_new_words=self.params.min_new_words, max_copied=self.params.max_copied)
                if verdict.cot is not None:
                    break
            if verdict.cot is not None:
                out.cot, out.reason, out.detail = verdict.cot, None, None
                return out
            out.reason, out.detail = verdict.reason, f"{attempt} attempt(s); last: {verdict.detail}"
        return out

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
        rows = frame.select("id", "task", "question", "context", "options", "answer").to_dicts()

        outs, client_stats = run_rows(rows, lambda c, r: self._row(c, r, base_seed), profile,
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
