"""Dedup parity: our per-task MinHash (Aloe settings) vs datatrove's MinHash on the same rows, one run.

Rows: the real open-ended files in ../shared/data (MedQuAD, ChatDoctor, every CounselChat answer,
MedInstruct test, MTS-Dialog, LLMs-from-scratch Alpaca, FastChat and LLaMA-Factory chats), read with our
adapters (--rows N: a seeded sample of N of them). Each row goes to its task's settings group (dedup `per_task`
defaults: word 5-grams, 14 bands x 8 rows, 0.72 on question + context + answer; 0.77 on speaker-joined
turns for dialogues).

datatrove side: `MinhashDedupSignature.get_shingles` (its text simplification, spaCy word tokenizer,
xxhash of 5-grams) and `get_signature` (its permutations, 14 buckets x 8 hashes), then datatrove's rule:
two documents are duplicates when one whole bucket signature is equal (stage 2), clustered with
union-find (stage 3). This is datatrove's algorithm run in memory on one machine, not its file pipeline.
ours: `curate.steps.dedup.near_edges` per group (with and without the exact-Jaccard check), union-find.

Parity per row: the row's duplicate cluster (the set of other rows it is clustered with) is the same in
both. The acceptance bar is >= 99% of rows. Two comparisons: LSH alone on both sides (each side's own
random permutations, so pairs far below the threshold that collide by chance differ), and both sides with
the exact Jaccard check our step does by default (datatrove's Jaccard on its own shingles).

Seconds are the median of `--repeat` runs of each side (at least 3), with min and max, and the ratio of the
medians; the clusters are the same in every run (both sides are seeded), so parity is computed once.

    python benchmarks/dedup_parity.py [--rows N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from curate.minhash import UnionFind
from curate.recipe import SourceSpec
from curate.sources import read_source
from curate.steps.dedup import ALOE_PER_TASK, DedupParams, near_edges

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import measure  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = [
    ("medquad", "instruct/medquad"), ("chatdoctor", "dialogue/chatdoctor/genmedgpt5k_first4000.json"),
    ("medinstruct", "instruct/medinstruct/MedInstruct-test.jsonl"), ("mts-dialog", "dialogue/mts-dialog"),
    ("alpaca", "chat-formats/llms-from-scratch/instruction-data.json"),
    ("sharegpt", "chat-formats/fastchat/dummy_conversation.json"),
    ("messages", "chat-formats/llama-factory/kto_en_demo.json"),
]


def load_rows(limit: int | None) -> pl.DataFrame:
    frames = [read_source(SourceSpec(name=f, format=f, path=str(DATA / rel)), base_dir=DATA).frame
              for f, rel in FILES]
    # every CounselChat answer, not only the best: many rows share a question
    cc = pl.read_csv(DATA / "dialogue/counsel-chat/20200325_counsel_chat_train.csv", infer_schema=False)
    frames.append(pl.DataFrame({"id": [f"cc{i}" for i in range(cc.height)], "task": "open_qa",
                                "question": cc["questionText"], "answer": cc["answerText"]}))
    frame = pl.concat(frames, how="diagonal_relaxed").with_row_index("_i")
    frame = frame.with_columns(pl.col("options").fill_null([]))
    return frame.sample(n=limit, seed=0).sort("_i") if limit and limit < frame.height else frame


def raw_text(row: dict) -> str:
    if row["task"] == "dialogue" and row["turns"]:
        return "\n".join(f"{t['role']}: {t['content']}" for t in row["turns"])
    return "\n".join(x for x in (row["question"], row["context"], row["answer"]) if x)


def datatrove_clusters(frame: pl.DataFrame, group_of: np.ndarray, verify: bool) -> np.ndarray:
    """datatrove's shingles + signatures + bucket match; with `verify`, a bucket match must also reach
    the group's threshold in Jaccard similarity of datatrove's own shingle sets."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    uf = UnionFind(frame.height)
    with tempfile.TemporaryDirectory() as tmp:
        for task, t in ALOE_PER_TASK.items():
            idx = np.nonzero(group_of == task)[0]
            cfg = MinhashConfig(n_grams=t.ngram, num_buckets=t.bands, hashes_per_bucket=t.rows)
            sig = MinhashDedupSignature(output_folder=tmp, config=cfg)
            buckets: dict[tuple, list[int]] = {}
            sets: dict[int, set[int]] = {}
            for i in idx.tolist():
                sh = sig.get_shingles(raw_text(frame.row(i, named=True)))
                if sh.size == 0:
                    continue
                sets[i] = set(sh.ravel().tolist())
                for b, h in enumerate(sig.get_signature(sh)):
                    for j in buckets.setdefault((b, *h), []):
                        if not verify or len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= t.threshold:
                            uf.union(j, i)
                    buckets[(b, *h)].append(i)
    return uf.roots()


def ours_clusters(frame: pl.DataFrame, group_of: np.ndarray, verify: bool) -> np.ndarray:
    p = DedupParams(verify=verify, min_option_jaccard=0.0)
    uf = UnionFind(frame.height)
    for task, t in ALOE_PER_TASK.items():
        idx = np.nonzero(group_of == task)[0]
        edges, _ = near_edges(frame[idx], t, p, 1)
        for a, b in idx[edges].tolist():
            uf.union(a, b)
    return uf.roots()


def members(roots: np.ndarray) -> list[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, r in enumerate(roots.tolist()):
        groups.setdefault(r, set()).add(i)
    return [frozenset(groups[r]) for r in roots.tolist()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each side (median, min, max)")
    args = ap.parse_args()
    frame = load_rows(args.rows)
    group_of = frame["task"].to_numpy()
    group_of = np.where(np.isin(group_of, list(ALOE_PER_TASK)), group_of, "open_qa")
    print(f"\nDedup parity on {frame.height} rows "
          f"({', '.join(f'{k}: {int((group_of == k).sum())}' for k in ALOE_PER_TASK)}); seconds: median of "
          f"{args.repeat} runs (min-max)\n")
    print("| ours | datatrove | rows whose duplicate cluster is the same | rows in a duplicate cluster "
          "(ours / datatrove) | seconds, ours | seconds, datatrove | datatrove / ours |")
    print("|---|---|---|---|---|---|---|")
    for verify in (False, True):
        theirs = measure(lambda v=verify: datatrove_clusters(frame, group_of, v), args.repeat)
        ours = measure(lambda v=verify: ours_clusters(frame, group_of, v), args.repeat)
        ref, got = members(theirs.result), members(ours.result)
        same = sum(a == b for a, b in zip(got, ref, strict=True)) / frame.height
        label = ("LSH + Jaccard check (step default)", "bucket match + the same Jaccard check") if verify else (
            "LSH only (verify off)", "bucket match (datatrove's rule)")
        print(f"| {label[0]} | {label[1]} | {same:.2%} | {sum(len(m) > 1 for m in got)} / "
              f"{sum(len(m) > 1 for m in ref)} | {ours.cell()} | {theirs.cell()} | {theirs.median / ours.median:.1f}x |")


if __name__ == "__main__":
    main()
