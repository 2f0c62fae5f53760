"""Vectorised shingles, exact Jaccard and LSH buckets (in memory and out of core) equal their per-pair and
per-bucket definitions on real question texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from curate.minhash import band_keys, candidate_pairs, shingles, signatures, text_shingles
from curate.near_pairs import GroupPart, candidate_windows, set_column, set_jaccard
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
        sets = set_column(sh)
        got = set_jaccard(sets.gather(pairs[:, 0]), sets.gather(pairs[:, 1]))
        want = []
        for i, j in pairs.tolist():
            x, y = set(sh.of(i).tolist()), set(sh.of(j).tolist())
            want.append(len(x & y) / len(x | y) if x | y else 0.0)
        assert got.tolist() == want
        assert 0 < (got == 1.0).sum() < len(got) and (got > 0.5).sum() >= 300


def _questions(data_dir: Path) -> pl.Series:
    frame = read_source(SourceSpec(name="m", format="medmcqa", path="medmcqa/dev_first3683.json"),
                        base_dir=data_dir).frame
    texts = frame["question"].fill_null("")
    # near copies (the first word dropped) so that buckets hold more than one document
    return pl.concat([texts, texts.head(1500).str.replace(r"^\S+\s", ""), texts.head(300)])


def test_chunked_shingles_are_the_whole_shingles(data_dir: Path) -> None:
    text = _questions(data_dir)
    whole = shingles(tokenize(text), 2)
    chunked = text_shingles(text, 2, chunk=700)
    assert np.array_equal(whole.values, chunked.values) and np.array_equal(whole.offsets, chunked.offsets)


def test_candidate_pairs_are_the_pairs_that_share_a_band_bucket(data_dir: Path) -> None:
    """Against a dict of band bytes per bucket: all pairs of a bucket up to max_bucket, else a star from its
    first document (the 300 exact copies make buckets of 3 and more)."""
    sig = signatures(text_shingles(_questions(data_dir), 2), 64, seed=3)
    for bands, rows, max_bucket in ((16, 4, 50), (8, 8, 2)):
        want: set[tuple[int, int]] = set()
        for band in range(bands):
            buckets: dict[bytes, list[int]] = {}
            for i, row in enumerate(sig[:, band * rows:(band + 1) * rows]):
                buckets.setdefault(row.tobytes(), []).append(i)
            for members in buckets.values():
                if len(members) <= max_bucket:
                    want |= {(a, b) for k, a in enumerate(members) for b in members[k + 1:]}
                else:
                    want |= {(members[0], b) for b in members[1:]}
        got = candidate_pairs(sig, bands, rows, max_bucket=max_bucket)
        assert [tuple(p) for p in got.tolist()] == sorted(want)
        assert len(want) > 1500


def test_candidate_windows_are_the_in_memory_candidate_pairs(data_dir: Path, tmp_path: Path) -> None:
    """The out-of-core buckets (band keys spilled per part, pairs written to the window of their first row)
    give exactly `candidate_pairs`, pairs across parts included."""
    sig = signatures(text_shingles(_questions(data_dir), 2), 64, seed=3)
    n, bands, rows = sig.shape[0], 16, 4
    parts = []
    for k, start in enumerate(range(0, n, 1000)):
        block = sig[start:start + 1000]
        path = tmp_path / f"bands-{k}.npy"
        np.save(path, np.stack([band_keys(block[:, b * rows:(b + 1) * rows]) for b in range(bands)]))
        parts.append(GroupPart(np.arange(start, start + block.shape[0]), np.ones(block.shape[0], bool), path,
                               tmp_path / "unused.arrow"))
    got = np.concatenate([codes for _, codes in candidate_windows(parts, n, bands, tmp_path)])
    want = candidate_pairs(sig, bands, rows)
    assert np.array_equal(np.stack([got // n, got % n], axis=1).astype(np.int64), want)
    assert (want[:, 0] // 1000 != want[:, 1] // 1000).sum() > 100 and not list(tmp_path.glob("codes-*"))
