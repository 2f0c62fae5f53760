"""The staged runner on real data: batch size never changes the output, and a killed build resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from curate.build import run_build
from curate.runner import accounting, rows, sources
from curate.runner.accounting import merge_stats

MEDQA = "medqa/train_subset1030.json"


def _recipe(work: Path, max_rows: int = 400) -> Path:
    """medqa-sft as shipped, with output shards small enough that the write stage crosses spilled parts."""
    from curate.resources import recipes_dir

    text = (recipes_dir() / "medqa-sft.yaml").read_text()
    path = work / "medqa-sft-small-shards.yaml"
    path.write_text(text.replace("output:\n  split: train", f"output:\n  split: train\n  max_rows_per_shard: {max_rows}"))
    return path


def _counts(manifest: dict) -> list[tuple]:
    return [(s["name"], s["rows_in"], s["rows_kept"], s["rows_rejected"], tuple(sorted(s["reasons"].items())))
            for s in manifest["steps"]]


def test_batch_size_does_not_change_the_output(data_dir: Path, work: Path, monkeypatch) -> None:
    """1030 real MedQA rows in 11 batches of 100 give the bytes of the one-batch build (the in-memory runner's
    output: sha256 3fbbb8f1... for the shipped recipe on this file, checked when the runner was split)."""
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    recipe = str(_recipe(work))
    src = {"medqa": str(data_dir / MEDQA)}
    whole = run_build(recipe, source_overrides=src, out=work / "whole", options={"batch_rows": 1_000_000})
    batched = run_build(recipe, source_overrides=src, out=work / "batched", options={"batch_rows": 100})
    assert batched.manifest["output"]["sha256"] == whole.manifest["output"]["sha256"]
    assert batched.manifest["output"]["files"] == whole.manifest["output"]["files"]
    assert len(whole.manifest["output"]["files"]) == 3  # 1027 rows cut into shards of 400
    assert _counts(batched.manifest) == _counts(whole.manifest)
    m = batched.manifest
    assert m["rows_in"] == 1030 == m["rows_out"] + m["rows_rejected"]
    for step in m["steps"]:
        assert step["rows_in"] == step["rows_kept"] + step["rows_rejected"], step
    # shard stats merge: counts are summed, params kept
    langid = next(s for s in m["steps"] if s["name"] == "langid")
    assert sum(langid["stats"]["languages"].values()) == langid["rows_kept"] and langid["stats"]["threshold"] == 0.25
    for name in ("rejects/dedup.parquet", "rejects/decontaminate.parquet"):
        assert pl.read_parquet(batched.path / name).equals(pl.read_parquet(whole.path / name))
    assert pl.read_parquet(batched.path / "scores/langid.parquet").equals(
        pl.read_parquet(whole.path / "scores/langid.parquet"))
    assert not list((work / "builds" / "medqa-sft" / ".work" / "runs").iterdir())  # run folders removed


def test_merge_stats_sums_counts_and_keeps_params() -> None:
    parts = [{"seed": 3, "rows_changed": 3, "languages": {"en": 3}, "requests_per_s": 2.0, "backend": "x"},
             {"seed": 3, "rows_changed": 3, "languages": {"en": 2, "fr": 1}, "requests_per_s": 5.0, "backend": "x"}]
    assert merge_stats(parts, frozenset({"seed", "languages"})) == {
        "seed": 3, "rows_changed": 6, "languages": {"en": 5, "fr": 1}, "requests_per_s": 5.0, "backend": "x"}


_KILLER = """
import sys, time
from pathlib import Path
import curate.runner.rows as rows
orig = rows.run_shard
def run_shard(steps, src, shard, ctx):
    out = orig(steps, src, shard, ctx)
    if ctx.rank == 2 and steps[0][0] == "normalize":
        print("SHARD2", flush=True)
        time.sleep(120)
    return out
