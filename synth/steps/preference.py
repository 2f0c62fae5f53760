"""`preference` step: DPO pairs (`prompt`, `chosen`, `rejected`) sampled blind from a policy endpoint.

For every row the policy (the recipe's teacher, or another profile in `teacher:`, e.g. a smaller
student served the same way) answers the question N times without seeing the gold answer
(`synth.preference_prompts`). Sample k is always the call with seed derive(seed, row id, k), so it is
one cached call forever and raising N later pays only for the new samples. (One request per sample
rather than vLLM's `n`: with `n` the k-th sample would depend on N and on the server's batching.)

mode `verifiable` (mcq, yes_no_maybe): each sample's final `Answer:` is parsed and checked against
gold. `chosen` = a response that reaches the gold answer with a real explanation (the `cot` step's
checks), `rejected` = one that reaches a wrong answer; among several candidates the choice is seeded.
Rows without such a pair leave with `all_correct`, `all_wrong`, `no_parseable_answer`,
`no_usable_chosen`, `teacher_error` or `unsupported_task`.

mode `judge` (any task): each complete sample is scored 1-10 with the judge rubric and scoring of
`synth.steps.judge`; `chosen` = best, `rejected` = worst, kept when best - worst >= `min_margin`.
Rows leave with `tie`, `margin_below_threshold`, `too_few_scored` or `teacher_error`.

mode `safety` (red-team pairs, `synth.safety`): the `policy` endpoint answers each attacked prompt, the
judge rates it with the safety rubric; only judged-unsafe policy answers become `rejected`, against a
judged-safe answer the teacher writes under a safety system prompt. Rows leave with `policy_safe`,
`policy_empty`, `no_safe_chosen`, `judge_no_verdict`, `policy_error`, `judge_error` or `teacher_error`;
the report and card carry the policy's attack success rate per attack style and per topic.

Output columns follow TRL's conversational preference format: `prompt` (system + user turns, exactly
what the policy saw unless `system_in_prompt: false`), `chosen` and `rejected` (one assistant message
each). Every sample (text, finish reason, parsed answer, outcome, judge score) goes to the side-car.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import Field

from curate.record import MESSAGE
from curate.steps import BuildContext, Step, StepResult
from synth.cache import CallCache, call_key
from synth.client import TeacherClient, TeacherError, run_sync
from synth.config import CLI_OVERRIDES, TeacherProfile, resolve_teacher
from synth.pairs import (
    Pair,
    Sample,
    agreement_table,
    judge_pair,
    margin_table,
    pairs_table,
    status_table,
    verifiable_pair,
)
from synth.parse import find_answer, norm, parse_mcq, parse_score, parse_ynm
from synth.preference_prompts import BLIND_TEMPLATES, VERIFIABLE_TASKS, blind_messages
from synth.prompts import JUDGE, judge_fields
from synth.runner import TeacherStepParams, cache_path, derive_seed, map_rows, profile_for
from synth.steps.cot import verify
from synth.steps.judge import Judge

_MSGS = pl.List(MESSAGE)


def parse_answer(row: dict[str, Any], text: str) -> tuple[str | None, int | None]:
    """(parsed answer, start of the answer line) for a verifiable row; (None, None) when none parses."""
    found = find_answer(text)
    if found is None:
        return None, None
    if row["task"] == "mcq":
        return parse_mcq(found.text, row["options"] or []), found.start
    return parse_ynm(found.text), found.start


class Preference(Step):
    name = "preference"
    scope = "row"
    description = "DPO pairs sampled blind from a policy: verifiable (gold check) or judge-ranked"

    class Params(TeacherStepParams):
        teacher: str | dict[str, Any] | None = Field(
            default=None, description="the POLICY that is sampled (profile name or inline); default the recipe's "
            "teacher. A student served the same way gives on-policy pairs for that student")
        mode: Literal["verifiable", "judge", "safety"] = "verifiable"
        n: int = Field(default=4, ge=2, le=64, description="responses sampled per row")
        temperature: float = Field(default=0.8, ge=0, description="sampling temperature (diversity of the N samples)")
        top_p: float = Field(default=0.95, gt=0, le=1)
        max_tokens: int = Field(default=1024, gt=0)
        seed: int | None = Field(default=None, description="base seed; default the recipe seed")
        extra_body: dict[str, Any] = Field(default_factory=dict, description="extra request fields (vLLM: top_k, ...)")
        system_in_prompt: bool = Field(default=True, description="keep the system turn in the `prompt` column")
        min_new_words: int = Field(default=15, ge=0, description="verifiable: `chosen` needs this many words not in the question")
        max_copied: float = Field(default=0.6, ge=0, le=1, description="verifiable: max share of 5-grams copied from the question")
        judge: str | dict[str, Any] | None = Field(
            default=None, description="judge mode: judge profile, used as written (--teacher-url does not redirect "
            "it); default the recipe's teacher")
        min_margin: float = Field(default=2.0, gt=0, description="judge mode: keep a pair when best - worst >= this")
        judge_attempts: int = Field(default=2, ge=1, le=10, description="judge mode: re-asks when no score parses")
        judge_max_tokens: int = Field(default=256, gt=0)
        expected_completion_tokens: int = Field(default=350, gt=0, description="for --dry-run when the cache is empty")
        # mode `safety` (synth.safety): `teacher` writes the safe `chosen`, `policy` gives the unsafe `rejected`
        policy: str | dict[str, Any] | None = Field(
            default=None, description="safety mode: the model being aligned (profile); --policy-url/--policy-model")
        policy_system: str | None = Field(default=None, description="safety mode: system prompt the policy gets")
        policy_temperature: float = Field(default=0.7, ge=0)
        policy_max_tokens: int = Field(default=512, gt=0)
        safe_attempts: int = Field(default=3, ge=1, le=10, description="safety mode: teacher answers tried per row")
        rubric_file: str = Field(default="safety/judge_rubric.yaml", description="safety mode: judge rubric")
        safe_system_file: str = Field(default="safety/safe_answer.yaml", description="safety mode: teacher prompt")

    params: Params

    # -- params ---------------------------------------------------------------------------------------
    def gen_params(self, seed: int) -> dict[str, Any]:
        p = self.params
        return {**p.extra_body, "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens, "seed": seed}

    def _judge(self) -> Judge:
        """The judge step's own scoring setup (rubric, params), reused for ranking samples."""
        return Judge({"max_attempts": self.params.judge_attempts, "max_tokens": self.params.judge_max_tokens,
                      "seed": self.params.seed})

    def _base_seed(self, ctx: BuildContext) -> int:
        return self.params.seed if self.params.seed is not None else ctx.seed

    def _judge_profile(self, ctx: BuildContext) -> TeacherProfile:
        """An explicit `judge:` profile is its own endpoint; otherwise the recipe's teacher (with CLI overrides)."""
        if self.params.judge is not None:
            return resolve_teacher(self.params.judge)
        ref = getattr(ctx.recipe, "teacher", None) if ctx.recipe is not None else None
        return resolve_teacher(ref, {k: ctx.options.get(k) for k in CLI_OVERRIDES})

    def public_params(self) -> dict[str, Any]:
        p = self.params
        out: dict[str, Any] = {"mode": p.mode, "n": p.n, "temperature": p.temperature, "top_p": p.top_p,
                               "max_tokens": p.max_tokens}
        if p.extra_body:
            out["extra_body"] = p.extra_body
        if p.mode == "judge":
            out["min_margin"] = p.min_margin
        if p.mode == "safety":
            out["safe_attempts"] = p.safe_attempts
        return out

    # -- one row --------------------------------------------------------------------------------------
    def _classify(self, row: dict[str, Any], k: int, text: str, finish: str | None) -> Sample:
        s = Sample(k=k, text=text, finish_reason=finish)
        if finish == "length":
            s.status = "truncated"
            return s
        if not text.strip():
            return s  # unparsed
        if row["task"] not in VERIFIABLE_TASKS:
            s.status, s.final = "complete", text.strip()
            return s
        parsed, start = parse_answer(row, text)
        if parsed is None:
            return s
        s.parsed = parsed
        gold = str(row["answer"]).strip()
        right = parsed.casefold() == gold.casefold() if row["task"] == "mcq" else parsed == norm(gold)
        if right:
            verdict = verify(row, text, finish, min_new_words=self.params.min_new_words,
                             max_copied=self.params.max_copied)
            s.status, s.final = ("correct", verdict.cot) if verdict.cot is not None else ("echo", None)
        else:
            s.status = "wrong"
            s.final = f"{text[:start].strip()}\n\nAnswer: {parsed}"
        return s

    async def _sample(self, client: TeacherClient, row: dict[str, Any], base_seed: int) -> list[Sample]:
        template = BLIND_TEMPLATES[row["task"]]
        messages = blind_messages(row, system=True)
        calls = [client.chat(messages, self.gen_params(derive_seed(base_seed, row["id"], k)), template=template.version)
                 for k in range(1, self.params.n + 1)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        out = []
        for k, res in enumerate(results, 1):
            if isinstance(res, TeacherError):
                out.append(Sample(k=k, text=None, status="error", error=str(res)))
            elif isinstance(res, BaseException):
                raise res
            else:
                out.append(self._classify(row, k, res.text, res.finish_reason))
        return out

    async def _score(self, judge_client: TeacherClient, judge: Judge, row: dict[str, Any], s: Sample,
                     base_seed: int) -> None:
        """Score one sample with the judge rubric; re-ask with a new seed when no score parses."""
        messages = JUDGE.render(judge_fields(row, s.final or ""))
        for attempt in range(1, judge.params.max_attempts + 1):
            try:
                comp = await judge_client.chat(
                    messages, judge.gen_params(derive_seed(base_seed, f"{row['id']}:{s.k}", attempt)),
                    template=JUDGE.version,
                )
            except TeacherError as err:
                s.status, s.error = "error", f"judge: {err}"
                return
            score = parse_score(comp.text)
            if score is not None:
                s.score = score
                return
        s.status = "no_score"

    async def _row(self, client: TeacherClient, judge_client: TeacherClient | None, judge: Judge,
                   row: dict[str, Any], base_seed: int) -> tuple[list[Sample], Pair]:
        p = self.params
        if row["task"] not in BLIND_TEMPLATES or (p.mode == "verifiable" and row["task"] not in VERIFIABLE_TASKS):
            return [], Pair(reason="unsupported_task", detail=f"mode {p.mode!r} does not handle task {row['task']!r}")
        samples = await self._sample(client, row, base_seed)
        if p.mode == "verifiable":
            return samples, verifiable_pair(samples, base_seed, row["id"])
        assert judge_client is not None
        for s in samples:  # judge mode: every complete, non-empty response competes, right or wrong
            if s.status not in ("error", "truncated") and s.text and s.text.strip():
                s.final = s.final or s.text.strip()
        todo = [s for s in samples if s.final]
        await asyncio.gather(*(self._score(judge_client, judge, row, s, base_seed) for s in todo))
        return samples, judge_pair(samples, base_seed, row["id"], p.min_margin)

    # -- apply ----------------------------------------------------------------------------------------
    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p = self.params
        if p.mode == "safety":
            from synth.safety import run_safety

            return run_safety(self, frame, ctx)
        policy = profile_for(p, ctx)
        judge_profile = self._judge_profile(ctx) if p.mode == "judge" else None
        judge = self._judge()
        base_seed = self._base_seed(ctx)
        rows = frame.select("id", "task", "question", "context", "options", "answer").to_dicts()

        async def run() -> tuple[list[tuple[list[Sample], Pair]], dict[str, Any]]:
            cache = CallCache(cache_path(p, ctx))
            try:
                async with contextlib.AsyncExitStack() as stack:
                    # `n` samples a row (and as many judge calls): large frames get the HTTP helper process
                    calls = len(rows) * p.n
                    client = await stack.enter_async_context(
                        TeacherClient(policy, cache, seed=base_seed, expected_calls=calls))
                    judge_client = None
                    if judge_profile is not None:
                        same = judge_profile == policy
                        judge_client = client if same else await stack.enter_async_context(
                            TeacherClient(judge_profile, cache, seed=base_seed, expected_calls=calls))
                    outs = await map_rows(rows, lambda c, r: self._row(c, judge_client, judge, r, base_seed),
                                          client, ctx, f"preference ({p.mode})", p.log_every_s)
                    stats = {"policy": client.stats.as_dict()}
                    if judge_client is not None and judge_client is not client:
                        stats["judge"] = judge_client.stats.as_dict()
                    return outs, stats
            finally:
                cache.close()

        outs, client_stats = run_sync(run) if rows else ([], {})
        return self._result(frame, rows, outs, client_stats, policy, judge_profile)

    def _result(self, frame: pl.DataFrame, rows: list[dict[str, Any]], outs: list[tuple[list[Sample], Pair]],
                client_stats: dict[str, Any], policy: TeacherProfile, judge_profile: TeacherProfile | None) -> StepResult:
        p = self.params
        pairs = [pair for _, pair in outs]
        keep = [pair.reason is None for pair in pairs]
        prompts, chosen, rejected = [], [], []
        for row, (samples, pair), k in zip(rows, outs, keep, strict=True):
            if not k:
                continue
            by_k = {s.k: s for s in samples}
            prompts.append(blind_messages(row, system=p.system_in_prompt))
            chosen.append([{"role": "assistant", "content": by_k[pair.chosen].final}])  # type: ignore[index]
            rejected.append([{"role": "assistant", "content": by_k[pair.rejected].final}])  # type: ignore[index]
        mask = pl.Series(keep, dtype=pl.Boolean)
        kept = frame.filter(mask).with_columns(
            pl.Series("prompt", prompts, dtype=_MSGS),
            pl.Series("chosen", chosen, dtype=_MSGS),
            pl.Series("rejected", rejected, dtype=_MSGS),
        )
        rejected_rows = frame.filter(~mask).with_columns(
            pl.Series("reason", [pr.reason for pr in pairs if pr.reason is not None], dtype=pl.Utf8),
            pl.Series("detail", [pr.detail for pr in pairs if pr.reason is not None], dtype=pl.Utf8),
        )

        verifiable = p.mode == "verifiable"
        n_correct = [sum(s.status in ("correct", "echo") for s in samples) if samples else None
                     for samples, _ in outs] if verifiable else [None] * len(outs)
        scores = pl.DataFrame({
            "id": frame["id"],
            "pref_mode": pl.Series([p.mode] * len(outs), dtype=pl.Utf8),
            "pref_outcome": pl.Series([pr.reason or "kept" for pr in pairs], dtype=pl.Utf8),
            "pref_samples": pl.Series([[s.text for s in smp] for smp, _ in outs], dtype=pl.List(pl.Utf8)),
            "pref_finish": pl.Series([[s.finish_reason for s in smp] for smp, _ in outs], dtype=pl.List(pl.Utf8)),
            "pref_parsed": pl.Series([[s.parsed for s in smp] for smp, _ in outs], dtype=pl.List(pl.Utf8)),
            "pref_status": pl.Series([[s.status for s in smp] for smp, _ in outs], dtype=pl.List(pl.Utf8)),
            "pref_scores": pl.Series([[s.score for s in smp] for smp, _ in outs], dtype=pl.List(pl.Float64)),
            "pref_n_correct": pl.Series(n_correct, dtype=pl.Int32),
            "pref_chosen_k": pl.Series([pr.chosen for pr in pairs], dtype=pl.Int32),
            "pref_rejected_k": pl.Series([pr.rejected for pr in pairs], dtype=pl.Int32),
            "pref_margin": pl.Series([pr.margin for pr in pairs], dtype=pl.Float64),
        })

        tables = [pairs_table([r["task"] for r in rows], keep)]
        if verifiable:
            tables.insert(0, agreement_table(n_correct, p.n, keep))
        else:
            tables.insert(0, margin_table([pr.margin for pr in pairs], keep, p.min_margin))
        tables.append(status_table([[s.status for s in smp] for smp, _ in outs]))
        stats: dict[str, Any] = {
            "teacher": {"model": policy.model, "params": self.public_params()},
            "mode": p.mode,
            "pairs": int(sum(keep)),
            "templates": {task: t.version for task, t in BLIND_TEMPLATES.items()},
            "client": client_stats,
            "report_tables": tables,
        }
        if verifiable:
            stats["agreement"] = {str(n): int(c) for n, c in sorted(
                pl.Series(n_correct, dtype=pl.Int32).drop_nulls().value_counts().rows())}
        else:
            assert judge_profile is not None
            stats["judge"] = {"model": judge_profile.model, "template": JUDGE.version,
                              "params": {"max_tokens": p.judge_max_tokens, "max_attempts": p.judge_attempts}}
            margins = [pr.margin for pr, k in zip(pairs, keep, strict=True) if k]
            stats["mean_margin"] = round(sum(margins) / len(margins), 3) if margins else None
        return StepResult(kept=kept, rejected=rejected_rows, scores=scores, stats=stats)

    # -- dry run --------------------------------------------------------------------------------------
    def estimate(self, frame: pl.DataFrame, ctx: BuildContext) -> dict[str, Any]:
        """Rows, sampling calls (and judge calls at most), tokens in/out, sampling calls already cached."""
        p = self.params
        if p.mode == "safety":
            from synth.safety import estimate_safety

            return estimate_safety(self, frame, ctx)
        profile = profile_for(p, ctx)
        base_seed = self._base_seed(ctx)
        keys, chars, supported = [], 0, 0
        for row in frame.select("id", "task", "question", "context", "options", "answer").to_dicts():
            if row["task"] not in BLIND_TEMPLATES or (p.mode == "verifiable" and row["task"] not in VERIFIABLE_TASKS):
                continue
            supported += 1
            template = BLIND_TEMPLATES[row["task"]]
            messages = blind_messages(row, system=True)
            chars += sum(len(m["content"]) for m in messages)
            for k in range(1, p.n + 1):
                params = {**profile.extra_body, **self.gen_params(derive_seed(base_seed, row["id"], k))}
                keys.append(call_key(profile.model, params, messages, template.version))
        path = cache_path(p, ctx)
        hits = 0
        if Path(path).is_file():
            with CallCache(path) as cache:
                hits = len(cache.contains(keys))
        to_pay = len(keys) - hits
        out = {
            "step": self.name, "mode": p.mode, "teacher": profile.public(), "rows": frame.height,
            "rows_unsupported_task": frame.height - supported, "samples_per_row": p.n,
            "calls_min": len(keys), "cache_hits": hits, "calls_to_pay_min": to_pay,
            "tokens_in_est": int(chars / 4 / max(supported, 1) * to_pay),
            "tokens_out_est": int(min(p.expected_completion_tokens, p.max_tokens) * to_pay),
        }
        if p.mode == "judge":
            out["judge_calls_max"] = len(keys) * p.judge_attempts
        return out
