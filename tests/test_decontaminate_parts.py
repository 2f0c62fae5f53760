"""decontaminate decides part by part: many small key parts give exactly the one-part result, and the decision
keeps only the rows that match a benchmark item, never all keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from fixtures_curation import read_real

from curate.build import run_build
from curate.errors import RecipeError
from curate.record import to_frame
from curate.steps import BuildContext, get_step
from curate.steps.keyed import ROW

STEPS = "steps:\n  - normalize: {}\n  - validate: {}\n  - decontaminate: {}\n  - template: {}\noutput:\n  split: train\n"


def _recipe(work: Path, data_dir: Path) -> Path:
    """Real training files (HEAD-QA train, MedQA train) plus the last 500 MedMCQA dev rows: benchmark rows a
    careless mix would carry, 500 of 4,187 rows, so the build is not refused as a benchmark split."""
    path = work / "mixed.yaml"
    path.write_text(
        "name: mixed\ndescription: real train files plus benchmark rows\nlicense: mit\nsources:\n"
        f"  - {{name: headqa, format: headqa, path: {data_dir / 'headqa/train.json'}, license: mit}}\n"
        f"  - {{name: medqa, format: medqa, path: {data_dir / 'medqa/train_subset1030.json'}, license: mit}}\n"
        f"  - {{name: medmcqa, format: medmcqa, path: {data_dir / 'medmcqa/dev_last500.json'}, license: mit}}\n"
        + STEPS)
    return path


def _decontaminate(manifest: dict) -> dict:
    step = next(s for s in manifest["steps"] if s["name"] == "decontaminate")
    return {k: v for k, v in step.items() if k != "seconds"}


def test_many_parts_give_the_one_part_rejects_scores_and_stats(data_dir: Path, work: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    recipe = str(_recipe(work, data_dir))
    one = run_build(recipe, out=work / "one", options={"batch_rows": 1_000_000})
    many = run_build(recipe, out=work / "many", options={"batch_rows": 97})
    assert many.manifest["output"]["sha256"] == one.manifest["output"]["sha256"]
    assert _decontaminate(many.manifest) == _decontaminate(one.manifest)
    for name in ("rejects/decontaminate.parquet", "scores/decontaminate.parquet"):
        assert pl.read_parquet(many.path / name).equals(pl.read_parquet(one.path / name)), name
    step = _decontaminate(many.manifest)
    assert step["rows_in"] > 40 * 97  # the keyed stage really ran on dozens of parts
    rejects = pl.read_parquet(many.path / "rejects/decontaminate.parquet")
    from_dev = rejects.filter(pl.col("source") == "medmcqa")  # every dev row that passed `validate`
    invalid = pl.read_parquet(many.path / "rejects/validate.parquet").filter(pl.col("source") == "medmcqa")
    assert from_dev.height == 500 - invalid.height >= 490
    assert from_dev["detail"].str.starts_with("medmcqa_dev:").all()
    assert step["stats"]["benchmarks"]["medmcqa_dev"]["hits"] == from_dev.height
    assert step["stats"]["hits"] == step["reasons"]["benchmark_overlap"] == rejects.height
    scores = pl.read_parquet(many.path / "scores/decontaminate.parquet")
    assert scores.height == step["rows_in"] and scores["bench_overlap"].null_count() == 0
    assert scores.filter(pl.col("bench_name").is_null())["bench_overlap"].eq(0.0).all()
    # partial matches below the threshold are scored but kept, in every part alike
    near = scores.filter(pl.col("bench_name").is_not_null() & ~pl.col("id").is_in(rejects["id"].implode()))
    assert near.height > 0 and (near["bench_overlap"] < 0.5).all()


class Parts:
    """`KeyParts` that can only be walked part by part: `collect` (all keys at once) is refused."""

    def __init__(self, keys: pl.DataFrame, size: int):
        self.keys, self.size = keys, size
        self.height, self.columns = keys.height, keys.columns
        self.walked = 0

    def __iter__(self) -> Iterator[pl.DataFrame]:
        for s in range(0, self.keys.height, self.size):
            self.walked += 1
            yield self.keys.slice(s, self.size)

    def collect(self) -> pl.DataFrame:
        raise AssertionError("decontaminate collected all keys")


def test_decide_walks_the_parts_and_keeps_only_matched_rows(data_dir: Path, cur_ctx: BuildContext, monkeypatch,
                                                           medqa_train: pl.DataFrame) -> None:
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    dev = read_real(data_dir, "medmcqa", "medmcqa/dev_last500.json")
    rows = pl.concat([medqa_train, dev.select(medqa_train.columns)]).with_row_index(ROW)
    keys = Parts(rows.select(ROW, "id", "question", "options", "task"), 128)
    step = get_step("decontaminate")({})
    ctx = cur_ctx
    decision = step.decide(keys, ctx)
    assert keys.walked == 12
    whole = step.apply(rows.drop(ROW), ctx)  # one part in memory
    assert decision.stats == whole.stats and decision.stats["hits"] == whole.rejected.height >= 500
    matched = whole.scores["bench_name"].is_not_null().sum()
    assert decision.matches.height == matched < rows.height  # only the rows with a match are held
    kept, rejected, scores = [], [], []
    for s in range(0, rows.height, 300):  # the runner's parts need not be the key parts
        r = decision.apply(rows.slice(s, 300))
        kept.append(r.kept)
        rejected.append(r.rejected)
        scores.append(r.scores)
    assert pl.concat(kept).equals(whole.kept) and pl.concat(rejected).equals(whole.rejected)
    assert pl.concat(scores).equals(whole.scores)


def test_a_benchmark_split_is_refused_on_the_total_hits(data_dir: Path, cur_ctx: BuildContext, monkeypatch,
                                                       medqa_train: pl.DataFrame) -> None:
    """The refusal counts the hits of all parts against all rows, after the pass: 300 MedQA train rows (one
    of them a vignette also in MedQA test) then 500 MedMCQA dev rows, in parts of 100, are refused as 501 of
    800, not as one part's 100 of 100 (the message must name the whole input)."""
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    dev = read_real(data_dir, "medmcqa", "medmcqa/dev_last500.json")
    rows = pl.concat([medqa_train.head(300), dev.select(medqa_train.columns)]).with_row_index(ROW)
    keys = Parts(rows.select(ROW, "id", "question", "options", "task"), 100)
    with pytest.raises(RecipeError, match=r"501 of 800 input rows \(63%\) .*medmcqa_dev: 500, medqa_test: 1"):
        get_step("decontaminate")({}).decide(keys, cur_ctx)
    assert keys.walked == 8


