"""`decontaminate`: reject training rows that overlap a benchmark test set (word n-grams).

Texts (normalised by `curate.textnorm.norm_expr`: case, punctuation and spacing ignored): the question,
the question + option texts in their order, and the question + option texts sorted (so shuffled options
still match). Benchmarks without options (PubMedQA) use the question alone.

Rule for a benchmark item with at least `ngram` words: a row is a hit when it contains at least
`min_overlap` of the item's informative n-grams (default 0.5 of its 13-grams). "Informative" drops the
boilerplate n-grams that occur in more than `max_item_frequency` benchmark items (e.g. MedQA's
"which of the following is the most likely ..."), so stock phrasing alone never makes a hit.

Rule for a short item (fewer than `ngram` words, e.g. "Is X valuable in Y?" + options): its whole
normalised text must appear, word-aligned, inside the row's text of the same kind (question + sorted options,
or the question alone); items shorter than `min_short_tokens` words are not checked (counted in stats).

Rule for any item with options: a row with the same normalised question and at least
`min_option_overlap` of the same option texts (Jaccard of the sets) is a hit - HEAD-QA repeats exam
questions across years with one option added or dropped, while its generic stems ("The peptide bond:")
with other options are different questions and are kept.

Each hit is rejected with reason `benchmark_overlap` and detail `<benchmark>:<benchmark id> (...)`;
`stats["benchmarks"]` holds the per-benchmark table ({name: rows, checked, hits, hit_rate, found, where,
note}), `scores` the best match of every row (bench_name, bench_id, bench_overlap; on a tie the first rule
of: n-grams, full text, same question).

The runner hands the keys (question, options, task) one spilled part at a time; `decide` matches each part as
it comes and keeps only the best match of the rows that match anything, 18 bytes each (half the rows of the
scale build share an n-gram with some item: 51,054 of 102,184 at 200k), so the step holds the index, one
part's n-grams and that small frame, never all keys. The refusal of a benchmark split and the
stats need the total hits, known after the pass; `BenchMatches.apply` then joins the matches onto each part
of whole rows.

Benchmarks are the shipped pack's sets (`curate.benchpack`, 11 sets, 15,937 items: no set-up, no download),
located by `curate.benchsets`: `paths: {set: path}` or a `root` folder (relative to the working directory,
else $MEDCURATE_BENCHMARKS) laid out like shared/data override a pack set; `extra: {name: {format, path}}`
adds the user's own; `pack: false` switches the pack off (then the Hub only with `hub: true`). One that
cannot be found is listed in `stats["missing"]` and logged as a warning; `strict: true` makes it an error.
An input of 20+ rows of which more than `max_hit_fraction` (0.5) are hits is itself a benchmark split: the
step raises a RecipeError saying so instead of letting the build finish with (almost) no rows.
The benchmark n-gram index is cached in `<work_dir>/decontaminate-index/<key>/`, keyed by the benchmark
files' path, mtime and size and by `ngram` / `max_item_frequency`, so later builds skip parsing them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import Field

from curate.benchsets import BENCHMARKS, Benchmark, BenchSelection, file_key, load_benchmark
from curate.errors import RecipeError
from curate.steps import BuildContext, Step, StepResult, split_by
from curate.steps.keyed import ROW, KeyParts, decide_rows, map_parts
from curate.textnorm import join_expr, ngram_hashes, norm_expr, option_texts_expr, tokenize

REASON = "benchmark_overlap"


class DecontaminateParams(BenchSelection):
    ngram: int = Field(13, ge=3, le=50)
    min_overlap: float = Field(0.5, gt=0.0, le=1.0)
    min_short_tokens: int = Field(4, ge=1)
    min_option_overlap: float = Field(0.5, gt=0.0, le=1.0)  # same-question rule: Jaccard of option sets
    max_item_frequency: int = Field(20, ge=1)
    strict: bool = False  # fail the build when a requested benchmark cannot be found
    max_hit_fraction: float | None = Field(0.5, gt=0.0, le=1.0)  # more hits than this: the input IS a benchmark


def _texts(frame: pl.DataFrame) -> pl.DataFrame:
    """q (question), qo (question + options in order), qs (question + options sorted), has_opts."""
    q = norm_expr(pl.col("question"))
    return frame.select(
        q.alias("q"),
        join_expr(q, option_texts_expr(sort=False)).alias("qo"),
        join_expr(q, option_texts_expr(sort=True)).alias("qs"),
        # yes/no/maybe "options" (PubMedQA) say nothing about the question: match on the question alone
        ((pl.col("options").list.len() > 0) & (pl.col("task").fill_null("") != "yes_no_maybe")).alias("has_opts"),
    )


class Decontaminate(Step):
    name = "decontaminate"
    scope = "global"
    description = "reject rows that overlap benchmark test sets (word n-grams)"
    Params = DecontaminateParams

    def reads(self, columns: list[str]) -> list[pl.Expr]:
        """Question, options and task: what the rows are matched on."""
        return [pl.col(c) for c in ("question", "options", "task") if c in columns]

    def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
        """Whole rows in memory: `decide` on their keys as one part, then the decision applied to them, so
        every caller runs the keyed path the runner uses."""
        return decide_rows(self, frame, ctx)

    def decide(self, keys: KeyParts, ctx: BuildContext) -> BenchMatches:
        """Match the key parts one at a time against the benchmark index (built once, on the driver), keeping
        the best match of the rows with any match (`_MATCH_SCHEMA`): never all keys, nor a Python list per
        row. The hits of all parts then decide the refusal of a benchmark split and the stats."""
        p: DecontaminateParams = self.params  # type: ignore[assignment]
        index, found = bench_index(p.sets(), p, ctx.work_dir)
        missing = _check_found(found, p, ctx)
        # per part, through the executor (Ray tasks under --executor ray; the 20 MB index is shipped once)
        matched = list(map_parts(keys, partial(_match_part, index=index, p=p)))
        matches = pl.concat(matched, how="vertical_relaxed") if matched else _NO_MATCH
        items = (index.items.select(pl.col("item").cast(pl.Int32), "bench", "bench_id") if index is not None
                 else _NO_ITEMS)
        hits = matches.filter("hit").join(items, on="item").group_by("bench").len()
        hit_counts = {b: int(n) for b, n in hits.iter_rows()}
        _refuse_benchmark_input(keys.height, hit_counts, p.max_hit_fraction)
        table: dict[str, dict[str, Any]] = {}
        for b in found:
            checked = keys.height if b.found else 0
            k = hit_counts.get(b.name, 0)
            table[b.name] = {"rows": b.rows, "checked": checked, "hits": k,
                             "hit_rate": round(k / checked, 6) if checked else 0.0, "found": b.found,
                             "where": b.where if b.found else None, "note": b.note}
        stats = {
            "ngram": p.ngram, "min_overlap": p.min_overlap, "min_short_tokens": p.min_short_tokens,
            "min_option_overlap": p.min_option_overlap,
            "max_item_frequency": p.max_item_frequency, "benchmarks": table,
            "missing": [b.name for b in missing], "rows_checked": keys.height, "hits": sum(hit_counts.values()),
            "short_items_skipped": index.short_skipped(p) if index is not None and keys.height else 0,
        }
        return BenchMatches(matches, items, p.ngram, stats)


def _check_found(found: list[Found], p: DecontaminateParams, ctx: BuildContext) -> list[Found]:
    """The benchmarks that could not be found: logged as a warning, an error with `strict`."""
    missing = [b for b in found if not b.found]
    if missing:
        by_note: dict[str, list[str]] = {}
        for b in missing:
            by_note.setdefault(b.note or "not found", []).append(b.name)
        ctx.logger.warning(
            "decontaminate: %d benchmark(s) NOT FOUND - rows were NOT checked against them: %s",
            len(missing), "; ".join(f"{', '.join(names)} ({note})" for note, names in by_note.items()))
    if missing and p.strict:
        raise RecipeError(
            f"decontaminate: benchmark(s) not found: {', '.join(b.name for b in missing)}",
            hint="keep the shipped pack on (`pack: true`), set `root:` (or $MEDCURATE_BENCHMARKS) to a "
                 "folder laid out like shared/data, give `paths: {name: file}`, or `hub: true`",
        )
    return missing


#: The decision per matched row, 18 bytes (about 9 MB for the 1M-row scale build, where half the rows share
#: some n-gram with an item): the item (its bench and id are in the index), the overlap, the rule that
#: matched (its words are written only for the rows of the part being applied) and hit.
_MATCH_SCHEMA = {ROW: pl.UInt32, "item": pl.Int32, "overlap": pl.Float64, "rule": pl.UInt8, "hit": pl.Boolean}
_NO_MATCH = pl.DataFrame(schema=_MATCH_SCHEMA)
_NO_ITEMS = pl.DataFrame(schema={"item": pl.Int32, "bench": pl.Utf8, "bench_id": pl.Utf8})
NGRAMS, FULL_TEXT, SAME_QUESTION = 0, 1, 2  # `rule`; on a tie (same row, item, overlap) the lowest wins


def _how(ngram: int) -> pl.Expr:
    """The words of a match's rule, for its detail."""
    overlap = pl.col("overlap").round(2)
    return (pl.when(pl.col("rule") == NGRAMS).then(pl.format("{} of its {}-grams", overlap, pl.lit(ngram)))
            .when(pl.col("rule") == FULL_TEXT).then(pl.lit("contains its full text"))
            .otherwise(pl.format("same question, {} of its options", overlap)))


