"""`score`: DEITA-style complexity (of the instruction) and quality (of the response), each 1-6.

As Aloe Beta (arXiv 2505.04388, §4.1.1) after DEITA: a scorer model served through the teacher API rates each
row twice. With `logprobs: true` (default) the request asks for the top 20 alternatives of the first token
and the score is the probability-weighted mean over the rating tokens "1".."6" (softmax over their
log-probabilities, as DEITA computes it; `synth.score_prompts.weighted_rating`); when the server returns no
usable logprobs the parsed digit is used, and `score_method` says which. `evol_score` = complexity x quality
(1-36). Scores are columns (`complexity_score`, `quality_score`, `evol_score`) and the side-car; the cut lives
in `filter` (`drop_bottom: 0.10`, `drop_bottom_by: evol_score`), so it can change without new calls. Rows the
scorer cannot score after `max_attempts` (no rating token, no digit) leave as `unscored` - Aloe discarded the
samples DEITA could not score; calls that fail for good leave as `teacher_error`.

Instruction = the user turns of `messages` when present, else context + question + options; response = the
CoT, else the last assistant message, else explanation + answer (`synth.steps.judge.response_of`).
"""

from __future__ import annotations

from typing import Any

import polars as pl
from pydantic import Field

from curate.steps import BuildContext, Step, StepResult
from synth.client import TeacherClient, TeacherError
from synth.prompts import fields
from synth.runner import (
    FrameRows,
    OptionalTeacherParams,
    cache_path,
    derive_seed,
    profile_for,
    run_rows,
    skipped,
    teacher_source,
)
from synth.score_prompts import COMPLEXITY, QUALITY, parsed_rating, weighted_rating
from synth.steps.judge import response_of

SCORES = ("complexity_score", "quality_score", "evol_score")
_COLS = ("id", "task", "question", "context", "options", "answer", "explanation", "cot", "messages")


def instruction_of(row: dict[str, Any]) -> str:
    users = [m["content"] for m in row.get("messages") or [] if m.get("role") == "user" and m.get("content")]
    if users:
        return "\n\n".join(users)
    f = fields(row)
    return f"{f['context']}{f['question']}" + (f"\n\n{f['options']}" if f["options"] and row.get("task") != "yes_no_maybe" else "")


def histogram(values: pl.Series, edges: list[float]) -> list[list[Any]]:
    """[[bin label, rows]] over left-closed bins [edges[i], edges[i+1]); the last bin is closed."""
    v = values.drop_nulls()
    out = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        last = i == len(edges) - 2
        n = int(((v >= lo) & ((v <= hi) if last else (v < hi))).sum())
        out.append([f"[{lo:g}, {hi:g}{']' if last else ')'}", n])
    return out


EDGES = {"complexity_score": [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6],
         "quality_score": [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6],
         "evol_score": [1, 4, 8, 12, 16, 20, 24, 28, 32, 36]}


