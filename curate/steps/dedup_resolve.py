"""Which kept row each near duplicate points at: the greedy keep rule of `dedup`, over edges read in chunks.

Verified near-duplicate pairs are far more numerous than rows on template-made data (1M derived MedMCQA
rows: 11M pairs, 264 MB as int64 + float64 at 2M rows). `EdgeStore` keeps them in chunk files in the
step's scratch folder (or in memory when no folder is given), and `resolve_clusters` walks the chunks once
per round, so it holds two bytes per row plus one chunk, whatever the pair count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: Rounds of the vectorised greedy before the undecided rest is finished one row at a time. Real and
#: benchmark data settle in under 20 rounds (1M derived rows, 11M verified pairs: 9 rounds); only a long
#: chain of near duplicates ordered by priority (A~B~C~... ) needs more.
MAX_ROUNDS = 64

EDGE = np.dtype([("u", np.int64), ("v", np.int64), ("s", np.float64)])
LIVE = np.dtype([("u", np.int64), ("v", np.int64)])


class EdgeStore:
    """Edges (u, v[, similarity]) with `u` ranking better than `v`, in chunks: `.npy` files in `folder`, or
    arrays in memory when it is None."""

    def __init__(self, folder: Path | None = None, dtype: np.dtype = EDGE):
        self.folder, self.dtype = folder, dtype
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        self._chunks: list[np.ndarray | Path] = []
        self.count = 0

    def add(self, u: np.ndarray, v: np.ndarray, s: np.ndarray | None = None) -> None:
        if not u.shape[0]:
            return
        chunk = np.empty(u.shape[0], dtype=self.dtype)
        chunk["u"], chunk["v"] = u, v
        if s is not None:
            chunk["s"] = s
        self.count += chunk.shape[0]
        if self.folder is None:
            self._chunks.append(chunk)
            return
        path = self.folder / f"edges-{len(self._chunks):06d}.npy"
        np.save(path, chunk)
        self._chunks.append(path)

    def __iter__(self) -> Iterator[np.ndarray]:
        for c in self._chunks:
            yield c if isinstance(c, np.ndarray) else np.load(c)

    def discard(self) -> None:
        for c in self._chunks:
            if isinstance(c, Path):
                c.unlink()
        self._chunks, self.count = [], 0


def orient(a: np.ndarray, b: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) with u the better-ranked (lower rank) end of each pair."""
    swap = rank[a] > rank[b]
    return np.where(swap, b, a), np.where(swap, a, b)


def resolve_clusters(n: int, edges: np.ndarray | EdgeStore, sims: np.ndarray | None, rank: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Which kept row each row duplicates (itself when kept) and its similarity to it.

    Rows are visited best rank first; a row is kept unless it has a verified edge to a row already kept,
    in which case it points at the most similar such row (ties: the better-ranked one). So a row leaves
    only as the direct near duplicate of a kept row: no A~B~C chains where C is unlike A.

    The visit is computed in rounds over the edges, not row by row: a row is kept once every better-ranked
    neighbour has left, and leaves once one of them is kept; that is the row-order result. At 1M rows and
    11M pairs a Python dict of neighbours took 60 s and 1.8 GB; the rounds take a few seconds. `edges` is an
    (m, 2) array with `sims`, or an oriented EdgeStore (then `sims` is None); each round streams the edges
    still undecided into a new store beside it.
    """
    store = edges if isinstance(edges, EdgeStore) else _in_memory(edges, sims, rank)
    state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, 2 left
    live = store
    for r in range(MAX_ROUNDS):
        if not live.count:
            break
        blocked = np.zeros(n, dtype=bool)
        for c in live:
            blocked[c["v"][state[c["u"]] != 2]] = True
        state[(state == 0) & ~blocked] = 1
        for c in live:
            state[c["v"][state[c["u"]] == 1]] = 2
        nxt = EdgeStore(None if store.folder is None else store.folder / f"live-{r:02d}", LIVE)
        for c in live:
            m = state[c["v"]] == 0
            nxt.add(c["u"][m], c["v"][m])
        if live is not store:
            live.discard()
        live = nxt
    if live.count:
        rest = np.concatenate(list(live))
        _finish_in_order(state, rest["u"], rest["v"], rank)
    if live is not store:
        live.discard()
    state[state == 0] = 1
    return _nearest_kept(n, store, state, rank)


def _in_memory(edges: np.ndarray, sims: np.ndarray | None, rank: np.ndarray) -> EdgeStore:
    store = EdgeStore()
    if edges.shape[0]:
        u, v = orient(edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64), rank)
        store.add(u, v, np.ones(edges.shape[0]) if sims is None else sims)
    return store


def _nearest_kept(n: int, store: EdgeStore, state: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per left row, its most similar kept neighbour (ties: the better-ranked one), chunk by chunk."""
    target = np.arange(n, dtype=np.int64)
    sim = np.ones(n)
    for c in store:
        u, v = c["u"], c["v"]
        sel = (state[u] == 1) & (state[v] == 2)
        eu, ev, es = u[sel], v[sel], c["s"][sel]
        order = np.lexsort((rank[eu], -es, ev))
        first = np.ones(order.shape[0], dtype=bool)
        first[1:] = ev[order][1:] != ev[order][:-1]
        pick = order[first]
        pu, pv, ps = eu[pick], ev[pick], es[pick]
        had = target[pv] != pv  # a left row points at a kept row from an earlier chunk
        better = ~had | (ps > sim[pv]) | ((ps == sim[pv]) & (rank[pu] < rank[target[pv]]))
        pu, pv, ps = pu[better], pv[better], ps[better]
        target[pv], sim[pv] = pu, ps
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