@dataclass
class BenchMatches:
    """The decision: the best benchmark match of every row that has one (`_MATCH_SCHEMA`, sorted by `ROW`),
    and the index's items (item, bench, bench_id). Rows absent from `matches` match nothing: kept, overlap 0.0."""

    matches: pl.DataFrame
    items: pl.DataFrame
    ngram: int
    stats: dict[str, Any]

    def apply(self, rows: pl.DataFrame) -> StepResult:
        """One part's whole rows (with `ROW`): hits rejected as `benchmark_overlap`, every row scored."""
        lo, hi = (rows[ROW].min(), rows[ROW].max()) if rows.height else (0, -1)
        found = (self.matches.filter(pl.col(ROW).is_between(lo, hi)).join(self.items, on="item", how="left")
                 .select(ROW, pl.col("bench").cast(pl.Utf8).alias("_bench"),
                         pl.col("bench_id").cast(pl.Utf8).alias("_bench_id"), pl.col("overlap").alias("_overlap"),
                         _how(self.ngram).alias("_how"), pl.col("hit").alias("_hit")))
        tagged = rows.join(found, on=ROW, how="left", maintain_order="left").with_columns(
            pl.col("_overlap").fill_null(0.0), pl.col("_hit").fill_null(False))
        kept, rejected = split_by(tagged, pl.when("_hit").then(pl.lit(REASON)),
                                  pl.format("{}:{} ({})", "_bench", "_bench_id", "_how"))
        scores = tagged.select("id", pl.col("_bench").alias("bench_name"), pl.col("_bench_id").alias("bench_id"),
                               pl.col("_overlap").alias("bench_overlap"))
        helper = [c for c in found.columns if c != ROW]
        return StepResult(kept.drop(ROW, *helper), rejected.drop(ROW, *helper), scores=scores)


