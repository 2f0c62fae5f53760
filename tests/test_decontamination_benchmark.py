"""benchmarks/decontamination.py at a small size: the controlled rephrasings defeat the 13-gram pass and BM25
retrieval still finds their items (the property the rephrase pass relies on)."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import decontamination as bench  # noqa: E402

from curate.bench_retrieval import BenchRetriever  # noqa: E402
from curate.benchpack import pack_sets, read_pack_set  # noqa: E402


def test_rephrasings_escape_ngrams_but_not_retrieval(tmp_path: Path) -> None:
    pos = bench.positives(4, seed=5)  # 4 items from each of the 11 sets
    assert pos.height == 44
    hits = bench.ngram_pass(pos, tmp_path)
    want = dict(zip(pos["id"], pos["source_id"].str.replace(r"\|", ":"), strict=True))
    ngram_recall = sum(d.startswith(want[i] + " (") for i, d in hits.iter_rows()) / pos.height
    items = pl.concat([read_pack_set(s.name) for s in pack_sets()]).select(
        pl.col("source").alias("bench"), pl.col("source_id").alias("bench_id"), "task", "question", "options")
    cands = BenchRetriever(items).top_k(pos, 5)
    found = {(r, f"{b}:{i}") for r, b, i in cands.select("row", "bench", "bench_id").iter_rows()}
    recall5 = sum((k, want[rid]) in found for k, rid in enumerate(pos["id"])) / pos.height
    assert ngram_recall < 0.6 and recall5 >= 0.95, (ngram_recall, recall5)


def test_the_script_prints_its_table(tmp_path: Path, capsys) -> None:
    bench.main(["--per-set", "2", "--negatives", "30", "--work", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["family", "items", "13-gram"] and "negatives: 30 real" in out
    # both sides timed from scratch, median of 3 runs with min and max, and the ratio (issue 17)
    timing = out.splitlines()[-1]
    assert timing.startswith("seconds, median of 3 runs (min-max), 52 rows in"), timing
    assert "13-gram pass (index built + matched)" in timing and "retrieval / 13-gram pass" in timing
    assert list(tmp_path.iterdir()) == []  # each run's index went with its own work folder
