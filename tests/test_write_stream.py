"""The write, ingest and token stages in bounded memory give what the whole-frame code gave (issue 12).

The side files (`rejects/`, `scores/`) are streamed part by part: each must equal the whole-frame concat
of its parts that the write stage used to hold (`read_parts`), on a real multi-part build; the report and the
empty-build check read summaries built part by part; ingest decides duplicates from id hashes and must stay
exact when hashes collide; the plots' histograms are numpy's; token accounting sums each part."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

import curate.build as build_mod
from curate.composition import token_keys
from curate.reject_summary import merge, summarize
from curate.report_html import cluster_sizes, histograms
from curate.runner import sources, write
from curate.runner.state import RunDir, read_parts, write_part
from curate.runner.tokens import output_keys
from curate.runner.write import shard_layout, stream_parts, write_shards
from curate.tokens import TokenCounter

MEDQA = "medqa/train_subset1030.json"
MEDMCQA_DEV = "medmcqa/dev_first3683.json"  # benchmark rows: decontaminate rejects them, part after part


def _recipe(work: Path, data_dir: Path) -> Path:
    path = work / "two-sources.yaml"
    path.write_text(f"""name: two-sources
description: real MedQA train and MedMCQA dev rows in many parts
license: mit
sources:
  - {{name: medqa, format: medqa, path: {data_dir / MEDQA}}}
  - {{name: medmcqa, format: medmcqa, path: {data_dir / MEDMCQA_DEV}}}
steps:
  - normalize: {{}}
  - validate: {{}}
  - langid: {{}}
  - dedup: {{}}
  - decontaminate: {{max_hit_fraction: null}}  # most MedMCQA-dev rows are benchmark rows: rejected
  - template: {{}}
output:
  split: train
  max_rows_per_shard: 700
""")
    return path


def _old_examples(stage: str, frame: pl.DataFrame) -> list[str]:
    """report.md's example lines as the whole-frame report wrote them."""
    out = []
    for reason in frame["reason"].unique(maintain_order=True).to_list()[:5]:
        row = frame.filter(pl.col("reason") == reason).row(0, named=True)
        text = str(row.get("question") or row.get("raw") or "")[:120].replace("|", "\\|").replace("\n", " ")
        detail = str(row.get("detail") or "")[:120].replace("|", "\\|")
        out.append(f"- `{stage}` / `{reason}`: {text} — {detail}")
    return out


def test_side_files_equal_the_whole_concat_of_their_parts(data_dir: Path, work: Path, monkeypatch) -> None:
    """4713 real MedQA + MedMCQA-dev rows in parts of 300: every rejects/ and scores/ file equals (values, columns,
    dtypes) `read_parts` of its parts, which is what the write stage wrote before it streamed them; the summaries
    equal those of the whole frames, and report.md shows the rows the whole-frame report showed."""
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    expected: dict[str, pl.DataFrame] = {}
    n_parts: dict[str, int] = {}
    returned = {}
    real = build_mod.write_build

    def spy(final, manifest, data_parts, split, max_rows, rejects, scores):
        for kind, stages in (("rejects", rejects), ("scores", scores)):
            for stage, files in stages.items():
                if files:
                    expected[f"{kind}/{stage}.parquet"] = read_parts(files)  # the old write stage's frame
                    n_parts[f"{kind}/{stage}.parquet"] = len(files)
        out = real(final, manifest, data_parts, split, max_rows, rejects, scores)
        returned.update(out[1])
        return out

    monkeypatch.setattr(build_mod, "write_build", spy)
    res = build_mod.run_build(str(_recipe(work, data_dir)), out=work / "out", options={"batch_rows": 300})
    m = res.manifest
    assert m["rows_in"] == 1030 + 3683
    assert sorted(expected) == sorted(m["output"]["rejects"] + m["output"]["scores"])
    assert n_parts["rejects/decontaminate.parquet"] > 5 and expected["rejects/decontaminate.parquet"].height > 3000
    for name, frame in expected.items():
        written = pl.read_parquet(res.path / name)
        assert written.schema == frame.schema, name
        assert written.equals(frame), name
    report = (res.path / "report.md").read_text()
    for name, frame in expected.items():
        if name.startswith("rejects/"):
            stage = name.removeprefix("rejects/").removesuffix(".parquet")
            whole, streamed = summarize(frame), returned[stage]
            assert streamed.rows == whole.rows == frame.height
            assert streamed.head.equals(whole.head) and streamed.firsts.equals(whole.firsts)
            for line in _old_examples(stage, frame):
                assert line in report