rows.run_shard = run_shard
from curate.build import run_build
run_build(sys.argv[1], source_overrides={"medqa": sys.argv[2]}, out=Path(sys.argv[3]), options={"batch_rows": 200})
"""


@pytest.mark.slow
def test_killed_build_resumes_from_completed_shards(data_dir: Path, work: Path, monkeypatch) -> None:
    """SIGKILL after 3 of 6 shards of the first row stage: the rerun reads no source again, runs only the
    3 missing shards of that stage, and writes the output of an uninterrupted build."""
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    recipe, src = str(_recipe(work)), str(data_dir / MEDQA)
    proc = subprocess.Popen([sys.executable, "-c", _KILLER, recipe, src, str(work / "resumed")], cwd=work,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "MEDCURATE_BUILDS": str(work / "builds")})
    deadline, line = time.time() + 240, ""
    while time.time() < deadline and "SHARD2" not in line:
        line = proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "SHARD2" in line
    runs = list((work / "builds" / "medqa-sft" / ".work" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "sources" / "medqa" / ".done").is_file()
    assert not (work / "resumed").exists()

    calls: dict[str, int] = {"shards": 0, "sources": 0}
    orig_shard, orig_stream = rows.run_shard, sources.stream_source

    def count_shard(steps, src_, shard, ctx):
        calls["shards"] += steps[0][0] == "normalize"
        return orig_shard(steps, src_, shard, ctx)

    def count_stream(*a, **k):
        calls["sources"] += 1
        return orig_stream(*a, **k)

    monkeypatch.setattr(rows, "run_shard", count_shard)
    monkeypatch.setattr(sources, "stream_source", count_stream)
    resumed = run_build(recipe, source_overrides={"medqa": src}, out=work / "resumed", options={"batch_rows": 200})
    assert calls == {"shards": 3, "sources": 0}  # 1030 rows = 6 parts of 200; shards 0-2 were complete
    assert not runs[0].exists()
    monkeypatch.setattr(rows, "run_shard", orig_shard)
    fresh = run_build(recipe, source_overrides={"medqa": src}, out=work / "fresh", options={"batch_rows": 200})
    assert resumed.manifest["output"]["sha256"] == fresh.manifest["output"]["sha256"]
    assert _counts(resumed.manifest) == _counts(fresh.manifest)
    assert json.loads((work / "resumed" / "manifest.json").read_text())["rows_out"] == fresh.manifest["rows_out"]


def test_check_names_the_step_that_loses_rows() -> None:
    from curate.errors import ReconciliationError
    from curate.steps import StepResult, no_rejects

    frame = pl.DataFrame({"id": ["a", "b"]})
    with pytest.raises(ReconciliationError, match="step 'x': rows_in 2 != kept 1"):
        accounting.check("x", frame, StepResult(kept=frame.head(1), rejected=no_rejects(frame.head(0))))


def test_global_steps_reading_keys_give_the_whole_row_result(data_dir: Path, work: Path, monkeypatch) -> None:
    """dedup and decontaminate decide on the columns they read; applied to the whole rows part by part,
    the output, rejects and scores are those of running them on the whole rows at once."""
    from curate.steps import Step
    from curate.steps.decontaminate import Decontaminate
    from curate.steps.dedup import Dedup

    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    recipe = str(_recipe(work))
    src = {"medqa": str(data_dir / MEDQA)}
    keyed = run_build(recipe, source_overrides=src, out=work / "keyed", options={"batch_rows": 150})
    monkeypatch.setattr(Dedup, "reads", Step.reads)
    monkeypatch.setattr(Decontaminate, "reads", Step.reads)
    whole = run_build(recipe, source_overrides=src, out=work / "whole", options={"batch_rows": 150})
    assert keyed.manifest["output"]["sha256"] == whole.manifest["output"]["sha256"]
    assert _counts(keyed.manifest) == _counts(whole.manifest)
    for name in ("rejects/dedup.parquet", "rejects/decontaminate.parquet", "scores/dedup.parquet"):
        assert pl.read_parquet(keyed.path / name).equals(pl.read_parquet(whole.path / name))
    rejected = pl.read_parquet(keyed.path / "rejects/decontaminate.parquet")
    assert rejected.height > 0 and {"explanation", "options", "source", "reason", "detail"} <= set(rejected.columns)


def test_a_keyed_global_step_that_reorders_rows_is_refused(tmp_path: Path) -> None:
    from curate.errors import ReconciliationError
    from curate.runner.globals import run_global
    from curate.runner.state import write_part
    from curate.steps import BuildContext, Step, StepResult, no_rejects

    class Reverse(Step):
        name = "reverse"
        scope = "global"

        def reads(self, columns: list[str]) -> list[pl.Expr]:
            return [pl.col("question")]

        def apply(self, frame: pl.DataFrame, ctx: BuildContext) -> StepResult:
            return StepResult(frame.reverse(), no_rejects(frame))

    part = write_part(pl.DataFrame({"id": ["a", "b", "c"], "question": ["x", "y", "z"], "answer": ["1", "2", "3"]}),
                      tmp_path / "part-00000.parquet")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ReconciliationError, match="not in input order"):
        run_global("reverse", Reverse(), [part], out, BuildContext(recipe_name="t", work_dir=tmp_path), 10)
