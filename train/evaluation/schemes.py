"""Advanced inference schemes that lm-eval does not run: `sc-cot` and `medprompt`.

Both ask a served model through synth's `TeacherClient` and its persistent `CallCache` (one sqlite row
per completed call, committed at once), so a second evaluation pays for no call and a killed one resumes
with the calls it had finished. Answers are parsed by synth's parser (`questions.predict`).

- ``sc-cot`` (self-consistency chain of thought): ``samples`` CoT completions per question at
  ``temperature``, each a separate request with its own ``seed`` (seed + i) so every sample has its own
  cache key and a re-run asks for exactly the same samples; majority vote over parsed answers.
- ``medprompt``: the ``k`` nearest CoT examples of ``dataset`` (a registry tag or build folder; bm25s over
  the question text, nothing downloaded) as few-shot turns, ``ensembles`` calls per question with the
  options shuffled (ensemble 0 keeps the original order, the others are distinct orders while n! allows; yes/no/maybe questions are not shuffled, so at
  temperature 0 their ensembles are one cached call), each answer mapped back to the original label,
  majority vote. A question whose calls all fail counts as wrong and is counted in ``failed``.
"""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import InputError
from synth.cache import CACHE_FILE, CallCache
from synth.client import TeacherClient, TeacherError, run_sync
from synth.config import TeacherProfile
from synth.parse import find_answer
from train.evaluation.config import EvalRunConfig
from train.evaluation.questions import is_correct, majority, predict, user_prompt

TEMPLATE = "medcurate-eval-v1"  # part of every cache key: change it when a prompt changes


def profile(cfg: EvalRunConfig) -> TeacherProfile:
    return TeacherProfile(model=str(cfg.model), urls=[str(cfg.base_url)], api_key_env=cfg.api_key_env,
                          max_concurrency=cfg.concurrency, max_retries=3, backoff_base_s=0.2, backoff_max_s=5.0)


# ------------------------------------------------------------------------------------------ few-shot pool


class ExamplePool:
    """CoT examples from a dataset by tag, retrieved by bm25s over the question text."""

    def __init__(self, ref: str, split: str):
        from train.data import open_dataset

        try:
            ds, self.lineage = open_dataset(ref, split)
        except (KeyError, FileNotFoundError) as err:
            raise InputError(f"medprompt.dataset {ref}: {err}") from None
        missing = [c for c in ("question", "options", "answer", "cot") if c not in ds.column_names]
        if missing:
            raise InputError(f"medprompt.dataset {ref} lacks columns {missing}",
                             hint="use a CoT dataset (a recipe with the `cot` step, e.g. medqa-cot)")
        frame = pl.from_arrow(ds.data.table)
        frame = frame.select([c for c in ("question", "context", "options", "answer", "task", "cot") if c in frame.columns])
        self.rows = frame.filter(pl.col("cot").is_not_null() & pl.col("answer").is_not_null()).to_dicts()
        if not self.rows:
            raise InputError(f"medprompt.dataset {ref} has no rows with a CoT and an answer")
        import bm25s

        self._bm25 = bm25s.BM25()
        self._bm25.index(bm25s.tokenize([r["question"] for r in self.rows], show_progress=False),
                         show_progress=False)

    def nearest(self, questions: list[str], k: int) -> list[list[dict[str, Any]]]:
        import bm25s

        k = min(k, len(self.rows))
        if k == 0:
            return [[] for _ in questions]
        tokens = bm25s.tokenize(questions, return_ids=False, show_progress=False)
        idx, _ = self._bm25.retrieve(tokens, k=k, show_progress=False)
        return [[self.rows[i] for i in reversed(list(row))] for row in idx]  # nearest last, next to the question


def _example_turns(examples: list[dict[str, Any]]) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = []
    for ex in examples:
        cot = ex["cot"] if find_answer(ex["cot"]) else f"{ex['cot']}\n\nAnswer: {ex['answer']}"
        turns += [{"role": "user", "content": user_prompt(ex, cot=True)}, {"role": "assistant", "content": cot}]
    return turns


def _orders(n: int, ensembles: int, seed: str) -> list[list[int]]:
    """``ensembles`` option orders: the original first, then seeded random ones, all distinct while n! allows."""
    rng = random.Random(seed)
    orders = [list(range(n))]
    limit = math.factorial(n)
    while len(orders) < ensembles:
        perm = list(range(n))
        rng.shuffle(perm)
        if perm not in orders or len(orders) >= limit:
            orders.append(perm)
    return orders


