"""The vectorised keep rule (rounds over edge chunks, in memory or spilled) gives the row-by-row greedy's answer."""

from __future__ import annotations

import numpy as np
import pytest

from curate.steps import dedup_resolve
from curate.steps.dedup_resolve import EdgeStore, orient


def greedy_in_rank_order(n: int, edges: np.ndarray, sims: np.ndarray, rank: np.ndarray):
    """The keep rule as written in the Dedup docstring, one row at a time (the reference)."""
    adj: dict[int, dict[int, float]] = {}
    for (i, j), s in zip(edges.tolist(), sims.tolist(), strict=True):
        adj.setdefault(i, {})[j] = s
        adj.setdefault(j, {})[i] = s
    target, sim, kept = np.arange(n), np.ones(n), set()
    for m in sorted(range(n), key=lambda x: rank[x]):
        links = [(s, k) for k, s in adj.get(m, {}).items() if k in kept]
        if links:
            s, k = max(links, key=lambda t: (t[0], -rank[t[1]]))
            target[m], sim[m] = k, s
        else:
            kept.add(m)
    return target, sim


def _graph(rng: np.random.Generator, n: int, m: int, chain: bool):
    if chain:  # a chain ordered by rank: the worst case for rounds (one row decided per round)
        edges = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    else:
        edges = np.unique(np.sort(rng.integers(0, n, size=(m, 2)), axis=1), axis=0)
        edges = edges[edges[:, 0] != edges[:, 1]]
    sims = rng.choice([0.5, 0.6, 0.75, 0.9, 1.0], size=edges.shape[0])  # ties on purpose
    rank = np.arange(n) if chain else rng.permutation(n)
    return edges, sims, rank


def _spilled(edges: np.ndarray, sims: np.ndarray, rank: np.ndarray, folder, chunk: int) -> EdgeStore:
    """The edges oriented and written in chunk files of `chunk` edges, as the dedup step spills them."""
    store = EdgeStore(folder)
    u, v = orient(edges[:, 0], edges[:, 1], rank)
    for s in range(0, edges.shape[0], chunk):
        store.add(u[s:s + chunk], v[s:s + chunk], sims[s:s + chunk])
    return store


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("max_rounds", [64, 2])
@pytest.mark.parametrize("spilled", [False, True])
def test_rounds_give_the_row_by_row_result(seed: int, max_rounds: int, spilled: bool, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(dedup_resolve, "MAX_ROUNDS", max_rounds)  # 2: most rows finish on the one-by-one path
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    edges, sims, rank = _graph(rng, n, int(rng.integers(1, 4 * n)), chain=seed % 4 == 0)
    if spilled:  # chunks of 7 edges: a row's best kept neighbour is often in another chunk
        got_t, got_s = dedup_resolve.resolve_clusters(n, _spilled(edges, sims, rank, tmp_path / "e", 7), None, rank)
        assert not list((tmp_path / "e").glob("live-*/*.npy"))  # each round's undecided edges are removed
    else:
        got_t, got_s = dedup_resolve.resolve_clusters(n, edges, sims, rank)
    want_t, want_s = greedy_in_rank_order(n, edges, sims, rank)
    assert got_t.tolist() == want_t.tolist()
    assert got_s.tolist() == want_s.tolist()
    assert (got_t != np.arange(n)).any()
