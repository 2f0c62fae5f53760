"""`KeyParts.map`: a global step's pure per-part function over its key parts, results in part order, whichever
order (or process) the executor evaluates the parts in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from curate.runner.globals import StageKeys
from curate.runner.state import unified, write_part
from curate.steps.dedup import Dedup
from curate.steps.keyed import ROW, KeyFrame, key_frame, map_parts


def _parts(frame: pl.DataFrame, sizes: list[int], folder: Path) -> list[Path]:
    """`frame` spilled as parts of the given sizes (0: an empty part, a shard whose rows were all rejected)."""
    files, at = [], 0
    for k, size in enumerate(sizes):
        files.append(write_part(frame.slice(at, size), folder / f"part-{k:05d}.parquet"))
        at += size
    assert at == frame.height
    return files


def _backwards(fn: Callable[[int], object], n: int) -> Iterator[object]:
    """A `map_parts` that evaluates the last part first (as parallel workers may finish), yields in order."""
    done = {i: fn(i) for i in reversed(range(n))}
    return iter([done[i] for i in range(n)])


def _summary(part: pl.DataFrame) -> tuple[list[int], list[str]]:
    return part[ROW].to_list(), part["id"].to_list()


def test_stage_keys_map_gives_each_part_as_iter_does_in_part_order(medqa_train: pl.DataFrame, tmp_path: Path) -> None:
    files = _parts(medqa_train, [300, 0, 300, 430], tmp_path)
    reads = Dedup({}).reads(medqa_train.columns)
    walked = [_summary(p) for p in StageKeys(files, unified(files), reads)]
    assert [len(ids) for _, ids in walked] == [300, 0, 300, 430]
    assert [r for rows, _ in walked for r in rows] == list(range(medqa_train.height))
    assert [i for _, ids in walked for i in ids] == medqa_train["id"].to_list()
    for mapper in (None, _backwards):
        keys = StageKeys(files, unified(files), reads) if mapper is None else \
            StageKeys(files, unified(files), reads, mapper)
        assert list(keys.map(_summary)) == walked


def test_key_frame_map_is_one_part_and_map_parts_falls_back_to_iter(medqa_train: pl.DataFrame) -> None:
    keys = key_frame(Dedup({}), medqa_train)
    assert list(keys.map(_summary)) == [_summary(keys.frame)]

    class WalkOnly:  # KeyParts without `map`
        def __init__(self, frame: pl.DataFrame):
            self.frames = [frame.slice(0, 500), frame.slice(500)]

        def __iter__(self) -> Iterator[pl.DataFrame]:
            yield from self.frames

    walk = WalkOnly(keys.frame)
    assert list(map_parts(walk, _summary)) == [_summary(f) for f in walk.frames]
    assert list(map_parts(KeyFrame(keys.frame), _summary)) == [_summary(keys.frame)]


@pytest.mark.parametrize("sizes", [[1100], [256, 256, 0, 256, 256, 76]])
def test_dedup_scans_mapped_out_of_order_give_the_one_part_decision(medqa_train: pl.DataFrame, tmp_path: Path,
                                                                    cur_ctx, sizes: list[int]) -> None:
    """Exact copies of 70 real rows placed after the originals (other parts), plus the subset's own reworded
    repeat (row 705 = row 633): the scans of 6 parts evaluated last part first decide as one part in memory."""
    copies = medqa_train.head(70).with_columns(pl.format("copy-{}", pl.col("id")).alias("id"))
    frame = pl.concat([medqa_train, copies])
    step = Dedup({})
    ctx = replace(cur_ctx, scratch_dir=tmp_path / "scratch")
    one = step.decide(key_frame(step, frame), ctx)
    files = _parts(frame, sizes, tmp_path)
    many = step.decide(StageKeys(files, unified(files), step.reads(frame.columns), _backwards), ctx)
    assert many.stats == one.stats
    assert (many.stats["exact_duplicates"], many.stats["near_duplicates"]) == (70, 1)
    assert many.code.tolist() == one.code.tolist() and many.rep.tolist() == one.rep.tolist()
    assert many.sim.tolist() == one.sim.tolist() and many.rep_ids.equals(one.rep_ids)
    assert not list((tmp_path / "scratch").iterdir())


def test_dedup_against_an_earlier_build_with_parts_mapped_out_of_order(medqa_train: pl.DataFrame, tmp_path: Path,
                                                                        cur_ctx) -> None:
    """Rows of an earlier build (300 real rows, scanned in the driver first) numbered before the stage's parts,
    which are scanned last part first: the decision is the one-part one and rejected rows name old ids."""
    (tmp_path / "old").mkdir()
    old = write_part(medqa_train.head(300), tmp_path / "old" / "train-00000.parquet")
    new = medqa_train.slice(200).with_columns(pl.format("new-{}", pl.col("id")).alias("id"))  # 100 repeat old rows
    step = Dedup({"against": [str(old)]})
    ctx = replace(cur_ctx, scratch_dir=tmp_path / "scratch")
    one = step.decide(key_frame(step, new), ctx)
    files = _parts(new, [200, 0, 330, 300], tmp_path)
    many = step.decide(StageKeys(files, unified(files), step.reads(new.columns), _backwards), ctx)
    assert many.stats == one.stats and many.stats["against_rows"] == 300
    assert many.stats["exact_duplicates"] == 100
    assert many.code.tolist() == one.code.tolist() and many.rep.tolist() == one.rep.tolist()
    assert many.rep_ids.equals(one.rep_ids)
    assert set(medqa_train["id"].slice(200, 100)) <= set(many.rep_ids["_rep_id"])
