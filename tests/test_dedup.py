"""dedup: planted duplicates in real sources are clustered and rejected with the kept id; distinct real
questions are never merged; earlier builds are respected."""

from __future__ import annotations

import random
import re
from pathlib import Path

import polars as pl
import pytest
from fixtures_curation import run_step

from curate.record import to_frame


def _variant(row: dict, how: str, rng: random.Random) -> dict:
    """A realistic near copy of a real row."""
    out = {k: row[k] for k in ("source", "task", "question", "context", "options", "answer", "explanation",
                               "subject")}
    out["source_id"] = f"planted-{how}-{row['source_id']}"
    q = row["question"]
    if how == "shuffle":  # same options in another order, labels re-assigned, answer follows its text
        texts = [o["text"] for o in row["options"]]
        gold = next(o["text"] for o in row["options"] if o["label"] == row["answer"])
        rng.shuffle(texts)
        out["options"] = [{"label": lab, "text": t} for lab, t in zip("ABCDE", texts, strict=False)]
        out["answer"] = "ABCDE"[texts.index(gold)]
    elif how == "punct":
        out["question"] = q.replace(",", " ,").replace(".", " .").upper()
    elif how == "typo":  # swap two letters in three words
        words = q.split()
        for i in rng.sample(range(len(words)), 3):
            w = words[i]
            if len(w) > 3:
                words[i] = w[0] + w[2] + w[1] + w[3:]
        out["question"] = " ".join(words)
    elif how == "lead_in":
        out["question"] = "Answer the following USMLE-style question. " + q
    return out