def _refuse_benchmark_input(rows: int, hit_counts: dict[str, int], max_fraction: float | None) -> None:
    """A build whose input is itself mostly a benchmark split fails here, saying so, rather than finishing
    with (almost) zero rows. Inputs under 20 rows are not judged (a handful of planted leaks is a test)."""
    hits = sum(hit_counts.values())
    if max_fraction is None or rows < 20 or hits <= max_fraction * rows:
        return
    top = ", ".join(f"{b}: {n:,}" for b, n in sorted(hit_counts.items(), key=lambda kv: -kv[1])[:3])
    raise RecipeError(
        f"decontaminate: {hits:,} of {rows:,} input rows ({hits / rows:.0%}) are benchmark test items ({top}); "
        "the input looks like a benchmark split, not training data, and decontamination would remove it",
        hint="train on a training split (e.g. MedQA train), not a benchmark's test/dev split; to build an "
             "evaluation set drop `decontaminate` from the recipe; to keep going anyway set "
             "`decontaminate: {max_hit_fraction: null}`",
    )


@dataclass
class Found:
    name: str
    found: bool
    rows: int = 0
    where: str | None = None
    note: str | None = None


@dataclass
class BenchIndex:
    items: pl.DataFrame  # item, bench, bench_id, q, key, has_opts, ntok, io (option set)
    grams: pl.DataFrame  # item, h: informative n-gram hashes of long items
    denom: pl.DataFrame  # item, denom: number of informative n-grams per long item

    def short_skipped(self, p: DecontaminateParams) -> int:
        """Items too short to check (fewer than `min_short_tokens` words)."""
        return int(self.items.filter(pl.col("ntok") < p.min_short_tokens).height)


INDEX_VERSION = 1
_INDEX_CACHE: dict[str, BenchIndex] = {}
_WHERE_CACHE: dict[str, dict[str, str | None]] = {}  # digest -> {set: where it was read from}


