"""Vectorised MinHash + LSH banding over word-shingle hashes (from `curate.textnorm`).

Why not datasketch here: datasketch builds one Python `MinHash` object per document and queries its
`MinHashLSH` one key at a time; this module computes all signatures with a few numpy array operations and
finds bucket collisions with one sort per band. `benchmarks/near_dup_quality.py` compares both on the same
labelled pairs (same shingles, same permutation count and bands): equal quality, several times faster.

Permutations are the multiply-shift family h_j(x) = (a_j * x + b_j) >> 32 on uint64 (a_j odd), drawn from
numpy's PCG64 with the given seed: the same seed gives the same signatures on every machine.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from curate.textnorm import Tokens, ngram_hashes, tokenize

_EMPTY = np.uint32(0xFFFFFFFF)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


@dataclass
class Shingles:
    """Shingle hashes per document, flattened: doc i owns ``values[offsets[i]:offsets[i + 1]]``."""

    values: np.ndarray  # uint64, in text order within each document (repeats possible)
    offsets: np.ndarray  # int64, n_docs + 1

    def of(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    @staticmethod
    def concat(parts: list[Shingles]) -> Shingles:
        """The documents of `parts`, in order, as one Shingles."""
        if len(parts) == 1:
            return parts[0]
        base = np.cumsum([0] + [p.values.shape[0] for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + b for p, b in zip(parts, base, strict=True)])
        return Shingles(np.concatenate([p.values for p in parts]), offsets.astype(np.int64))


#: Most shingles one document keeps (issue 10). `signatures` works on whole documents, so one 10 MB question
#: (1.7 M shingles) cost 1.7 M x 128 permutations x 12 bytes = 3 GB; capped, a document costs at most
#: 20 000 x 128 x 12 = 31 MB. A document over the cap keeps its 20 000 smallest distinct shingle hashes (a
#: bottom-k sample with one hash function for all documents, so near-duplicate giants keep near-equal
#: samples); documents under the cap (~20 000 words, every row of our real sources) are unchanged.
MAX_SHINGLES = 20_000


def shingles(tokens: Tokens, n: int, *, cap: int = MAX_SHINGLES) -> Shingles:
    """Word n-gram hashes per document (documents shorter than n give one whole-text shingle).

    Repeats are kept (the MinHash minimum ignores them; `curate.near_pairs` keeps each document's set).
    A document with more than `cap` shingles keeps only its `cap` smallest distinct hashes (see MAX_SHINGLES)."""
    docs, hashes = ngram_hashes(tokens, n, short="whole")
    n_docs = tokens.offsets.shape[0] - 1
    order = np.argsort(docs, kind="stable")  # already nearly sorted: long n-grams come in document order
    docs, hashes = docs[order], hashes[order]
    counts = np.bincount(docs, minlength=n_docs)
    big = np.nonzero(counts > cap)[0]
    if big.size:  # rare: rebuild only the giant documents' slices
        starts = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        parts, last = [], 0
        for d in big.tolist():
            parts.append(hashes[last : starts[d]])
            parts.append(np.unique(hashes[starts[d] : starts[d + 1]])[:cap])
            counts[d] = parts[-1].shape[0]
            last = starts[d + 1]
        parts.append(hashes[last:])
        hashes = np.concatenate(parts)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return Shingles(hashes, offsets)


#: Documents tokenized at once by `text_shingles`. Tokenizing holds every word of its documents as a
#: string (1M MedMCQA rows at once: +2.0 GB; 100k at a time: +0.2 GB, the same shingles).
TOKENIZE_ROWS = 100_000


def text_shingles(texts: pl.Series, n: int, *, chunk: int = TOKENIZE_ROWS) -> Shingles:
    """`shingles(tokenize(texts), n)`, `chunk` documents at a time (every document's shingles are its own)."""
    return Shingles.concat([shingles(tokenize(texts.slice(s, chunk)), n)
                            for s in range(0, max(texts.len(), 1), chunk)])


def signatures(sh: Shingles, num_perm: int, seed: int, *, chunk: int = 4096) -> np.ndarray:
    """MinHash signatures, shape (n_docs, num_perm), uint32.

    Empty documents get the all-0xFFFFFFFF signature (the caller keeps them out of LSH). Work goes in
    document-aligned chunks of about `chunk` shingles so the (chunk x num_perm) block stays in cache.
    """
    a, b = permutations(num_perm, seed)
    shift = np.uint64(32)
    n_docs = sh.offsets.shape[0] - 1
    sig = np.full((n_docs, num_perm), _EMPTY, dtype=np.uint32)
    nonempty = np.nonzero(np.diff(sh.offsets))[0]
    ends = sh.offsets[nonempty + 1]
    doc = 0
    while doc < nonempty.shape[0]:
        lo = sh.offsets[nonempty[doc]]
        end = max(int(np.searchsorted(ends, lo + chunk, side="right")), doc + 1)
        docs = nonempty[doc:end]
        hi = sh.offsets[docs[-1] + 1]
        with np.errstate(over="ignore"):
            vals = sh.values[lo:hi, None] * a[None, :]
            vals += b[None, :]
            vals >>= shift
        sig[docs] = np.minimum.reduceat(vals.astype(np.uint32), sh.offsets[docs] - lo, axis=0)
        doc = end
    return sig


@functools.lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
                  ) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising the weighted false-positive and
    false-negative areas of the S-curve 1 - (1 - s^r)^b around `threshold` (the usual LSH tuning)."""
    best, best_err = (1, num_perm), float("inf")
    xs_lo = np.linspace(0.0, threshold, 200)
    xs_hi = np.linspace(threshold, 1.0, 200)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - xs_lo**r) ** b, xs_lo)
            fn = np.trapezoid((1 - xs_hi**r) ** b, xs_hi)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


def candidate_pairs(sig: np.ndarray, bands: int, rows: int, *, active: np.ndarray | None = None,
                    max_bucket: int = 50) -> np.ndarray:
    """Pairs (i, j), i < j, of documents that share at least one LSH band bucket, in memory.

    A bucket of k <= max_bucket documents yields all its pairs; a larger bucket yields a star from its
    first document (same connected components, far fewer pairs). `active`: bool mask of documents that take
    part (others are ignored). Returns an int64 array of shape (m, 2), unique rows, sorted. (The dedup step
    uses the same buckets out of core: `curate.near_pairs.candidate_windows`.)
    """
    idx = np.arange(sig.shape[0], dtype=np.int64) if active is None else np.nonzero(active)[0]
    if idx.shape[0] < 2:
        return np.zeros((0, 2), dtype=np.int64)
    n = np.uint64(sig.shape[0])
    found = np.zeros(0, dtype=np.uint64)  # unique pair codes i * n + j so far (8 bytes a pair, not 16)
    for band in range(bands):
        key = band_keys(sig[idx, band * rows : (band + 1) * rows])
        order = np.argsort(key, kind="stable")
        starts, sizes = shared_buckets(key[order])
        out = list(bucket_pairs(idx, order, starts, sizes, int(n), max_bucket))
        if out:  # fold each band in: the pairs of all bands at once were 5x the unique ones (1.4 GB at 1M rows)
            found = sorted_unique(np.concatenate([found, *out]))
    return np.stack([found // n, found % n], axis=1).astype(np.int64)


def shared_buckets(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, size) of every run of two or more equal keys in a sorted array. Only shared buckets are
    listed: most band keys are unique, and listing every bucket cost 16 bytes a row (32 MB a band at 2M)."""
    same = sorted_keys[1:] == sorted_keys[:-1]  # position p: rows p and p + 1 share a bucket
    if not same.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    edge = np.diff(same.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.nonzero(edge == 1)[0], np.nonzero(edge == -1)[0]
    return starts, ends - starts + 1


#: Pair codes `bucket_pairs` yields at a time (3 arrays of 16 MB while they are made).
PAIRS_PER_CHUNK = 2_000_000


def bucket_pairs(idx: np.ndarray, order: np.ndarray, starts: np.ndarray, sizes: np.ndarray, n: int,
                 max_bucket: int) -> Iterator[np.ndarray]:
    """Pair codes min * n + max of the documents `idx[order[...]]` of every shared bucket of one band, about
    PAIRS_PER_CHUNK at a time. Buckets of equal size share one triangle of in-bucket offsets: no Python loop
    per bucket; a bucket above `max_bucket` gives a star from its first member."""
    nn = np.uint64(n)
    for k in sorted(set(sizes.tolist())):
        st_all = starts[sizes == k]
        if k <= max_bucket:
            ii, jj = np.triu_indices(k, 1)
        else:
            ii, jj = np.zeros(k - 1, dtype=np.int64), np.arange(1, k)
        step = max(1, PAIRS_PER_CHUNK // ii.shape[0])
        for s in range(0, st_all.shape[0], step):
            st = st_all[s:s + step]
            a = idx[order[(st[:, None] + ii[None, :]).ravel()]].astype(np.uint64)
            b = idx[order[(st[:, None] + jj[None, :]).ravel()]].astype(np.uint64)
            yield np.minimum(a, b) * nn + np.maximum(a, b)


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """The distinct values of a 1-D array, sorted (sorts `a` in place). numpy 2.4's `np.unique` goes through a
    hash table for integers: 1.0 s per call on 5M uint64 pair codes here against 0.05 s for sort + compare
    (candidate_pairs at 200k rows: 50 s -> 2 s)."""
    a.sort()
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if a.shape[0] else a


def band_keys(cols: np.ndarray) -> np.ndarray:
    """One uint64 per row of a band (a multiply-xorshift hash of its uint32 values): rows with equal band values
    get equal keys; different bands collide with probability ~2**-64, which only adds a candidate pair
    that verification (or the estimated Jaccard) then rejects. Sorting these keys instead of the raw
    bytes (a numpy void view), with `sorted_unique`, took candidate_pairs from 44 s to 15 s at 1M derived
    MedMCQA rows (17.6M pairs; measured on the shared 2-core machine)."""
    key = np.zeros(cols.shape[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for c in range(cols.shape[1]):
            key = (key ^ cols[:, c].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
            key ^= key >> np.uint64(29)
    return key


class UnionFind:
    """Connected components over document indices; the root of a component is its smallest index."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        p = self.parent
        root = x
        while p[root] != root:
            root = p[root]
        while p[x] != root:
            p[x], x = root, p[x]
        return int(root)

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            lo, hi = min(rx, ry), max(rx, ry)
            self.parent[hi] = lo

    def roots(self) -> np.ndarray:
        return np.fromiter((self.find(i) for i in range(self.parent.shape[0])), dtype=np.int64,
                           count=self.parent.shape[0])
