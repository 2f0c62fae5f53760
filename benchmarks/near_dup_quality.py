"""Near-duplicate quality and speed: our `dedup` step vs datasketch and datatrove on the same labelled pairs.

Pairs (built from the real files by `benchmarks/_data.py`): 1,500 true near-duplicates (a real row and a
copy with one realistic edit: option shuffle, punctuation/case, typos, a lead-in, or all three) and
negatives: distinct real questions from the same source and subject, plus rows that share their stem
with another row but not its options (HEAD-QA's "The peptide bond:"-style stems, MedQA shared vignettes).
All rows go through each method at once; a pair is predicted duplicate when both rows end in one cluster.

Every method sees the same text (question + context + sorted options, normalised). Two settings:
- our step's defaults: word bigram shingles, 128 permutations, Jaccard threshold 0.5: ours vs datasketch,
  called its fastest documented way (`MinHash.bulk` + `MinHashLSH.insertion_session`);
- the Aloe Beta settings (datatrove's defaults): word 5-grams, 14 bands x 8 rows: ours vs datatrove's
  four MinHash stages (run in process, see benchmarks/_datatrove_minhash.py).
Seconds are the median of --repeat runs with min-max; ratios are of medians. text-dedup is not installed
in this environment (it pins urllib3<=2 and rich<14 and pulls pyspark).

    python benchmarks/near_dup_quality.py [--repeat 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
from _data import near_dup_pairs
from _datatrove_minhash import datatrove_clusters
from _timing import measure
from datasketch import MinHash, MinHashLSH

from curate.minhash import UnionFind
from curate.steps import BuildContext, get_step
from curate.steps.dedup import near_text_expr

NUM_PERM, THRESHOLD, NGRAM = 128, 0.5, 2  # the dedup step defaults


def _shingles(text: str) -> set[bytes]:
    w = text.split()
    if len(w) < NGRAM:
        return {" ".join(w).encode()} if w else set()
    return {" ".join(w[i : i + NGRAM]).encode() for i in range(len(w) - NGRAM + 1)}


def datasketch_clusters(frame: pl.DataFrame, verify: bool) -> np.ndarray:
    """datasketch's fastest documented use: `MinHash.bulk` (one shared permutation state) and an
    `insertion_session` (buffered index writes), then one query per document."""
    texts = frame.select(near_text_expr().alias("t"))["t"].to_list()
    sets = [_shingles(t) for t in texts]
    hashes = MinHash.bulk([list(s) for s in sets], num_perm=NUM_PERM, seed=1)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m)
    uf = UnionFind(len(texts))
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j == i:
                continue
            if verify:
                a, b = sets[i], sets[j]
                if not a or len(a & b) / len(a | b) < THRESHOLD:
                    continue
            uf.union(i, j)
    return uf.roots()


def datatrove_aloe(frame: pl.DataFrame) -> np.ndarray:
    """datatrove's MinHash at the Aloe Beta settings (its defaults: 5-grams, 14 bands x 8 rows)."""
    texts = frame.select(near_text_expr().alias("t"))["t"].to_list()
    return datatrove_clusters(texts, n_grams=5, num_buckets=14, hashes_per_bucket=8)


def ours_clusters(frame: pl.DataFrame, **params) -> np.ndarray:
    ctx = BuildContext(recipe_name="bench", work_dir=Path("/tmp"))
    res = get_step("dedup")({"ngram": NGRAM, "num_perm": NUM_PERM, "threshold": THRESHOLD, **params}).apply(
        frame, ctx)
    cluster = dict(res.scores.select("id", "dup_cluster").iter_rows())
    return np.array([cluster[i] for i in frame["id"]])


def score(clusters: np.ndarray, pairs: list[tuple]) -> tuple[float, float, float, dict[str, float]]:
    tp = fp = fn = 0
    by_kind: dict[str, list[int]] = {}
    for i, j, dup, kind in pairs:
        pred = clusters[i] == clusters[j]
        tp += pred and dup
        fp += pred and not dup
        fn += (not pred) and dup
        by_kind.setdefault(kind, []).append(int(pred == dup))
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1, {k: sum(v) / len(v) for k, v in by_kind.items()}


ALOE = {"ngram": 5, "num_perm": 112, "bands": 14, "rows": 8, "threshold": 0.72}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    repeat = ap.parse_args().repeat
    frame, pairs = near_dup_pairs()
    kinds = sorted({k for *_, k in pairs})
    groups = {
        "our defaults: word 2-grams, 128 permutations, threshold 0.5": {
            "ours: dedup step (exact + MinHash-LSH + Jaccard check + option check)": lambda: ours_clusters(frame),
            "ours: MinHash-LSH only (verify off, option check off)": lambda: ours_clusters(
                frame, verify=False, min_option_jaccard=0.0),
            "datasketch bulk MinHash + LSH insertion session": lambda: datasketch_clusters(frame, verify=False),
            "datasketch bulk MinHash + LSH + Jaccard check": lambda: datasketch_clusters(frame, verify=True),
        },
        "Aloe Beta settings: word 5-grams, 14 bands x 8 rows (threshold ~0.72)": {
            "ours: dedup step at the Aloe settings": lambda: ours_clusters(frame, **ALOE),
            "ours: MinHash-LSH only at the Aloe settings": lambda: ours_clusters(
                frame, verify=False, min_option_jaccard=0.0, **ALOE),
            "datatrove MinHash (4 stages, in process)": lambda: datatrove_aloe(frame),
        },
    }
    ours_clusters(frame.head(50))  # warm imports
    datatrove_aloe(frame.head(50))
    n_pos = sum(1 for p in pairs if p[2])
    print(f"\nNear-duplicate quality on {len(pairs)} labelled pairs ({n_pos} duplicates, "
          f"{len(pairs) - n_pos} distinct), {frame.height} rows in, median of {repeat} runs\n")
    for title, methods in groups.items():
        print(f"### {title}\n")
        print("| method | precision | recall | F1 | rows out (clusters) | seconds median (min-max) | "
              "ours step / this | " + " | ".join(f"ok: {k}" for k in kinds) + " |")
        print("|---|---|---|---|---|---|---|" + "---|" * len(kinds))
        timings = {name: measure(fn, repeat) for name, fn in methods.items()}
        base = next(iter(timings.values())).median
        for name, t in timings.items():
            p, r, f1, by_kind = score(t.result, pairs)
            cells = " | ".join(f"{by_kind[k]:.1%}" for k in kinds)
            print(f"| {name} | {p:.3f} | {r:.3f} | {f1:.3f} | {len(np.unique(t.result)):,} | {t.cell()} | "
                  f"{t.median / base:.2f}x | {cells} |")
        print()
    print("'ours step / this' = this method's median seconds over our full step's (above 1: ours is faster).")


if __name__ == "__main__":
    main()