def bench_index(sets: dict[str, Benchmark | None], p: DecontaminateParams, work_dir: Path | None
                ) -> tuple[BenchIndex | None, list[Found]]:
    """The n-gram index of the requested benchmarks, from memory, from `work_dir`, or built and saved there.

    Keyed by the benchmark files (path, mtime, size) and the matching params: a changed file rebuilds it.
    """
    names = list(sets)
    src = {n: {"root": p.root, "path": p.path_of(n), "pack": p.pack, "bench": sets[n]} for n in names}
    keys = {n: file_key(n, **src[n]) for n in names}
    local = {n: k for n, k in keys.items() if k is not None}
    remote = [n for n in names if keys[n] is None and p.hub and sets[n] is None and BENCHMARKS[n].hub]
    digest = hashlib.sha256(json.dumps(
        [INDEX_VERSION, sorted(local.items()), remote, p.ngram, p.max_item_frequency], default=str
    ).encode()).hexdigest()[:16]
    folder = Path(work_dir) / "decontaminate-index" / digest if work_dir else None
    index = _INDEX_CACHE.get(digest)
    if index is None and folder is not None and (folder / "meta.json").is_file():
        index = BenchIndex(*(pl.read_parquet(folder / f"{part}.parquet") for part in ("items", "grams", "denom")))
    if index is not None and not remote:
        meta = json.loads((folder / "meta.json").read_text()) if folder and (folder / "meta.json").is_file() \
            else {"found": _WHERE_CACHE.get(digest, {})}  # from memory: another build's work dir wrote it
        counts = dict(index.items.group_by("bench").len().iter_rows())
        found = [Found(n, True, int(counts.get(n, 0)), meta["found"].get(n)) if n in local
                 else Found(n, False, note=load_benchmark(n, **src[n]).note)
                 for n in names]
        _INDEX_CACHE[digest] = index
        return index, found
    loaded = [load_benchmark(n, hub=p.hub, **src[n]) for n in names]
    found = [Found(b.name, b.found, b.frame.height, b.where, b.note) for b in loaded]
    frames = [b.frame for b in loaded if b.found and b.frame.height]
    if not frames:
        return None, found
    index = _build_index(frames, p)
    _INDEX_CACHE[digest] = index
    _WHERE_CACHE[digest] = {f.name: f.where for f in found if f.found}
    if folder is not None and not remote:
        tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        try:  # written aside and renamed: a killed build never leaves a half-written index
            tmp.mkdir(parents=True, exist_ok=True)
            for part in ("items", "grams", "denom"):
                getattr(index, part).write_parquet(tmp / f"{part}.parquet")
            (tmp / "meta.json").write_text(json.dumps({"found": {f.name: f.where for f in found if f.found}}))
            tmp.rename(folder)
        except OSError:  # another build wrote it first, or the work dir is read-only: the cache is optional
            shutil.rmtree(tmp, ignore_errors=True)
    return index, found


