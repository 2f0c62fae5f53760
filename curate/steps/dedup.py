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

Out of core (issue 12): `decide` walks the key parts once (exact-key hashes kept, band keys and shingle sets
spilled per part, `curate.near_pairs`), buckets and verifies pairs window by window, resolves the keep rule
over spilled edges (`curate.steps.dedup_resolve`) and returns a `DedupDecision` of 17 B a row. Measured on
the derived MedMCQA scale rows: the step peaked at 2.6 GB at 1M rows and 4.5 GB at 2M in memory; out of core
about 0.9 GB and 1.0 GB (busy machine; `benchmarks/scale.py` has the build figures), same decisions.
The per-part scan is the pure `scan_part` (a `PartScan` per part, its files named by the part's first row),
mapped with `map_parts`: Ray tasks under `--executor ray`, folded into `_Scan` in part order either way.
In process the scan uses one core (100k derived rows: 4.2 s wall, 4.2 s CPU), so tasks divide it by the
cluster's CPUs: on a quiet 2-core machine, 200k rows in 8 parts, 6.3 s in process, 4.1 s as Ray tasks
(`benchmarks/global_passes.py`, medians of 3); at 1M rows the step took 63.4 s local, 53.1 s under Ray.
"""

from __future__ import annotations

import glob
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curate.errors import InputError, ReconciliationError
from curate.minhash import optimal_bands, sorted_unique
from curate.near_pairs import GroupPart, SetCache, candidate_windows, pair_blocks, spill_part, verify_block
from curate.record import MESSAGE, OPTION
from curate.steps import BuildContext, Step, StepParams, StepResult
from curate.steps.dedup_decision import EXACT, KEPT, NEAR, DedupDecision
from curate.steps.dedup_resolve import EDGE, EdgeStore, orient, resolve_clusters
from curate.steps.keyed import ROW, KeyParts, decide_rows, map_parts
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


def _default_settings(p: DedupParams) -> TaskDedup:
    return TaskDedup(key="question_answer", ngram=p.ngram, num_perm=p.num_perm, bands=p.bands, rows=p.rows,
                     threshold=p.threshold, norm_numbers=False)


def _bands(t: TaskDedup) -> tuple[int, int]:
    return optimal_bands(t.threshold, t.num_perm) if t.bands is None or t.rows is None else (t.bands, t.rows)


def _group_stats(t: TaskDedup, p: DedupParams, seed: int) -> dict[str, Any]:
    bands, rows_per_band = _bands(t)
    return {"key": t.key, "ngram": t.ngram, "ngram_unit": "word", "num_perm": t.num_perm, "bands": bands,
            "rows": rows_per_band, "threshold": t.threshold, "seed": seed, "verify": p.verify,
            "min_option_jaccard": p.min_option_jaccard,
            "norm_numbers": t.norm_numbers, "hash": "xxh3-64 words, multiply-shift permutations (curate.minhash)",
            "rows_compared": 0, "candidate_pairs": 0, "verified_pairs": 0}


def _prepared(keys: pl.DataFrame) -> pl.DataFrame:
    """A key part with every column dedup reads (absent ones null) and the gold answer as text."""
    here = keys.with_columns(*[pl.lit(None, dtype=pl.List(MESSAGE) if c == "turns" else pl.Utf8).alias(c)
                               for c in ("task", "turns", "context", "explanation") if c not in keys.columns])
    if "has_explanation" not in here.columns:
        here = here.with_columns(HAS_EXPLANATION.alias("has_explanation"))
    return here.with_columns(answer_texts(here).alias("_answer_text"))


@dataclass
class PartScan:
    """One key part's scan, a pure function of the part (`scan_part`; under `--executor ray` a Ray task):
    exact-key hashes, the explanation flag, the spilled ids and each settings group's spilled rows."""

    k1: np.ndarray
    k2: np.ndarray
    has_exp: np.ndarray
    first: int | None  # the part's first row number; None for an empty part (it spills nothing)
    ids: Path | None
    groups: dict[str, GroupPart]


@dataclass
class _Scan:
    """What the pass over the key parts keeps: 18 bytes a row, plus the spilled group parts."""

    k1: list[np.ndarray] = field(default_factory=list)
    k2: list[np.ndarray] = field(default_factory=list)
    has_exp: list[np.ndarray] = field(default_factory=list)
    ids: list[tuple[int, Path]] = field(default_factory=list)  # (first row, ids file) per non-empty part
    groups: dict[str, list[GroupPart]] = field(default_factory=dict)
    n: int = 0  # rows scanned so far

    def add(self, part: PartScan) -> None:
        """Fold the next part's scan in (parts in order: numbered by the rows before them)."""
        if part.first not in (None, self.n):
            raise ReconciliationError(f"dedup: a key part starts at row {part.first}, expected {self.n}: key "
                                      f"parts must come in order, numbered `{ROW}` by the rows before them")
        self.k1.append(part.k1)
        self.k2.append(part.k2)
        self.has_exp.append(part.has_exp)
        if part.ids is not None:
            self.ids.append((self.n, part.ids))
        for gname, gp in part.groups.items():
            self.groups.setdefault(gname, []).append(gp)
        self.n += part.k1.shape[0]


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
        return decide_rows(self, frame, ctx)

    def settings(self) -> list[tuple[str, TaskDedup]]:
        """(group, settings): the default group first, then one per task in `per_task`."""
        p: DedupParams = self.params  # type: ignore[assignment]
        return [("default", _default_settings(p)), *p.per_task.items()]

    def decide(self, keys: KeyParts, ctx: BuildContext) -> DedupDecision:
        p: DedupParams = self.params  # type: ignore[assignment]
        seed = ctx.seed if p.seed is None else p.seed
        old = read_previous(p.against) if p.against else None
        n_old = old.height if old is not None else 0
        n = n_old + keys.height
        with ctx.scratch("dedup-") as tmp:
            tmp = tmp.resolve()  # Ray tasks spill here from their own working folders
            scan = _Scan()
            if n_old:  # rows of earlier builds (in memory) are scanned here, as the first part
                scan.add(scan_part(self.settings(), p, seed, tmp, 0,
                                   old.select(pl.col("id"), *self.reads(old.columns)).with_row_index(ROW)))
            for part in map_parts(keys, partial(scan_part, self.settings(), p, seed, tmp, n_old)):
                scan.add(part)
            is_old = np.zeros(n, dtype=bool)
            is_old[:n_old] = True
            has_exp = np.concatenate(scan.has_exp) if scan.has_exp else np.zeros(0, dtype=bool)
            scan.has_exp = []
            # priority: earlier build first, then rows with an explanation, then input order (lower = better)
            rank = np.empty(n, dtype=np.int64)
            rank[np.lexsort((np.arange(n), ~has_exp, ~is_old))] = np.arange(n)
            del has_exp
            rep = _exact_reps(scan, rank, n) if p.exact else np.arange(n, dtype=np.int64)
            code = np.where(rep != np.arange(n), EXACT, KEPT).astype(np.int8)
            sim = np.ones(n)
            stats: dict[str, Any] = {"exact": p.exact, "near": p.near, "against_rows": n_old}
            if p.near and n:
                store = EdgeStore(tmp / "edges")
                gstats = self._near(scan, rep == np.arange(n), is_old, rank, n, seed, store, tmp)
                near_rep, near_sim = resolve_clusters(n, store, None, rank)
                _follow(code, rep, sim, near_rep, near_sim)
                for gname, g in gstats.items():
                    if gname == "default":
                        stats.update(g)
                    else:
                        stats.setdefault("per_task", {})[gname] = g
            new = slice(n_old, n)
            pointed = sorted_unique(rep[new][code[new] != KEPT])
            rep_ids = _ids_of(pointed, scan.ids)
        stats["exact_duplicates"] = int(((code == EXACT) & ~is_old).sum())
        stats["near_duplicates"] = int(((code == NEAR) & ~is_old).sum())
        stats["clusters_with_duplicates"] = int(rep_ids["_rep_id"].n_unique())
        if stats.get("per_task"):
            stats["report_tables"] = [_settings_table(stats)]
        return DedupDecision(n_old, code, rep, sim, is_old, rep_ids, stats)

    def _near(self, scan: _Scan, alive: np.ndarray, is_old: np.ndarray, rank: np.ndarray, n: int, seed: int,
              store: EdgeStore, tmp: Path) -> dict[str, dict[str, Any]]:
        """Verified near-duplicate pairs of every settings group into `store`; the groups' stats."""
        p: DedupParams = self.params  # type: ignore[assignment]
        out = {}
        for gname, t in self.settings():
            parts = scan.groups.get(gname)
            if not parts:
                continue
            g = out[gname] = _group_stats(t, p, seed)
            g["rows_compared"] = int(sum(gp.rows.shape[0] for gp in parts))
            for gp in parts:
                gp.active = gp.active & alive[gp.rows]  # not in place: a Ray result's arrays are read-only
            _group_edges(parts, t, p, n, is_old, rank, store, tmp, g)
        return out


def scan_part(settings: list[tuple[str, TaskDedup]], p: DedupParams, seed: int, tmp: Path, offset: int,
              keys: pl.DataFrame) -> PartScan:
    """Exact-key hashes, the explanation flag and ids of one key part; each group's rows shingled, MinHashed,
    banded and spilled to `tmp`. Rows are numbered `offset + ROW`; files are named by the part's first row
    number, so they are unique and the same whichever process ran the part."""
    rows = _prepared(keys)
    key = exact_key_expr()
    hashed = rows.select(key.hash(1).alias("k1"), key.hash(2).alias("k2"))
    scan = PartScan(hashed["k1"].to_numpy(), hashed["k2"].to_numpy(),
                    rows["has_explanation"].fill_null(False).to_numpy(), None, None, {})
    if not rows.height:
        return scan
    numbers = offset + rows[ROW].cast(pl.Int64).to_numpy()
    scan.first = int(numbers[0])
    scan.ids = tmp / f"ids-{scan.first:010d}.arrow"
    rows.select("id").write_ipc(scan.ids)
    tasks = rows["task"].fill_null("")
    for gname, t in settings:
        member = ~tasks.is_in(list(p.per_task)) if gname == "default" else tasks == gname
        local = np.nonzero(member.to_numpy())[0]
        if local.size:
            scan.groups[gname] = _spill_group(rows[local], t, p, seed, tmp, f"{gname}-{scan.first:010d}",
                                              numbers[local])
    return scan


def _spill_group(rows: pl.DataFrame, t: TaskDedup, p: DedupParams, seed: int, tmp: Path, name: str,
                 numbers: np.ndarray) -> GroupPart:
    """One part's rows of one settings group: their key text shingled, MinHashed, banded and spilled."""
    if t.norm_numbers:
        rows = _zero_numbers(rows)
    text = rows.select((turns_text_expr() if t.key == "turns" else near_text_expr()).alias("t"))["t"]
    options = rows.select(option_texts_expr(sort=True).alias("o"))["o"] if p.min_option_jaccard > 0 else None
    bands, rows_per_band = _bands(t)
    return spill_part(tmp, name, numbers, text, options, ngram=t.ngram, num_perm=t.num_perm,
                      bands=bands, rows_per_band=rows_per_band, seed=seed, keep_sig=not p.verify)


def _group_edges(parts: list[GroupPart], t: TaskDedup, p: DedupParams, n: int, is_old: np.ndarray,
                 rank: np.ndarray, store: EdgeStore, tmp: Path, g: dict[str, Any]) -> None:
    """Candidate pairs of one group window by window, verified, oriented (better rank first) into `store`."""
    cache = SetCache()
    for w, codes in candidate_windows(parts, n, g["bands"], tmp):
        i, j = (codes // np.uint64(n)).astype(np.int64), (codes % np.uint64(n)).astype(np.int64)
        keep = ~(is_old[i] & is_old[j])  # old rows are never compared
        i, j = i[keep], j[keep]
        g["candidate_pairs"] += int(i.shape[0])
        for q, pos in pair_blocks(parts, i, j):
            ok, sim = verify_block(parts[w], parts[q], i[pos], j[pos], cache, verify=p.verify,
                                   min_option_jaccard=p.min_option_jaccard, threshold=t.threshold)
            u, v = orient(i[pos][ok], j[pos][ok], rank)
            store.add(u, v, sim[ok])
            g["verified_pairs"] += int(ok.sum())


def near_edges(rows: pl.DataFrame, t: TaskDedup, p: DedupParams, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Verified near-duplicate pairs (i < j, row positions) among `rows` with one group's settings, and their
    similarity: what the step compares, without the keep rule (benchmarks/dedup_parity.py clusters them)."""
    n = rows.height
    store = EdgeStore()
    with tempfile.TemporaryDirectory(prefix="dedup-") as tmp:
        if n:
            _group_edges([_spill_group(rows, t, p, seed, Path(tmp), "all", np.arange(n))], t, p, n,
                         np.zeros(n, dtype=bool), np.arange(n), store, Path(tmp), _group_stats(t, p, seed))
    chunks = list(store)
    edges = np.concatenate(chunks) if chunks else np.zeros(0, dtype=EDGE)
    return np.stack([edges["u"], edges["v"]], axis=1), edges["s"]


def _exact_reps(scan: _Scan, rank: np.ndarray, n: int) -> np.ndarray:
    """Per row, the best-ranked row with the same exact key (the key as two 64-bit hashes: 16 bytes a row,
    not the ~300-byte string; a false match needs a 128-bit collision)."""
    k1, k2 = np.concatenate(scan.k1), np.concatenate(scan.k2)
    scan.k1, scan.k2 = [], []  # 16 B a row, not needed past this point
    order = np.lexsort((rank, k2, k1))
    k1, k2 = k1[order], k2[order]
    first = np.ones(n, dtype=bool)
    first[1:] = (k1[1:] != k1[:-1]) | (k2[1:] != k2[:-1])
    del k1, k2
    rep = np.empty(n, dtype=np.int64)
    rep[order] = order[first][np.cumsum(first) - 1]
    return rep


def _follow(code: np.ndarray, rep: np.ndarray, sim: np.ndarray, near_rep: np.ndarray, near_sim: np.ndarray) -> None:
    """Near duplicates leave; exact duplicates of a row that left as a near duplicate point at the row it
    duplicates."""
    n = rep.shape[0]
    alive = rep == np.arange(n)
    moved = alive & (near_rep != np.arange(n))
    rep[moved], sim[moved], code[moved] = near_rep[moved], near_sim[moved], NEAR
    exact_rows = ~alive
    follow = exact_rows & (near_rep[rep] != rep)
    sim[follow] = near_sim[rep[follow]]
    code[follow] = NEAR
    rep[exact_rows] = near_rep[rep[exact_rows]]


def _ids_of(rows: np.ndarray, files: list[tuple[int, Path]]) -> pl.DataFrame:
    """`_rep`, `_rep_id` for the given row numbers (sorted), read back from the spilled id files (the earlier
    builds' rows have theirs too: they are scanned as the first part)."""
    frames = []
    for k, (start, path) in enumerate(files):
        end = files[k + 1][0] if k + 1 < len(files) else None
        mine = rows[(rows >= start) & (True if end is None else rows < end)]
        if mine.size:
            ids = pl.read_ipc(path)["id"]
            frames.append(pl.DataFrame({"_rep": mine, "_rep_id": ids.gather(mine - start)}))
    return pl.concat(frames) if frames else pl.DataFrame(schema={"_rep": pl.Int64, "_rep_id": pl.Utf8})


def _settings_table(stats: dict[str, Any]) -> dict[str, Any]:
    groups = ({"default": {k: stats[k] for k in ("key", "ngram", "bands", "rows", "threshold", "norm_numbers",
                                                 "rows_compared", "candidate_pairs", "verified_pairs")}}
              if "key" in stats else {})
    groups |= stats["per_task"]
    return {
        "title": "Near-duplicate settings per task",
        "header": ["task", "key text", "word n-gram", "bands x rows", "Jaccard threshold", "numbers as 0",
                   "rows compared", "candidate pairs", "verified pairs"],
        "rows": [[t, g["key"], g["ngram"], f"{g['bands']} x {g['rows']}", g["threshold"], g["norm_numbers"],
                  g["rows_compared"], g["candidate_pairs"], g["verified_pairs"]] for t, g in groups.items()],
    }
