"""Vectorised exact Jaccard equals the per-pair set computation on real question texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from curate.minhash import exact_jaccard, shingles
from curate.recipe import SourceSpec
from curate.sources import read_source
from curate.textnorm import tokenize


def test_exact_jaccard_matches_per_pair_sets(data_dir: Path) -> None:
    frame = read_source(SourceSpec(name="m", format="medmcqa", path="medmcqa/dev_first3683.json"),
                        base_dir=data_dir).frame
    # real texts plus near copies (a word dropped) and empty texts, so similarities span 0..1
    texts = frame["question"].fill_null("")
    near = texts.head(500).str.replace(r"^\S+\s", "")
    text = pl.concat([texts, near, pl.Series(["", ""])])
    rng = np.random.default_rng(0)
    n = text.len()
    pairs = np.concatenate([rng.integers(0, n, size=(3000, 2)),
                            np.stack([np.arange(500), np.arange(texts.len(), texts.len() + 500)], axis=1),
                            [[n - 1, n - 2], [0, n - 1], [5, 5]]])
    for ngram in (1, 3, 5):
        sh = shingles(tokenize(text), ngram)
        got = exact_jaccard(sh, pairs, chunk=700)  # several chunks
        want = []
        for i, j in pairs.tolist():
            x, y = set(sh.of(i).tolist()), set(sh.of(j).tolist())
            want.append(len(x & y) / len(x | y) if x | y else 0.0)
        assert got.tolist() == want
        assert 0 < (got == 1.0).sum() < len(got) and (got > 0.5).sum() >= 300