def test_stream_parts_aligns_parts_of_different_schemas(data_dir: Path, tmp_path: Path) -> None:
    """Parts that lack a column, hold it as all-null, or as Int64 where others have Float64 come out as the
    diagonal-relaxed concat of the parts (the old `read_parts`), in one file."""
    rows = pl.read_json(data_dir / MEDQA).select("question", "answer_idx", "options").head(90)
    a = rows.slice(0, 30).with_columns(pl.lit(1).alias("score"))
    b = rows.slice(30, 30).drop("options").with_columns(pl.lit(0.5).alias("score"))
    c = rows.slice(60, 30).with_columns(pl.lit(None).alias("score"), pl.lit("x").alias("extra"))
    files = [write_part(f, tmp_path / f"part-{i}.parquet") for i, f in enumerate((a, b, c))]
    stream_parts(files, tmp_path / "out.parquet")
    written, old = pl.read_parquet(tmp_path / "out.parquet"), read_parts(files)
    assert written.schema == old.schema and written["score"].dtype == pl.Float64
    assert written.equals(old) and written.height == 90


def test_output_shards_are_the_same_bytes_however_the_rows_were_spilled(data_dir: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """Row groups are cut at fixed output row numbers: real MedQA rows (nested options) spilled as one part
    or as parts of 7, 500, 13 and 510 rows (row groups that span parts, parts that span shards) give
    byte-identical shards with the same row groups, and the shards read back as the rows."""
    monkeypatch.setattr(write, "ROW_GROUP_ROWS", 150)
    rows = pl.read_json(data_dir / MEDQA).head(1030)
    for folder in ("one", "many"):
        (tmp_path / folder).mkdir()
    one = [write_part(rows, tmp_path / "one" / "part-0.parquet")]
    cuts = [0, 7, 507, 520, 1030]
    many = [write_part(rows.slice(a, b - a), tmp_path / "many" / f"part-{i}.parquet")
            for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False))]
    out_one, cols = write_shards(one, tmp_path / "out-one", "train", 400)
    out_many, _ = write_shards(many, tmp_path / "out-many", "train", 400)
    assert [p.name for p in out_one] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    assert [p.read_bytes() for p in out_one] == [p.read_bytes() for p in out_many]
    groups = [[pq.ParquetFile(p).metadata.row_group(g).num_rows for g in range(pq.ParquetFile(p).num_row_groups)]
              for p in out_one]
    assert groups == shard_layout(1030, 400, 150) == [[150, 150, 100], [150, 150, 100], [150, 80]]
    assert pl.read_parquet(out_many).equals(rows) and cols == rows.columns


def test_an_empty_output_is_one_shard_without_rows(tmp_path: Path) -> None:
    empty = [write_part(pl.DataFrame(schema={"id": pl.Utf8, "question": pl.Utf8}), tmp_path / "part-0.parquet")]
    out, cols = write_shards(empty, tmp_path / "out", "train", 400)
    assert [p.name for p in out] == ["train-00000-of-00001.parquet"] and cols == ["id", "question"]
    assert pl.read_parquet(out[0]).height == 0 and shard_layout(0, 400, 150) == [[]]


def test_reject_summary_of_parts_is_that_of_the_whole(data_dir: Path) -> None:
    frame = pl.read_json(data_dir / MEDQA).select("question").with_row_index("source_row").with_columns(
        pl.when(pl.col("source_row") % 7 == 0).then(pl.lit("a")).when(pl.col("source_row") > 500)
        .then(pl.lit("late")).otherwise(pl.lit("b")).alias("reason"), pl.lit("why").alias("detail"))
    whole = summarize(frame)
    merged = merge(summarize(frame.slice(i, 100)) for i in range(0, frame.height, 100))
    assert merged.rows == whole.rows == 1030
    assert merged.head.equals(whole.head) and merged.firsts.equals(whole.firsts)
    assert [r["reason"] for r in merged.reasons(5)] == ["a", "b", "late"]
    assert merged.reasons(5)[2]["source_row"] == 501


def _old_ingest(keys: pl.DataFrame) -> pl.DataFrame:
    """(_row, detail) of the duplicates as the whole-frame ingest computed them."""
    test_last = (pl.col("source_split") != "test").fill_null(True)
    first = keys.with_row_index("_row").sort(test_last, maintain_order=True).group_by("id", maintain_order=True).agg(
        pl.col("_row").first().alias("_first"), pl.col("source").first().alias("_fsrc"),
        pl.col("source_id").first().alias("_fsid"))
    tagged = keys.with_row_index("_row").join(first, on="id", how="left", maintain_order="left")
    return tagged.filter(pl.col("_row") != pl.col("_first")).select(
        pl.col("_row").cast(pl.UInt64),
        (pl.lit("same content as ") + pl.col("_fsrc") + pl.lit(":") + pl.col("_fsid").fill_null("?")).alias("detail"))