@pytest.fixture(scope="module")
def planted(medqa_train: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    rng = random.Random(3)
    originals = medqa_train.sample(40, seed=11).to_dicts()
    hows = ["shuffle", "punct", "typo", "lead_in"]
    variants = [_variant(r, hows[i % 4], rng) for i, r in enumerate(originals)]
    frame = pl.concat([medqa_train, to_frame(variants).select(medqa_train.columns)])
    expected = {f"planted-{hows[i % 4]}-{r['source_id']}": r["id"] for i, r in enumerate(originals)}
    return frame, expected


def test_planted_near_duplicates_are_rejected_with_the_kept_id(planted, medqa_train, cur_ctx) -> None:
    frame, expected = planted
    res = run_step("dedup", frame, cur_ctx)
    # the real subset holds one reworded repeat of itself (row 705 = row 633, 3 of 4 options shared)
    by_sid = dict(medqa_train.select("source_id", "id").iter_rows())
    real_rej = res.rejected.filter(~pl.col("source_id").str.starts_with("planted-"))
    assert real_rej["source_id"].to_list() == ["705"]
    assert real_rej["detail"][0].startswith(by_sid["633"] + " (jaccard 0.")
    assert res.kept.height == medqa_train.height - 1  # every other real row kept: none merged
    rej = {r["source_id"]: r for r in res.rejected.iter_rows(named=True) if r["source_id"] != "705"}
    assert set(rej) == set(expected)
    for sid, row in rej.items():
        assert row["detail"].split(" ")[0] == expected[sid]
        kind = sid.split("-")[1]
        assert row["reason"] == ("exact_duplicate" if kind in ("shuffle", "punct") else "near_duplicate"), sid
        if row["reason"] == "near_duplicate":
            assert "(jaccard 0." in row["detail"]
    # dup_cluster: own id for kept rows; the kept row's id for the rejected ones (side-car scores)
    assert (res.kept["dup_cluster"] == res.kept["id"]).all()
    clusters = dict(res.scores.select("id", "dup_cluster").iter_rows())
    assert all(clusters[row["id"]] == expected[sid] for sid, row in rej.items())
    for key in ("ngram", "num_perm", "bands", "rows", "threshold", "seed", "verify"):
        assert key in res.stats
    assert res.stats["bands"] * res.stats["rows"] <= res.stats["num_perm"]
    assert res.stats["exact_duplicates"] == 20 and res.stats["near_duplicates"] == 21


def test_distinct_headqa_questions_with_generic_stems_are_not_merged(headqa_train, headqa_test, cur_ctx) -> None:
    frame = pl.concat([headqa_train, headqa_test])
    res = run_step("dedup", frame, cur_ctx)
    key = pl.col("question").str.to_lowercase().str.strip_chars()
    repeated = frame.with_columns(key.alias("k")).filter(pl.col("k").is_duplicated())
    assert repeated.height >= 30  # same stem, several questions
    # rows that share a stem but not their options stay apart
    kept_ids = set(res.kept["id"])
    kept_repeats = repeated.filter(pl.col("id").is_in(kept_ids))
    assert kept_repeats.height >= 0.7 * repeated.height
    by_id = dict(frame.select("id", "options").iter_rows())

    def words(options: list[dict]) -> set[str]:
        return {w for o in options for w in re.split(r"[^\w]+", o["text"].lower()) if w}

    near = res.rejected.filter(pl.col("reason") == "near_duplicate")
    assert near.height >= 5
    for row in near.iter_rows(named=True):  # every merge shares most of its option words with the kept row
        a, b = words(by_id[row["detail"].split(" ")[0]]), words(row["options"])
        assert len(a & b) / len(a | b) >= 0.5, (row["question"], row["detail"])


def test_keep_rule_prefers_explanation_then_earliest(medmcqa_dev, cur_ctx) -> None:
    base = medmcqa_dev.filter(pl.col("explanation").is_not_null()).head(3).to_dicts()
    rows = []
    for r in base:
        bare = dict(r, explanation=None, source_id="bare-" + r["source_id"])
        rows += [bare, dict(r, source_id="with-" + r["source_id"]), dict(bare, source_id="bare2-" + r["source_id"])]
    frame = to_frame(rows).select(medmcqa_dev.columns)
    res = run_step("dedup", frame, cur_ctx)
    assert sorted(res.kept["source_id"]) == sorted("with-" + r["source_id"] for r in base)
    assert res.rejected.height == 6 and set(res.rejected["reason"]) == {"exact_duplicate"}


def test_cross_source_and_against_an_earlier_build(medqa_train, tmp_path: Path, cur_ctx) -> None:
    old = medqa_train.head(300)
    build = tmp_path / "builds" / "medqa" / "20260101-000000-abc"
    (build / "data").mkdir(parents=True)
    old.write_parquet(build / "data" / "train-00000-of-00001.parquet")
    # the new build: 200 old rows again (from another source, lightly edited) + 300 new ones
    again = old.slice(100, 200).with_columns(
        pl.lit("other").alias("source"), (pl.col("question") + " ").alias("question"))
    new = medqa_train.slice(300, 300)
    frame = pl.concat([again, new])
    res = run_step("dedup", frame, cur_ctx, against=[str(build)])
    assert res.kept.height == 300 and set(res.kept["id"]) == set(new["id"])
    assert res.rejected.height == 200
    assert all(d.endswith("(earlier build)") for d in res.rejected["detail"])
    assert res.stats["against_rows"] == 300
    # rows of the earlier build are never compared among themselves
    twice = pl.concat([old.head(5), old.head(5)])
    twice.write_parquet(build / "data" / "train-00000-of-00001.parquet")
    res = run_step("dedup", new.head(50), cur_ctx, against=[str(build / "data" / "*.parquet")])
    assert res.kept.height == 50


def test_deterministic_and_params_logged(medmcqa_dev, cur_ctx) -> None:
    a = run_step("dedup", medmcqa_dev, cur_ctx, seed=5)
    b = run_step("dedup", medmcqa_dev, cur_ctx, seed=5)
    assert a.kept.equals(b.kept) and a.rejected.equals(b.rejected)
    assert a.stats["seed"] == 5
    c = run_step("dedup", medmcqa_dev, cur_ctx, bands=16, rows=8, verify=False)
    assert (c.stats["bands"], c.stats["rows"], c.stats["verify"]) == (16, 8, False)
    with pytest.raises(ValueError, match="bands"):
        run_step("dedup", medmcqa_dev, cur_ctx, bands=16)


def test_against_missing_path_names_it(medqa_train, tmp_path: Path, cur_ctx) -> None:
    from curate.errors import InputError

    with pytest.raises(InputError, match="against"):
        run_step("dedup", medqa_train.head(5), cur_ctx, against=[str(tmp_path / "nope")])


class _Parts:
    """KeyParts over slices of a key frame that refuses `collect`: dedup must walk the parts."""

    def __init__(self, keys: pl.DataFrame, size: int, empty_at: int | None = None):
        self.frames = [keys.slice(s, size) for s in range(0, keys.height, size)]
        if empty_at is not None:  # a row shard whose every row was rejected spills an empty part
            self.frames.insert(empty_at, keys.clear())
        self.height, self.columns = keys.height, keys.columns

    def __iter__(self):
        yield from self.frames

    def collect(self) -> pl.DataFrame:
        raise AssertionError("dedup collected every key at once")


def test_many_key_parts_give_the_one_part_decision(planted, tmp_path: Path, cur_ctx) -> None:
    """Near duplicates across part boundaries (the planted copies sit ~1,000 rows after their originals):
    the out-of-core passes over 7 parts decide exactly as over one part, and leave no spilled files."""
    from dataclasses import replace

    from curate.steps.dedup import Dedup
    from curate.steps.keyed import key_frame

    frame, expected = planted
    step = Dedup({})
    keys = key_frame(step, frame).frame
    ctx = replace(cur_ctx, scratch_dir=tmp_path / "scratch")
    one = step.decide(_Parts(keys, keys.height), ctx)
    many = step.decide(_Parts(keys, 150), ctx)
    assert one.stats == many.stats and many.stats["near_duplicates"] == 21
    assert one.code.tolist() == many.code.tolist() and one.rep.tolist() == many.rep.tolist()
    assert one.sim.tolist() == many.sim.tolist()
    assert one.rep_ids.equals(many.rep_ids) and set(expected.values()) <= set(many.rep_ids["_rep_id"].to_list())
    assert not list((tmp_path / "scratch").iterdir())


def test_an_empty_key_part_does_not_lose_the_ids_rejected_rows_point_at(planted, tmp_path: Path, cur_ctx) -> None:
    """An empty part between two parts (a shard whose rows were all rejected by an earlier row step) must not
    shift the row numbering: every rejected row still names the id of the row it duplicates."""
    from dataclasses import replace

    from curate.steps.dedup import Dedup
    from curate.steps.keyed import key_frame

    frame, _ = planted
    step = Dedup({})
    keys = key_frame(step, frame).frame
    ctx = replace(cur_ctx, scratch_dir=tmp_path / "scratch")
    one = step.decide(_Parts(keys, keys.height), ctx)
    gapped = step.decide(_Parts(keys, 150, empty_at=3), ctx)
    assert one.rep.tolist() == gapped.rep.tolist()
    assert one.rep_ids.equals(gapped.rep_ids) and gapped.rep_ids["_rep_id"].null_count() == 0
