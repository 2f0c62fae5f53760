"""The peers the benchmarks compare against run from a clean install of the `dev` extra (issue 17: every
benchmark script runs from a clean checkout). datatrove's MinHash needs spaCy's English word tokenizer, which
datatrove 0.10 does not install with the extras we ask for: near_dup_quality.py and curation_throughput.py
stopped at `ImportError: Please install spacy` until the `bench` extra named it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _data import near_dup_pairs  # noqa: E402
from _datatrove_minhash import datatrove_clusters  # noqa: E402

from curate.steps.dedup import near_text_expr  # noqa: E402


def test_datatrove_minhash_runs_and_finds_real_near_duplicates(data_dir: Path) -> None:
    frame, pairs = near_dup_pairs(n_pos=60, n_neg=60, seed=3)  # real MCQ rows and edited copies
    texts = frame.select(near_text_expr().alias("t"))["t"].to_list()
    clusters = datatrove_clusters(texts, n_grams=5, num_buckets=14, hashes_per_bucket=8)
    assert len(clusters) == frame.height
    found = [clusters[i] == clusters[j] for i, j, dup, _ in pairs if dup]
    wrong = [clusters[i] == clusters[j] for i, j, dup, _ in pairs if not dup]
    # the Aloe settings (14 x 8 at 5-grams) find most light edits and merge almost no distinct questions
    assert sum(found) / len(found) >= 0.5, sum(found)
    assert sum(wrong) <= 2, sum(wrong)
