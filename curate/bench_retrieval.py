"""Candidate retrieval for rephrase-aware decontamination: the top-k benchmark items per training row (BM25).

A reworded benchmark question shares few long n-grams with the original but most of its rare words (drug,
finding, organism, numbers), so a lexical index finds it without any download. The index is `bm25s`
(Lucene BM25, k1=1.5, b=0.75) over each benchmark item's question + option texts, English stop words
removed, no stemming (no stemmer is installed in core). A row's query is its own question + option texts.
The retrieval's recall@k on controlled rephrasings is measured by `benchmarks/decontamination.py`.

Only the retrieval lives here (core, no teacher); the step that asks a judge about the candidates is
`synth/steps/rephrase.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import bm25s
import numpy as np
import polars as pl

from curate.textnorm import norm_expr

logging.getLogger("bm25s").setLevel(logging.WARNING)  # its per-call DEBUG lines are not ours to print

#: bm25s' default token pattern keeps words of 2+ characters; a single digit (a dose, an age) is a word too.
TOKEN_PATTERN = r"(?u)\b\w+\b"


def item_text(frame: pl.DataFrame) -> pl.Series:
    """Question + option texts (yes/no/maybe "options" of PubMedQA left out: they say nothing), normalised."""
    opts = (pl.when(pl.col("task").fill_null("") == "yes_no_maybe").then(pl.lit([], dtype=pl.List(pl.Utf8)))
            .otherwise(pl.col("options").list.eval(pl.element().struct.field("text"))))
    text = pl.concat_str([pl.col("question").fill_null(""), opts.list.join(" ").fill_null("")], separator=" ")
    return frame.select(norm_expr(text).alias("t"))["t"]


def _tokens(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, token_pattern=TOKEN_PATTERN, stopwords="en", return_ids=False,
                          show_progress=False)


@dataclass
class BenchRetriever:
    """BM25 over benchmark items (`bench`, `bench_id`, question, options, task)."""

    items: pl.DataFrame
    _bm25: bm25s.BM25 = field(init=False, repr=False)
    _self: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._bm25 = bm25s.BM25()
        tokens = _tokens(item_text(self.items).to_list())
        self._bm25.index(tokens, show_progress=False)
        self._self = self._self_scores(tokens)

    def _self_scores(self, tokens: list[list[str]]) -> np.ndarray:
        """Each item's BM25 score against its own text (the scale `rel` is measured on), read straight from
        bm25s' precomputed token x document score matrix: sum over the item's tokens t of S[t, item], as
        `retrieve` sums a query (repeated tokens count again). 0.1 s for 16k items, vs 23 s by querying."""
        vocab, sc = self._bm25.vocab_dict, self._bm25.scores
        doc = np.repeat(np.arange(len(tokens)), [len(t) for t in tokens])
        tok = np.fromiter((vocab[t] for ts in tokens for t in ts), dtype=np.int64, count=doc.size)
        indptr, indices = np.asarray(sc["indptr"]), np.asarray(sc["indices"])
        n = len(tokens)
        entry_key = np.repeat(np.arange(indptr.size - 1), np.diff(indptr)) * n + indices  # sorted per token
        data = np.asarray(sc["data"])
        if entry_key.size > 1 and not (np.diff(entry_key) > 0).all():
            order = np.argsort(entry_key, kind="stable")
            entry_key, data = entry_key[order], data[order]
        pos = np.searchsorted(entry_key, tok * n + doc)
        out = np.zeros(n)
        np.add.at(out, doc, data[pos])
        return out

    def top_k(self, frame: pl.DataFrame, k: int) -> pl.DataFrame:
        """One row per (training row, candidate): row (position in `frame`), rank (0 = best), item (position
        in `items`), bench, bench_id, bm25, and rel = bm25 / the item's score against its own text (about 1
        for the item itself, whatever its length). Rows whose text has no indexed word get no candidates."""
        n_items = self.items.height
        k = min(k, n_items)
        queries = _tokens(item_text(frame).to_list())
        vocab = self._bm25.vocab_dict
        queries = [[t for t in q if t in vocab] for q in queries]
        has = np.array([bool(q) for q in queries])
        rows_out = np.flatnonzero(has)
        if k == 0 or not rows_out.size:
            return pl.DataFrame(schema={"row": pl.Int64, "rank": pl.Int32, "item": pl.Int64, "bench": pl.Utf8,
                                        "bench_id": pl.Utf8, "bm25": pl.Float64, "rel": pl.Float64})
        docs, scores = self._bm25.retrieve([queries[i] for i in rows_out], k=k, show_progress=False,
                                           n_threads=1)
        out = pl.DataFrame({
            "row": np.repeat(rows_out, k).astype(np.int64),
            "rank": np.tile(np.arange(k, dtype=np.int32), rows_out.size),
            "item": docs.reshape(-1).astype(np.int64),
            "bm25": scores.reshape(-1).astype(np.float64),
        }).filter(pl.col("bm25") > 0)
        out = out.with_columns((pl.col("bm25") / pl.Series(self._self).gather(out["item"]).clip(1e-9)).alias("rel"))
        return out.join(self.items.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("item"), "bench",
                                          pl.col("bench_id").cast(pl.Utf8)), on="item", how="left"
                        ).select("row", "rank", "item", "bench", "bench_id", "bm25", "rel").sort("row", "rank")
