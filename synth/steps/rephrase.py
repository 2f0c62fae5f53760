"""`decontaminate_rephrase`: the second decontamination pass, for benchmark questions that were reworded.

Runs after `decontaminate` (the 13-gram pass). For each row, BM25 (`curate.bench_retrieval`) retrieves the
`top_k` most similar benchmark items of the same sets `decontaminate` checks (the shipped pack by default);
candidates whose score is below `min_rel` of the item's score against its own text are dropped (a reworded
copy keeps most of the item's rare words; an unrelated question shares few), and the judge (a teacher
profile, every call cached) is asked, best candidate first, whether the row is that item reworded. Its reply
ends with `Verdict: same` or `Verdict: different`. A row judged `same` leaves with reason
`benchmark_rephrase` and detail `<set>:<item id> (judge: same; bm25 rank r, rel x)`; the side-car holds the
judge's reply. Defaults top_k=5, min_rel=0.4, from `benchmarks/decontamination.py` (seed 0): on 440
controlled rephrasings of pack items (40 per set) the 13-gram pass finds 0.364 (MedQA 0.000) and BM25
recall@5 after the gate is 1.000; of 600 real training questions 35% have a candidate past the gate (0.77
judge calls per clean row at most). min_rel 0.5 would send 20% (recall 0.998), 0.3 sends 58%.

Teacher: with `when: auto` (the shipped recipes) the pass runs only when a teacher is configured - the
step's `teacher:`, the recipe's `teacher:`, or `--teacher-url`/`--teacher-model` - and otherwise is skipped
LOUDLY: a warning, `stats.skipped`, and a line in the report. `when: always` uses the default profile.
A verdict that does not parse after `max_attempts` keeps the row and is counted (`unjudged`); a call that
fails for good rejects the row `teacher_error`, as in every teacher step.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from pydantic import Field

from curate.bench_retrieval import BenchRetriever
from curate.benchsets import BenchSelection, LoadedBenchmark
from curate.steps import BuildContext, Step, StepResult
from synth.client import TeacherClient, TeacherError
from synth.rephrase_prompts import REPHRASE_JUDGE, item_block, parse_verdict
from synth.runner import (
    OptionalTeacherParams,
    cache_path,
    derive_seed,
    profile_for,
    run_rows,
    skipped,
    teacher_source,
)

REASON = "benchmark_rephrase"
_ROW_COLS = ("id", "task", "question", "context", "options")


class RephraseParams(OptionalTeacherParams, BenchSelection):
    top_k: int = Field(5, ge=1, le=100, description="benchmark candidates retrieved per row")
    min_rel: float = Field(0.4, ge=0.0, description="candidate's BM25 score / the item's self-score, at least")
    max_attempts: int = Field(2, ge=1, le=10, description="re-asks (new seed) when no verdict parses")
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(200, gt=0)
    seed: int | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)


_RETRIEVERS: dict[tuple, tuple[BenchRetriever, list[LoadedBenchmark]]] = {}


def retriever_for(p: BenchSelection) -> tuple[BenchRetriever | None, list[LoadedBenchmark]]:
    """The BM25 index over the selected sets (built once per process and selection)."""
    loaded = p.load()  # cached per file set by curate.benchsets
    key = (p.model_dump_json(include=set(BenchSelection.model_fields)), tuple(b.where for b in loaded))
    if key not in _RETRIEVERS:
        frames = [b.frame for b in loaded if b.found and b.frame.height]
        items = pl.concat([f.select(pl.col("source").alias("bench"), pl.col("source_id").alias("bench_id"),
                                    "task", "question", "context", "options") for f in frames]) if frames else None
        _RETRIEVERS.clear()  # one selection at a time: the index of 16k items is ~100 MB
        _RETRIEVERS[key] = (BenchRetriever(items) if items is not None else None, loaded)
    return _RETRIEVERS[key][0], loaded


class DecontaminateRephrase(Step):
    name = "decontaminate_rephrase"
    scope = "global"
    description = "BM25 top-k benchmark candidates per row, a judge asks 'same question reworded?'; skipped without a teacher"
    Params = RephraseParams
    params: RephraseParams

    def gen_params(self, seed: int) -> dict[str, Any]:
        p = self.params
        return {**p.extra_body, "temperature": p.temperature, "max_tokens": p.max_tokens, "seed": seed}

    def _candidates(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[LoadedBenchmark], BenchRetriever | None]:
        retriever, loaded = retriever_for(self.params)
        if retriever is None or frame.height == 0:
            return pl.DataFrame(schema={"row": pl.Int64, "rank": pl.Int32, "item": pl.Int64}), loaded, retriever
        cands = retriever.top_k(frame, self.params.top_k).filter(pl.col("rel") >= self.params.min_rel)
        return cands, loaded, retriever

    async def _row(self, client: TeacherClient, job: dict[str, Any], base_seed: int) -> dict[str, Any]:
        train = item_block(job["row"])
        last = ""
        for cand in job["cands"]:
            messages = REPHRASE_JUDGE.render({"train": train, "bench": item_block(cand)})
            verdict = None
            for attempt in range(1, self.params.max_attempts + 1):
                seed = derive_seed(base_seed, f"{job['row']['id']}|{cand['bench']}:{cand['bench_id']}", attempt)
                try:
                    comp = await client.chat(messages, self.gen_params(seed), template=REPHRASE_JUDGE.version)
                except TeacherError as err:
                    return {"reason": "teacher_error", "detail": f"{cand['bench']}:{cand['bench_id']}: {err}"}
                verdict = parse_verdict(comp.text)
                if verdict is not None:
                    break
                last = comp.text.strip().replace("\n", " ")[:80]
            if verdict == "same":
                return {"reason": REASON, "cand": cand, "reply": comp.text.strip()[-400:],
                        "detail": f"{cand['bench']}:{cand['bench_id']} (judge: same; bm25 rank {cand['rank'] + 1}, "
                                  f"rel {cand['rel']:.2f})"}
            if verdict is None:
                job.setdefault("unjudged", []).append(f"{cand['bench']}:{cand['bench_id']}: last reply {last!r}")
        return {"reason": None, "unjudged": job.get("unjudged")}

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p = self.params
        source = teacher_source(p, ctx)
        if source is None:
            return self._skipped(frame, ctx)
        cands, loaded, retriever = self._candidates(frame)
        profile = profile_for(p, ctx)
        base_seed = p.seed if p.seed is not None else ctx.seed
        rows = frame.select([c for c in _ROW_COLS if c in frame.columns]).to_dicts()
        items = retriever.items if retriever is not None else None
        jobs = []
        for (r,), group in cands.group_by("row", maintain_order=True):
            cl = [dict(items.row(int(i), named=True), rank=int(k), rel=float(x))
                  for i, k, x in group.select("item", "rank", "rel").iter_rows()]
            jobs.append({"row": rows[int(r)], "pos": int(r), "cands": cl})
        outs, client_stats = run_rows(jobs, lambda c, j: self._row(c, j, base_seed), profile,
                                      cache_path(p, ctx), ctx, "rephrase judge", p.log_every_s, base_seed)
        reason: list[str | None] = [None] * frame.height
        detail: list[str | None] = [None] * frame.height
        hit_set: list[str | None] = [None] * frame.height
        hit_id: list[str | None] = [None] * frame.height
        reply: list[str | None] = [None] * frame.height
        unjudged = []
        for job, out in zip(jobs, outs, strict=True):
            i = job["pos"]
            reason[i], detail[i] = out["reason"], out.get("detail")
            if out.get("cand"):
                hit_set[i], hit_id[i], reply[i] = out["cand"]["bench"], str(out["cand"]["bench_id"]), out["reply"]
            unjudged += out.get("unjudged") or []
        tagged = frame.with_columns(pl.Series("reason", reason, dtype=pl.Utf8),
                                    pl.Series("detail", detail, dtype=pl.Utf8))
        kept = tagged.filter(pl.col("reason").is_null()).drop("reason", "detail")
        rejected = tagged.filter(pl.col("reason").is_not_null())
        judged = {j["pos"]: len(j["cands"]) for j in jobs}
        scores = pl.DataFrame({
            "id": frame["id"], "rephrase_bench": pl.Series(hit_set, dtype=pl.Utf8),
            "rephrase_bench_id": pl.Series(hit_id, dtype=pl.Utf8),
            "rephrase_candidates": pl.Series([judged.get(i, 0) for i in range(frame.height)], dtype=pl.Int32),
            "rephrase_verdict": pl.Series(reply, dtype=pl.Utf8),
        })
        table = self._table(frame.height, loaded, cands, hit_set)
        ctx.logger.info("decontaminate_rephrase: %d of %d rows sent to the judge (%d calls at most), %d "
                        "rephrased benchmark items rejected", len(jobs), frame.height, cands.height,
                        sum(x is not None for x in hit_set))
        stats = {
            "teacher": {"model": profile.model, "template": REPHRASE_JUDGE.version, "from": source},
            "top_k": p.top_k, "min_rel": p.min_rel, "rows_checked": frame.height, "rows_judged": len(jobs),
            "candidates": cands.height, "rephrased_hits": sum(x is not None for x in hit_set),
            "unjudged": len(unjudged), "unjudged_examples": unjudged[:5], "benchmarks": table,
            "client": client_stats,
        }
        return StepResult(kept=kept, rejected=rejected, scores=scores, stats=stats)

    @staticmethod
    def _table(rows: int, loaded: list[LoadedBenchmark], cands: pl.DataFrame, hit_set: list[str | None]
               ) -> dict[str, dict[str, Any]]:
        per = dict(cands.group_by("bench").len().iter_rows()) if cands.height and "bench" in cands.columns else {}
        hits: dict[str, int] = {}
        for b in hit_set:
            if b is not None:
                hits[b] = hits.get(b, 0) + 1
        return {b.name: {"rows": b.frame.height, "checked": rows if b.found else 0,
                         "candidates": int(per.get(b.name, 0)), "rephrased_hits": hits.get(b.name, 0),
                         "hit_rate": round(hits.get(b.name, 0) / rows, 6) if rows and b.found else 0.0,
                         "found": b.found, "where": b.where if b.found else None, "note": b.note}
                for b in loaded}

    def _skipped(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        return skipped(frame, ctx, "decontaminate_rephrase SKIPPED: no teacher configured, so reworded benchmark "
                       "questions were NOT checked (only the n-gram pass ran); give --teacher-url/--teacher-model "
                       "or a `teacher:`", "Rephrase decontamination")

    def estimate(self, frame: pl.DataFrame, ctx: BuildContext) -> dict[str, Any] | None:
        p = self.params
        if teacher_source(p, ctx) is None:
            return {"step": self.name, "rows": frame.height, "calls_min": 0, "calls_max": 0,
                    "note": "skipped: no teacher configured"}
        cands, _, _ = self._candidates(frame)
        profile = profile_for(p, ctx)
        n_rows = cands["row"].n_unique() if cands.height else 0
        return {"step": self.name, "teacher": profile.public(), "rows": frame.height, "rows_to_judge": n_rows,
                "calls_min": n_rows, "calls_max": cands.height * p.max_attempts,
                "tokens_in_est": int(cands.height * 450), "tokens_out_est": int(cands.height * min(80, p.max_tokens))}
