"""`dedup`: exact duplicates on a normalised key, then MinHash-LSH near-duplicates.

Exact key: normalised question + context + sorted option texts + gold answer text (normalisation in
`curate.textnorm`: case, punctuation, spacing and option order never make two rows differ). The context is
part of the key so PubMedQA-style rows that ask the same question about different abstracts stay apart.

Near-duplicates: word `ngram`-shingles of question + context + sorted option texts (+ the answer for open
tasks), `num_perm` MinHash permutations, LSH with `bands` x `rows` (by default chosen to minimise false
positives + negatives around `threshold`), then (with `verify`) the exact Jaccard of every candidate pair
must reach `threshold`, and two MCQ rows must also share `min_option_jaccard` of their option words (a
shared stem or case text with different options — HEAD-QA's "The peptide bond:", two MedQA questions on one
abstract — is a different question).

Which rows are kept: verified pairs form connected components; inside each, rows are visited in priority
order - rows of an earlier build (`against`) first, then rows with a non-empty explanation, then input
order - and a row is kept unless it is a verified near duplicate of a row already kept (so no A~B~C chain
removes a C that is unlike A). Exact duplicates: the first row in the same priority order is kept.
`dup_cluster` = the id of the kept row a row duplicates (its own id when kept). Rejected rows carry
`exact_duplicate` or `near_duplicate` and detail = that kept id (+ Jaccard similarity to it).

Defaults (word bigrams, Jaccard 0.5, 128 permutations) come from `benchmarks/near_dup_quality.py`: on
labelled pairs from the real files they give F1 0.99 against typos, lead-ins and option shuffles, with no
distinct question merged; 3-grams at 0.7 (a common web-text setting) miss a third of the typo copies.

Per task (issue 11, Aloe arXiv 2505.04388 §3): `per_task` gives rows of a task their own MinHash settings
and key text. Defaults are the paper's (datatrove's MinHash defaults: word 5-grams, 14 bands x 8 rows =
112 permutations, Jaccard 0.72) on question + context + answer for `open_qa` and `summarization`, and on
the speaker-joined turns (`user: ... assistant: ...`) at 0.77 for `dialogue`; `mcq` / `yes_no_maybe` keep
the settings above, tuned on the real MCQ files. Near duplicates are looked for within one settings group
(exact duplicates across all rows). `benchmarks/dedup_parity.py` checks the Aloe settings against
datatrove's own MinHash on the same rows.

`against`: build folders (their `data/*.parquet`), parquet files or globs of an earlier build or published
version. Their rows are never rejected or compared among themselves: only new rows are checked against them.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curate.errors import InputError
from curate.minhash import (
    candidate_pairs,
    estimated_jaccard,
    exact_jaccard,
    optimal_bands,
    signatures,
    text_shingles,
)
from curate.record import MESSAGE, OPTION
from curate.steps import BuildContext, Step, StepParams, StepResult
from curate.textnorm import answer_texts, join_expr, norm_expr, option_texts_expr


class TaskDedup(BaseModel):
    """MinHash settings and key text for the rows of one task."""

    model_config = ConfigDict(extra="forbid")
    key: Literal["question_answer", "turns"] = "question_answer"
    ngram: int = Field(5, ge=1, le=20)
    num_perm: int = Field(112, ge=8, le=1024)
    bands: int | None = Field(14, ge=1)
    rows: int | None = Field(8, ge=1)
    threshold: float = Field(0.72, gt=0.0, le=1.0)
    #: Every number counts as the same word, as datatrove's text normalisation does by default
    #: ("Convert 5 km" ~ "Convert 7 km"); off for MCQ (the default group), where doses and values matter.
    norm_numbers: bool = True


NUMBER = r"\p{N}+(?:[.,\x{066B}]\p{N}+)*"


def _zero_numbers(rows: pl.DataFrame) -> pl.DataFrame:
    msg = pl.element().struct
    return rows.with_columns(
        *[pl.col(c).str.replace_all(NUMBER, "0") for c in ("question", "context", "answer")],
        pl.col("turns").list.eval(pl.struct(msg.field("role"), msg.field("content").str.replace_all(NUMBER, "0"))),
    )


#: The Aloe paper's settings (datatrove MinHash defaults) per task; mcq / yes_no_maybe use the top level.
ALOE_PER_TASK: dict[str, TaskDedup] = {
    "open_qa": TaskDedup(),
    "summarization": TaskDedup(),
    "dialogue": TaskDedup(key="turns", threshold=0.77),
}


class DedupParams(StepParams):
    exact: bool = True
    near: bool = True
    ngram: int = Field(2, ge=1, le=20)  # word n-grams
    num_perm: int = Field(128, ge=8, le=1024)
    threshold: float = Field(0.5, gt=0.0, le=1.0)  # Jaccard similarity of the shingle sets
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)
    seed: int | None = None  # default: the build seed
    verify: bool = True  # exact Jaccard check of LSH candidate pairs
    min_option_jaccard: float = Field(0.5, ge=0.0, le=1.0)  # MCQ pairs: word Jaccard of their option texts
    against: list[str] = Field(default_factory=list)
    #: task -> settings for that task's rows; tasks not listed use the settings above. Given keys are
    #: merged over the defaults (`{dialogue: {threshold: 0.8}}` keeps the turns key); `task: null` drops
    #: a task's group (its rows then use the settings above).
    per_task: dict[str, TaskDedup] = Field(default_factory=lambda: dict(ALOE_PER_TASK))

    @field_validator("per_task", mode="before")
    @classmethod
    def _merge_per_task(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged = {t: s.model_dump() for t, s in ALOE_PER_TASK.items()}
        for task, given in value.items():
            if given is None:
                merged.pop(task, None)
            elif isinstance(given, dict):
                merged[task] = {**merged.get(task, {}), **given}
            else:
                merged[task] = given
        return merged

    @model_validator(mode="after")
    def _bands_rows(self) -> DedupParams:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both `bands` and `rows`, or neither (then they are chosen from `threshold`)")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


HAS_EXPLANATION = pl.col("explanation").fill_null("").str.strip_chars().str.len_chars() > 0


def near_text_expr() -> pl.Expr:
    """The text MinHash sees: question + context + sorted options (+ answer when there are no options)."""
    no_opts = pl.col("options").list.len().fill_null(0) == 0
    return join_expr(
        norm_expr(pl.col("question")),
        norm_expr(pl.col("context")),
        option_texts_expr(sort=True),
        pl.when(no_opts).then(norm_expr(pl.col("answer"))).otherwise(pl.lit("")),
    )


def turns_text_expr() -> pl.Expr:
    """Speaker-joined turns (`user ... assistant ...`, normalised); rows without turns fall back to QA text."""
    msg = pl.element().struct
    joined = pl.col("turns").list.eval(
        pl.concat_str(norm_expr(msg.field("role")), norm_expr(msg.field("content")), separator=" ")
    ).list.join(" ")
    has = pl.col("turns").list.len().fill_null(0) > 0
    return pl.when(has).then(joined).otherwise(near_text_expr())


def exact_key_expr() -> pl.Expr:
    return pl.concat_str(
        [norm_expr(pl.col("question")), norm_expr(pl.col("context")), option_texts_expr(sort=True),
         norm_expr(pl.col("_answer_text"))],
        separator="\x1f",
    )


def read_previous(paths: list[str]) -> pl.DataFrame:
    """Rows of earlier builds / published versions: build folders, parquet files or globs."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted((p / "data").glob("*.parquet")) or sorted(p.rglob("*.parquet"))
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(f) for f in glob.glob(str(p)))
        if not found:
            raise InputError("no parquet files found for dedup `against`", file=str(p), field="against",
                             hint="give a build folder (builds/<name>/<build-id>), a parquet file or a glob")
        files.extend(found)
    cols = ["id", "task", "question", "context", "options", "answer", "explanation", "turns"]
    frames = []
    for f in files:
        df = pl.read_parquet(f)
        absent = [c for c in ("id", "question") if c not in df.columns]
        if absent:
            raise InputError(f"column {absent[0]!r} missing", file=str(f), field=absent[0],
                             hint="`against` must point at medcurate build output (canonical columns)")
        for c in cols:
            if c not in df.columns:
                dtype = {"options": pl.List(OPTION), "turns": pl.List(MESSAGE)}.get(c, pl.Utf8)
                df = df.with_columns(pl.lit(None, dtype=dtype).alias(c))
        frames.append(df.select(cols).with_columns(pl.col("options").cast(pl.List(OPTION)),
                                                   pl.col("turns").cast(pl.List(MESSAGE))))
    return pl.concat(frames) if frames else pl.DataFrame()