@pytest.mark.parametrize("collide", [False, True])
def test_ingest_rejects_the_same_rows_with_the_same_details(data_dir: Path, tmp_path: Path, monkeypatch,
                                                            collide: bool) -> None:
    """Repeats within a source, across sources and a test copy that wins over an earlier training row: the
    kept parts and the rejects equal the whole-frame ingest's; with every id hash colliding, still exact."""
    if collide:
        monkeypatch.setattr(sources, "id_hashes", lambda files: pl.Series(
            "id", [7] * sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files), dtype=pl.UInt64))
    qa = pl.read_json(data_dir / MEDQA).head(300)
    base = qa.select(pl.col("question").hash().cast(pl.Utf8).alias("id"), "question",
                     pl.lit("medqa").alias("source"), pl.int_range(pl.len()).cast(pl.Utf8).alias("source_id"),
                     pl.lit("train").alias("source_split"))
    train = pl.concat([base, base.slice(10, 20)])  # 20 repeats inside the source
    test = base.slice(100, 15).with_columns(pl.lit("bench").alias("source"), pl.lit("test").alias("source_split"))
    run = RunDir(tmp_path / "run")
    for name, frame in (("a", train), ("b", test)):
        for i, chunk in enumerate(frame.iter_slices(70)):
            write_part(chunk, run.sub("sources", name) / f"part-{i:05d}.parquet")
    recipe = SimpleNamespace(sources=[SimpleNamespace(name="a"), SimpleNamespace(name="b")])
    kept_parts, meta = sources.ingest(recipe, run)
    everything = pl.concat([train, test])
    dup = _old_ingest(everything.select("id", "source", "source_id", "source_split"))
    assert meta["rows_rejected"] == dup.height == 35 and meta["rows_kept"] == everything.height - 35
    kept = read_parts(kept_parts)
    assert kept.equals(everything.with_row_index("_row").filter(~pl.col("_row").is_in(dup["_row"].implode()))
                       .drop("_row"))
    rej = read_parts(sorted((run.path / "s00-ingest").glob("rejects-*.parquet")))
    assert rej["detail"].to_list() == dup["detail"].to_list()
    assert rej.filter(pl.col("source") == "bench").height == 0  # the test copies were kept
    assert rej["reason"].unique().to_list() == ["duplicate_id"]


def test_histograms_are_numpys(data_dir: Path) -> None:
    """The report's two-pass polars histograms give np.histogram's bins and counts (what ax.hist drew)."""
    frame = pl.concat([pl.read_json(data_dir / MEDQA).select("question").with_columns(pl.lit("medqa").alias("s")),
                       pl.read_ndjson(data_dir / MEDMCQA_DEV).select("question").with_columns(pl.lit("mcq").alias("s")),
                       pl.DataFrame({"question": ["same"] * 4, "s": ["const"] * 4})])
    got = histograms(frame.lazy(), pl.col("question").str.len_chars(), pl.col("s"))
    assert [g for g, _, _ in got] == ["const", "mcq", "medqa"]
    for g, edges, counts in got:
        values = frame.filter(pl.col("s") == g)["question"].str.len_chars().to_numpy()
        n, e = np.histogram(values, bins=30)
        assert counts == n.tolist() and np.array_equal(np.array(edges), e), g


def test_cluster_sizes_count_only_clusters_with_duplicates() -> None:
    scores = pl.DataFrame({"id": ["a", "b", "c", "d", "e", "f"], "dup_cluster": ["a", "a", "a", "d", "e", "e"]})
    assert sorted(cluster_sizes(scores.lazy()).to_list()) == [2, 3]
    assert sorted(cluster_sizes(scores.drop("id")).to_list()) == [2, 3]


def test_token_keys_summed_per_part_equal_the_per_row_keys(data_dir: Path, tmp_path: Path) -> None:
    frame = pl.read_ndjson(data_dir / MEDMCQA_DEV).select(
        "question", pl.col("subject_name").alias("source"), pl.lit("mcq").alias("task"))
    files = [write_part(c, tmp_path / f"part-{i}.parquet") for i, c in enumerate(frame.iter_slices(500))]
    counter = TokenCounter()
    rows = token_keys(frame, counter)
    grouped = output_keys(files, counter)
    assert grouped["rows"].sum() == frame.height and grouped["tokens"].sum() == rows["tokens"].sum()
    by_source = rows.group_by("source").agg(pl.len().alias("rows"), pl.col("tokens").sum()).sort("source")
    assert grouped.group_by("source").agg(pl.col("rows").sum().cast(pl.UInt32), pl.col("tokens").sum()) \
        .sort("source").equals(by_source)