def _build_index(frames: list[pl.DataFrame], p: DecontaminateParams) -> BenchIndex:
    n = p.ngram
    items = pl.concat([f.select("source", "source_id", "task", "question", "options") for f in frames])
    it = _texts(items).with_columns(
        items["source"].alias("bench"), items["source_id"].cast(pl.Utf8).alias("bench_id"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("item"),
        items.select(_OPT_SET.alias("io"))["io"],
    )
    it = it.with_columns(pl.when("has_opts").then("qs").otherwise("q").alias("key"))
    it = it.with_columns(pl.col("key").str.count_matches(" ").add(1).alias("ntok"))
    long_items = it.filter(pl.col("ntok") >= n)
    item_texts = pl.concat([
        long_items.select("item", pl.when("has_opts").then("qo").otherwise("q").alias("t")),
        long_items.filter("has_opts").select("item", pl.col("qs").alias("t")),
    ])
    d, h = ngram_hashes(tokenize(item_texts["t"]), n, short="skip")
    grams = pl.DataFrame({"item": item_texts["item"].to_numpy()[d], "h": h}).unique()
    freq = grams.group_by("h").agg(pl.len().alias("f"))
    grams = grams.join(freq.filter(pl.col("f") <= p.max_item_frequency).select("h"), on="h", how="semi")
    denom = grams.group_by("item").agg(pl.len().alias("denom"))
    items_out = it.select("item", "bench", "bench_id", "q", "key", "has_opts", "ntok", "io")
    return BenchIndex(items_out, grams.sort("h"), denom)


_OPT_SET = pl.col("options").list.eval(norm_expr(pl.element().struct.field("text"))).list.unique().list.sort()


#: Rows matched at once. Matching is row by row against the fixed index, so chunks give the same result;
#: the n-gram hashes of a chunk's three texts per row are what it holds (about 1.2 GB for 1M MedMCQA rows
#: at once, about 0.25 GB per 200k chunk). The runner's key parts (`batch_rows`, 50k) are smaller still.
MATCH_ROWS = 200_000


def _match_part(part: pl.DataFrame, index: BenchIndex | None, p: DecontaminateParams) -> pl.DataFrame:
    """`_match` over slices of MATCH_ROWS rows of one key part, concatenated (`_MATCH_SCHEMA`)."""
    if index is None or part.height == 0:
        return _NO_MATCH
    return pl.concat([_match(part.slice(s, MATCH_ROWS), index, p) for s in range(0, part.height, MATCH_ROWS)])


def _match(frame: pl.DataFrame, index: BenchIndex, p: DecontaminateParams) -> pl.DataFrame:
    """Best benchmark match of each row of `frame` (keys with `ROW`) that matches any item, by `ROW`:
    item, overlap (1.0 for a full short-item match), rule, hit (`_MATCH_SCHEMA`)."""
    n = p.ngram
    it, grams, denom = index.items, index.grams, index.denom

    rows = _texts(frame).with_columns(frame[ROW].alias("row"))
    row_texts = pl.concat([rows.select("row", pl.col(c).alias("t")) for c in ("q", "qo", "qs")])
    d, h = ngram_hashes(tokenize(row_texts["t"]), n, short="skip")
    row_grams = pl.DataFrame({"row": row_texts["row"].to_numpy()[d], "h": h})
    row_grams = row_grams.join(grams.select("h").unique(), on="h", how="semi").unique()
    scored = (
        row_grams.join(grams, on="h").group_by("row", "item").agg(pl.len().alias("shared"))
        .join(denom, on="item").with_columns((pl.col("shared") / pl.col("denom")).alias("overlap"))
        .select("row", "item", "overlap", pl.lit(NGRAMS, pl.UInt8).alias("rule"),
                (pl.col("overlap") >= p.min_overlap).alias("hit"))
    )

    # --- short items: whole normalised text contained (word-aligned) in the row's text of the same kind --
    short = it.filter((pl.col("ntok") < n) & (pl.col("ntok") >= p.min_short_tokens) & (pl.col("key") != ""))
    found_short = []
    for has_opts, col in ((True, "qs"), (False, "q")):
        sub = short.filter(pl.col("has_opts") == has_opts)
        if sub.height == 0:
            continue
        patterns = (" " + sub["key"] + " ").unique()
        item_of = sub.group_by("key").agg(pl.col("item").min()).with_columns(
            (" " + pl.col("key") + " ").alias("pat"))
        m = rows.select(
            "row", (" " + pl.col(col) + " ").str.extract_many(patterns.to_list(), overlapping=True).alias("pat")
        ).explode("pat").drop_nulls("pat")
        found_short.append(
            m.join(item_of.select("pat", "item"), on="pat")
            .select("row", "item", pl.lit(1.0).alias("overlap"), pl.lit(FULL_TEXT, pl.UInt8).alias("rule"),
                    pl.lit(True).alias("hit"))
        )
    # --- same question, most of the same options (any length: catches a repeat with an option added) ---
    item_opts = it.filter(pl.col("has_opts") & (pl.col("q").str.count_matches(" ") >= 1))
    row_opts = frame.select(_OPT_SET.alias("ro")).with_columns(rows["row"], rows["q"])
    same_q = (
        row_opts.filter(pl.col("ro").list.len() > 0).join(item_opts.select("q", "item", "io"), on="q")
        .with_columns((pl.col("ro").list.set_intersection("io").list.len()
                       / pl.col("ro").list.set_union("io").list.len()).alias("overlap"))
        .filter(pl.col("overlap") >= p.min_option_overlap)
        .select("row", "item", "overlap",
                pl.lit(SAME_QUESTION, pl.UInt8).alias("rule"),
                pl.lit(True).alias("hit"))
    )
    found_short.append(same_q)
    # ties (same row, item and overlap: a verbatim copy matches 1.0 by n-grams and by its options too) go to
    # the lowest rule, so the detail of a row never depends on the part it came in or the thread schedule
    # (without `rule` in the sort, 228 of 508 details changed between a one-part and a 97-row-part build)
    return (
        pl.concat([scored, *found_short])
        .sort(["row", "hit", "overlap", "item", "rule"], descending=[False, True, True, False, False])
        .group_by("row", maintain_order=True).first()
        .select(pl.col("row").alias(ROW), pl.col("item").cast(pl.Int32), pl.col("overlap").cast(pl.Float64),
                "rule", "hit")
    )