#: Rounds of the vectorised greedy before the undecided rest is finished one row at a time. Real and
#: benchmark data settle in under 20 rounds (1M derived rows, 11M verified pairs: 9 rounds); only a long
#: chain of near duplicates ordered by priority (A~B~C~... ) needs more.
MAX_ROUNDS = 64


def resolve_clusters(n: int, edges: np.ndarray, sims: np.ndarray, rank: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Which kept row each row duplicates (itself when kept) and its similarity to it.

    Rows are visited best rank first; a row is kept unless it has a verified edge to a row already kept,
    in which case it points at the most similar such row (ties: the better-ranked one). So a row leaves
    only as the direct near duplicate of a kept row: no A~B~C chains where C is unlike A.

    The visit is computed in rounds over the edge arrays, not row by row: a row is kept once every
    better-ranked neighbour has left, and leaves once one of them is kept; that is the row-order result.
    At 1M rows and 11M pairs a Python dict of neighbours took 60 s and 1.8 GB; the rounds take a few
    seconds and a few arrays of the edge count.
    """
    target = np.arange(n, dtype=np.int64)
    sim = np.ones(n)
    if edges.shape[0] == 0:
        return target, sim
    a, b = edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)
    swap = rank[a] > rank[b]
    u, v = np.where(swap, b, a), np.where(swap, a, b)  # u ranks better than v
    state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, 2 left
    live = np.arange(u.shape[0])
    for _ in range(MAX_ROUNDS):
        if not live.size:
            break
        blocked = np.zeros(n, dtype=bool)
        blocked[v[live][state[u[live]] != 2]] = True
        state[(state == 0) & ~blocked] = 1
        hit = v[live][state[u[live]] == 1]
        state[hit] = 2
        live = live[state[v[live]] == 0]
    if live.size:
        _finish_in_order(state, u[live], v[live], rank)
    state[state == 0] = 1
    sel = (state[u] == 1) & (state[v] == 2)
    eu, ev, es = u[sel], v[sel], sims[sel]
    order = np.lexsort((rank[eu], -es, ev))  # per left row: most similar kept neighbour, then best rank
    first = np.ones(order.shape[0], dtype=bool)
    first[1:] = ev[order][1:] != ev[order][:-1]
    pick = order[first]
    target[ev[pick]] = eu[pick]
    sim[ev[pick]] = es[pick]
    return target, sim


def _finish_in_order(state: np.ndarray, u: np.ndarray, v: np.ndarray, rank: np.ndarray) -> None:
    """The rows still undecided after MAX_ROUNDS, one at a time in rank order (`u` ranks better than `v`)."""
    by_v = np.argsort(v, kind="stable")
    u, v = u[by_v], v[by_v]
    starts = np.searchsorted(v, np.arange(state.shape[0] + 1))
    todo = np.nonzero(state == 0)[0]
    for m in todo[np.argsort(rank[todo], kind="stable")].tolist():
        better = u[starts[m]:starts[m + 1]]
        state[m] = 2 if (state[better] == 1).any() else 1


def _default_settings(p: DedupParams) -> TaskDedup:
    return TaskDedup(key="question_answer", ngram=p.ngram, num_perm=p.num_perm, bands=p.bands, rows=p.rows,
                     threshold=p.threshold, norm_numbers=False)


def _near_edges(rows: pl.DataFrame, t: TaskDedup, p: DedupParams, seed: int, alive: np.ndarray,
                is_old: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Verified near-duplicate pairs (local indices) among `rows` with one group's settings, their Jaccard."""
    if t.bands is None or t.rows is None:
        bands, rows_per_band = optimal_bands(t.threshold, t.num_perm)
    else:
        bands, rows_per_band = t.bands, t.rows
    stats = {"key": t.key, "ngram": t.ngram, "ngram_unit": "word", "num_perm": t.num_perm, "bands": bands,
             "rows": rows_per_band, "threshold": t.threshold, "seed": seed, "verify": p.verify,
             "min_option_jaccard": p.min_option_jaccard,
             "norm_numbers": t.norm_numbers, "hash": "xxh3-64 words, multiply-shift permutations (curate.minhash)"}
    if t.norm_numbers:
        rows = _zero_numbers(rows)
    text = rows.select((turns_text_expr() if t.key == "turns" else near_text_expr()).alias("t"))["t"]
    sh = text_shingles(text, t.ngram)
    del text
    sig = signatures(sh, t.num_perm, seed)
    active = alive & (np.diff(sh.offsets) > 0)
    pairs = candidate_pairs(sig, bands, rows_per_band, active=active)
    pairs = pairs[~(is_old[pairs[:, 0]] & is_old[pairs[:, 1]])]  # old rows are never compared
    if p.verify:
        del sig  # 512 B a row, not needed to verify
        jac = exact_jaccard(sh, pairs)
    else:
        jac = estimated_jaccard(sig, pairs)
    ok = jac >= t.threshold
    if p.min_option_jaccard > 0 and pairs.shape[0]:
        # a shared stem or case text with different options is a different question
        osh = text_shingles(rows.select(option_texts_expr(sort=True).alias("o"))["o"], 1)
        both = (np.diff(osh.offsets)[pairs[:, 0]] > 0) & (np.diff(osh.offsets)[pairs[:, 1]] > 0)
        ok &= ~both | (exact_jaccard(osh, pairs) >= p.min_option_jaccard)
    stats.update({"rows_compared": int(rows.height), "candidate_pairs": int(pairs.shape[0]),
                  "verified_pairs": int(ok.sum())})
    return pairs[ok], jac[ok], stats


class Dedup(Step):
    name = "dedup"
    scope = "global"
    description = "exact and MinHash-LSH near-duplicate removal (within and across sources, against old builds)"
    Params = DedupParams

    def reads(self, columns: list[str]) -> list[pl.Expr]:
        """The key columns; the explanation only as whether there is one (it decides which copy stays)."""
        keep = [pl.col(c) for c in ("task", "question", "context", "options", "answer", "turns") if c in columns]
        return keep + ([HAS_EXPLANATION.alias("has_explanation")] if "explanation" in columns else [])

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        p: DedupParams = self.params  # type: ignore[assignment]
        seed = ctx.seed if p.seed is None else p.seed
        old = read_previous(p.against) if p.against else None
        n_old = old.height if old is not None else 0
        cols = ["id", "task", "question", "context", "options", "answer", "has_explanation", "turns"]
        here = frame.with_columns(*[pl.lit(None, dtype=pl.List(MESSAGE) if c == "turns" else pl.Utf8).alias(c)
                                    for c in ("task", "turns", "context", "explanation") if c not in frame.columns])
        if "has_explanation" not in here.columns:
            here = here.with_columns(HAS_EXPLANATION.alias("has_explanation"))
        if n_old:
            old = old.with_columns(HAS_EXPLANATION.alias("has_explanation"))
        rows = pl.concat([old.select(cols), here.select(cols)]) if n_old else here.select(cols)
        rows = rows.with_columns(answer_texts(rows).alias("_answer_text"))
        n = rows.height
        is_old = np.zeros(n, dtype=bool)
        is_old[:n_old] = True
        has_exp = rows["has_explanation"].to_numpy()
        # priority: earlier build first, then rows with an explanation, then input order (lower = better)
        priority = np.lexsort((np.arange(n), ~has_exp, ~is_old))
        rank = np.empty(n, dtype=np.int64)
        rank[priority] = np.arange(n)

        rep = np.arange(n)  # representative (kept) row of each row's cluster
        reason = np.array([None] * n, dtype=object)
        sim = np.ones(n)
        stats: dict = {"exact": p.exact, "near": p.near, "against_rows": n_old}

        # ---- exact duplicates ------------------------------------------------------------------------
        if p.exact and n:
            # the key as two 64-bit hashes (16 bytes a row, not the ~300-byte string; a false match needs a
            # 128-bit collision)
            key = exact_key_expr()
            keys = rows.select(key.hash(1).alias("k1"), key.hash(2).alias("k2"),
                               pl.Series("_rank", rank)).with_row_index("_i")
            best = (keys.sort("_rank").group_by("k1", "k2", maintain_order=True)
                    .agg(pl.col("_i").first().alias("_rep")))
            mapped = keys.join(best, on=["k1", "k2"], how="left").sort("_i")["_rep"].to_numpy().astype(np.int64)
            del keys, best
            dup = mapped != np.arange(n)
            rep[dup] = mapped[dup]
            reason[dup] = "exact_duplicate"

        # ---- near duplicates among the exact representatives, per settings group ---------------------
        if p.near and n:
            alive = rep == np.arange(n)
            tasks = rows["task"].fill_null("").to_numpy()
            groups = [("default", _default_settings(p), ~np.isin(tasks, list(p.per_task)))]
            groups += [(t, s, tasks == t) for t, s in p.per_task.items() if (tasks == t).any()]
            all_edges, all_sims = [], []
            for gname, settings, member in groups:
                idx = np.nonzero(member)[0]
                if not idx.size:
                    continue
                sub = rows if idx.size == n else rows[idx]  # one group: no copy of every key text
                edges, sims, gstats = _near_edges(sub, settings, p, seed, alive[idx], is_old[idx])
                del sub
                all_edges.append(idx[edges])
                all_sims.append(sims)
                if gname == "default":
                    stats.update(gstats)
                else:
                    stats.setdefault("per_task", {})[gname] = gstats
            edges = np.concatenate(all_edges) if all_edges else np.zeros((0, 2), dtype=np.int64)
            sims = np.concatenate(all_sims) if all_sims else np.zeros(0)
            near_rep, near_sim = resolve_clusters(n, edges, sims, rank)
            moved = alive & (near_rep != np.arange(n))
            rep[moved] = near_rep[moved]
            sim[moved] = near_sim[moved]
            reason[moved] = "near_duplicate"
            # exact duplicates of a row that left as a near duplicate point at the row it duplicates
            exact_rows = ~alive
            follow = exact_rows & (near_rep[rep] != rep)
            sim[follow] = near_sim[rep[follow]]
            reason[follow] = "near_duplicate"
            rep[exact_rows] = near_rep[rep[exact_rows]]

        stats["exact_duplicates"] = int(((reason == "exact_duplicate") & ~is_old).sum())
        stats["near_duplicates"] = int(((reason == "near_duplicate") & ~is_old).sum())
        ids = rows["id"].to_numpy()
        cluster = ids[rep]
        new = slice(n_old, n)
        new_reason = reason[new]
        details = [
            None if r is None else
            f"{cid}{' (earlier build)' if rep_old else ''}"
            + (f" (jaccard {s:.2f})" if r == "near_duplicate" else "")
            for r, cid, rep_old, s in zip(new_reason, cluster[new], is_old[rep[new]], sim[new], strict=True)
        ]
        tagged = frame.with_columns(
            pl.Series("dup_cluster", cluster[new], dtype=pl.Utf8),
            pl.Series("_reason", new_reason.tolist(), dtype=pl.Utf8),
            pl.Series("_detail", details, dtype=pl.Utf8),
        )
        kept = tagged.filter(pl.col("_reason").is_null()).drop("_reason", "_detail")
        rejected = (
            tagged.filter(pl.col("_reason").is_not_null())
            .drop([] if "dup_cluster" in frame.columns else ["dup_cluster"])
            .rename({"_reason": "reason", "_detail": "detail"})
        )
        stats["clusters_with_duplicates"] = int(
            tagged.filter(pl.col("_reason").is_not_null())["dup_cluster"].n_unique()
        )
        if stats.get("per_task"):
            groups = ({"default": {k: stats[k] for k in ("key", "ngram", "bands", "rows", "threshold",
                                                          "norm_numbers", "rows_compared", "candidate_pairs",
                                                          "verified_pairs")}} if "key" in stats else {})
            groups |= stats["per_task"]
            stats["report_tables"] = [{
                "title": "Near-duplicate settings per task",
                "header": ["task", "key text", "word n-gram", "bands x rows", "Jaccard threshold", "numbers as 0",
                           "rows compared", "candidate pairs", "verified pairs"],
                "rows": [[t, g["key"], g["ngram"], f"{g['bands']} x {g['rows']}", g["threshold"], g["norm_numbers"],
                          g["rows_compared"], g["candidate_pairs"], g["verified_pairs"]] for t, g in groups.items()],
            }]
        scores = tagged.select("id", "dup_cluster", pl.Series("dup_similarity", sim[new]))
        return StepResult(kept, rejected, scores=scores, stats=stats)