def _relabel(row: dict[str, Any], order: list[int]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Options in ``order``, relabelled A, B, ...; and the map new label -> original label."""
    opts = row["options"]
    labels = [str(o["label"]) for o in opts]
    new = [{"label": labels[i], "text": opts[j]["text"]} for i, j in enumerate(order)]
    return new, {labels[i]: labels[j] for i, j in enumerate(order)}


# -------------------------------------------------------------------------------------------------- runs


async def _vote(client: TeacherClient, calls: list[tuple[list[dict[str, str]], dict[str, Any], Any]]
                ) -> tuple[str | None, list[str | None], int]:
    """Send a question's calls; (majority answer, each call's answer, failed calls)."""

    async def one(messages: list[dict[str, str]], params: dict[str, Any], decode: Any) -> str | None:
        comp = await client.chat(messages, params, template=TEMPLATE)
        return decode(comp.text)

    results = await asyncio.gather(*(one(m, p, d) for m, p, d in calls), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, TeacherError):
            raise r
    preds = [None if isinstance(r, BaseException) else r for r in results]
    return majority(preds), preds, sum(isinstance(r, BaseException) for r in results)


def _calls(cfg: EvalRunConfig, row: dict[str, Any], examples: list[dict[str, Any]]) -> list[tuple]:
    system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    if cfg.scheme == "sc-cot":
        msgs = [*system, {"role": "user", "content": user_prompt(row, cot=True)}]
        return [(msgs, {"temperature": cfg.sc_cot.temperature, "max_tokens": cfg.max_tokens, "seed": cfg.seed + i},
                 lambda text: predict(text, row)) for i in range(cfg.sc_cot.samples)]
    shots = [*system, *_example_turns(examples)]
    params = {"temperature": cfg.medprompt.temperature, "max_tokens": cfg.max_tokens}
    if row.get("task") == "yes_no_maybe":
        msgs = [*shots, {"role": "user", "content": user_prompt(row, cot=True)}]
        return [(msgs, params, lambda text: predict(text, row))] * cfg.medprompt.ensembles
    out = []
    for order in _orders(len(row["options"]), cfg.medprompt.ensembles, f"{cfg.seed}:{row['id']}"):
        opts, back = _relabel(row, order)
        msgs = [*shots, {"role": "user", "content": user_prompt(row, cot=True, options=opts)}]

        def decode(text: str, opts: list[dict[str, Any]] = opts, back: dict[str, str] | None = back) -> str | None:
            pred = predict(text, row, opts)
            return back.get(pred, pred) if back and pred else pred

        out.append((msgs, params, decode))
    return out


def run_scheme(cfg: EvalRunConfig, sets: dict[str, pl.DataFrame], cache_dir: Path
               ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """({benchmark: {"correct", "questions", "failed"}}, per-question records, client stats + pool lineage)."""
    pool = ExamplePool(cfg.medprompt.dataset, cfg.medprompt.split) \
        if cfg.scheme == "medprompt" and cfg.medprompt.k > 0 else None
    jobs = []
    for bench, frame in sets.items():
        rows = frame.to_dicts()
        shots = pool.nearest([r["question"] for r in rows], cfg.medprompt.k) if pool else [[] for _ in rows]
        jobs += [(bench, row, _calls(cfg, row, ex)) for row, ex in zip(rows, shots, strict=True)]
    cache_dir.mkdir(parents=True, exist_ok=True)

    async def go(cache: CallCache) -> tuple[list[Any], dict[str, Any]]:
        total = sum(len(job_calls) for _, _, job_calls in jobs)  # large runs get the HTTP helper process
        async with TeacherClient(profile(cfg), cache, seed=cfg.seed, expected_calls=total) as client:
            out = await asyncio.gather(*(_vote(client, calls) for _, _, calls in jobs))
            return out, client.stats.as_dict()

    with CallCache(cache_dir / CACHE_FILE) as cache:
        voted, stats = run_sync(lambda: go(cache))
    scores: dict[str, dict[str, Any]] = {b: {"correct": 0, "questions": 0, "failed": 0} for b in sets}
    records = []
    for (bench, row, _), (pred, preds, failed) in zip(jobs, voted, strict=True):
        ok = is_correct(pred, row)
        s = scores[bench]
        s["correct"] += ok
        s["questions"] += 1
        s["failed"] += failed == len(preds)
        records.append({"benchmark": bench, "id": row["id"], "answer": row["answer"], "prediction": pred,
                        "votes": preds, "correct": ok})
    extra: dict[str, Any] = {"client": stats}
    if pool is not None:
        extra["examples"] = pool.lineage.to_dict()
    return scores, records, extra