def test_no_rows_decide_nothing(cur_ctx: BuildContext) -> None:
    frame = to_frame([]).with_row_index(ROW)
    keys = Parts(frame.select(ROW, "id", "question", "options", "task"), 10)
    decision = get_step("decontaminate")({}).decide(keys, cur_ctx)
    assert decision.stats["rows_checked"] == 0 and decision.matches.height == 0
    r = decision.apply(frame)
    assert r.kept.height == r.rejected.height == r.scores.height == 0


def test_a_verbatim_copy_is_named_by_the_first_rule_that_ties(data_dir: Path, cur_ctx: BuildContext, monkeypatch,
                                                             medqa_train: pl.DataFrame) -> None:
    """A verbatim benchmark row matches its item 1.0 by n-grams (or full text, when short) and 1.0 by its
    options: the detail names the first rule, n-grams, then full text, never the option rule (the sort that
    picked the best match was not stable: the same rows got either detail from one build to the next)."""
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    dev = read_real(data_dir, "medmcqa", "medmcqa/dev_last500.json")
    res = get_step("decontaminate")({}).apply(pl.concat([medqa_train, dev.select(medqa_train.columns)]), cur_ctx)
    copies = res.rejected.filter(pl.col("source") == "medmcqa")
    how = copies["detail"].str.extract(r"\((.*)\)$")
    assert copies.height == 500 and how.is_in(["1.0 of its 13-grams", "contains its full text"]).all(), \
        how.value_counts()
    assert how.eq("contains its full text").sum() > 0 and how.eq("1.0 of its 13-grams").sum() > 0