class Score(Step):
    name = "score"
    scope = "row"
    description = "DEITA-style complexity and quality (1-6, logprob-weighted) and evol_score; cut in `filter`"

    class Params(OptionalTeacherParams):
        logprobs: bool = Field(True, description="ask for top-20 logprobs and use the weighted mean")
        top_logprobs: int = Field(20, ge=1, le=20)
        max_attempts: int = Field(2, ge=1, le=10, description="re-asks (new seed) when no rating is found")
        temperature: float = Field(0.0, ge=0)
        max_tokens: int = Field(4, gt=0)
        seed: int | None = None
        extra_body: dict[str, Any] = Field(default_factory=dict)

    params: Params

    def gen_params(self, seed: int) -> dict[str, Any]:
        p = self.params
        out = {**p.extra_body, "temperature": p.temperature, "max_tokens": p.max_tokens, "seed": seed}
        if p.logprobs:
            out.update(logprobs=True, top_logprobs=p.top_logprobs)
        return out

    async def _rate(self, client: TeacherClient, template, values: dict[str, str], key: str, base_seed: int
                    ) -> tuple[float | None, str | None, str]:
        """(rating, method or None, last reply); raises TeacherError."""
        messages = template.render(values)
        last = ""
        for attempt in range(1, self.params.max_attempts + 1):
            comp = await client.chat(messages, self.gen_params(derive_seed(base_seed, key, attempt)),
                                     template=template.version)
            weighted = weighted_rating(comp.choices[0].logprobs) if self.params.logprobs else None
            if weighted is not None:
                return weighted, "logprobs", comp.text
            parsed = parsed_rating(comp.text)
            if parsed is not None:
                return parsed, "parsed", comp.text
            last = comp.text.strip().replace("\n", " ")[:60]
        return None, None, last

    async def _row(self, client: TeacherClient, row: dict[str, Any], base_seed: int) -> dict[str, Any]:
        instruction = instruction_of(row)
        try:
            c, cm, clast = await self._rate(client, COMPLEXITY, {"instruction": instruction},
                                            f"{row['id']}|complexity", base_seed)
            q, qm, qlast = await self._rate(client, QUALITY, {"instruction": instruction,
                                                               "response": response_of(row)},
                                            f"{row['id']}|quality", base_seed)
        except TeacherError as err:
            return {"reason": "teacher_error", "detail": str(err)}
        if c is None or q is None:
            which = " and ".join(n for n, v in (("complexity", c), ("quality", q)) if v is None)
            last = clast if c is None else qlast
            return {"reason": "unscored", "detail": f"no {which} rating after {self.params.max_attempts} "
                                                    f"attempt(s); last reply {last!r}", "c": c, "q": q}
        method = cm if cm == qm else "mixed"
        return {"reason": None, "c": c, "q": q, "method": method}

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p = self.params
        if teacher_source(p, ctx) is None:
            return skipped(frame, ctx, "score SKIPPED: no teacher configured, so rows were NOT scored and no "
                           "quality cut can be made; give --teacher-url/--teacher-model or a `teacher:`",
                           "Quality scores")
        profile = profile_for(p, ctx)
        base_seed = p.seed if p.seed is not None else ctx.seed
        rows = FrameRows(frame.select([c for c in _COLS if c in frame.columns]))
        outs, client_stats = run_rows(rows, lambda cl, r: self._row(cl, r, base_seed), profile,
                                      cache_path(p, ctx), ctx, "score", p.log_every_s, base_seed)
        c = pl.Series("complexity_score", [o.get("c") for o in outs], dtype=pl.Float64)
        q = pl.Series("quality_score", [o.get("q") for o in outs], dtype=pl.Float64)
        tagged = frame.with_columns(c, q, (c * q).alias("evol_score"),
                                    pl.Series("reason", [o["reason"] for o in outs], dtype=pl.Utf8),
                                    pl.Series("detail", [o.get("detail") for o in outs], dtype=pl.Utf8))
        kept = tagged.filter(pl.col("reason").is_null()).drop("reason", "detail")
        rejected = tagged.filter(pl.col("reason").is_not_null()).drop(*SCORES)
        scores = tagged.select("id", *SCORES).with_columns(
            pl.Series("score_method", [o.get("method") for o in outs], dtype=pl.Utf8))
        methods = scores["score_method"].drop_nulls().value_counts().rows()
        stats = {
            "teacher": {"model": profile.model, "template": [COMPLEXITY.version, QUALITY.version],
                        "params": {"temperature": p.temperature, "max_tokens": p.max_tokens,
                                   "logprobs": p.logprobs}},
            "method": {str(k): int(v) for k, v in methods},
            "mean": {s: (round(float(kept[s].mean()), 4) if kept.height else None) for s in SCORES},
            "histograms": {s: histogram(kept[s], EDGES[s]) for s in SCORES},
            "client": client_stats,
            "report_tables": [{"title": f"Histogram of {s}", "header": ["bin", "rows"],
                               "rows": histogram(kept[s], EDGES[s])} for s in SCORES],
        }
        return StepResult(kept=kept, rejected=rejected, scores=scores, stats=stats)

    def estimate(self, frame: pl.DataFrame, ctx: BuildContext) -> dict[str, Any]:
        if teacher_source(self.params, ctx) is None:
            return {"step": self.name, "rows": frame.height, "calls_min": 0, "calls_max": 0,
                    "note": "skipped: no teacher configured"}
        profile = profile_for(self.params, ctx)
        chars = sum(len(instruction_of(r)) for r in frame.select([c for c in _COLS if c in frame.columns]).to_dicts())
        return {"step": self.name, "teacher": profile.public(), "rows": frame.height,
                "calls_min": 2 * frame.height, "calls_max": 2 * frame.height * self.params.max_attempts,
                "tokens_in_est": int(chars / 4 * 2 + 150 * 2 * frame.height),
                "tokens_out_est": int(self.params.max_tokens * 2 * frame.height)}
