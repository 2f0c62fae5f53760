"""score (DEITA-style) and filter's drop_bottom: logprob-weighted ratings to 1e-6, the exact bottom 10%."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import polars as pl
import pytest
from fixtures_teacher import make_ctx
from typer.testing import CliRunner

from curate.errors import RecipeError
from curate.record import to_frame
from curate.steps import get_step
from synth.testing import Reply, ScriptedServer, last_user


class LogprobScorer:
    """A scorer whose first-token distribution over "1".."6" is fixed per prompt (from its hash); the
    alternatives list also holds non-rating tokens and a rating spelled with a leading space."""

    def __init__(self) -> None:
        self.expected: dict[str, float] = {}  # prompt (last user message) -> weighted mean

    def __call__(self, req: dict) -> Reply:
        user = last_user(req)
        h = hashlib.sha256(user.encode()).digest()
        lps = [-(0.2 + b / 40) for b in h[:6]]  # log-probabilities of 1..6 (not normalised among themselves)
        probs = [math.exp(x) for x in lps]
        self.expected[user] = sum((i + 1) * p for i, p in enumerate(probs)) / sum(probs)
        top = [{"token": "The", "logprob": -0.9}, {"token": "\n", "logprob": -3.0}]
        top += [{"token": (" " if i == 2 else "") + str(i + 1), "logprob": lp} for i, lp in enumerate(lps)]
        best = str(1 + max(range(6), key=lambda i: lps[i]))
        assert req.get("logprobs") is True and req.get("top_logprobs") == 20
        return Reply(best, logprobs={"content": [{"token": best, "logprob": max(lps), "top_logprobs": top}]})


def test_score_is_the_probability_weighted_mean_to_1e6(medqa_rows, tmp_path) -> None:
    scorer = LogprobScorer()
    rows = medqa_rows.head(30)
    with ScriptedServer(scorer) as srv:
        ctx = make_ctx(tmp_path / "work", srv.url)
        res = get_step("score")({}).apply(rows, ctx)
        by_prompt = {}
        for entry in srv.log:
            by_prompt.setdefault(entry["body"]["messages"][0]["content"][:30], []).append(last_user(entry["body"]))
    assert res.kept.height == 30 and res.rejected.height == 0
    assert (res.scores["score_method"] == "logprobs").all()
    complexity_prompts = [p for k, ps in by_prompt.items() if k.startswith("You rate how complex") for p in ps]
    quality_prompts = [p for k, ps in by_prompt.items() if k.startswith("You rate the quality") for p in ps]
    assert len(complexity_prompts) == len(quality_prompts) == 30
    for row in res.kept.iter_rows(named=True):
        c = next(scorer.expected[p] for p in complexity_prompts if row["question"].strip() in p)
        q = next(scorer.expected[p] for p in quality_prompts if row["question"].strip() in p)
        assert abs(row["complexity_score"] - c) < 1e-6 and abs(row["quality_score"] - q) < 1e-6
        assert abs(row["evol_score"] - c * q) < 1e-6
    assert set(res.stats["histograms"]) == {"complexity_score", "quality_score", "evol_score"}
    assert sum(n for _, n in res.stats["histograms"]["evol_score"]) == 30


def test_parsed_rating_without_logprobs_and_unscorable_rows_rejected(medqa_rows, tmp_path) -> None:
    refuse = set(medqa_rows.head(3)["question"].str.strip_chars().to_list())

    def scorer(req: dict) -> Reply:
        user = last_user(req)
        if any(q in user for q in refuse):
            return Reply("I cannot rate this.")
        return Reply("Rating: 5" if "Quality" in user else "3")

    with ScriptedServer(scorer) as srv:
        res = get_step("score")({"logprobs": True}).apply(medqa_rows.head(10), make_ctx(tmp_path, srv.url))
    assert res.rejected.height == 3 and set(res.rejected["reason"]) == {"unscored"}
    assert res.rejected["detail"].str.contains("no complexity and quality rating after 2 attempt").all()
    assert res.kept["complexity_score"].to_list() == [3.0] * 7 and res.kept["evol_score"].to_list() == [15.0] * 7
    assert (res.scores.filter(pl.col("score_method").is_not_null())["score_method"] == "parsed").all()


def _scored(values: list[float | None]) -> pl.DataFrame:
    frame = to_frame([{"source": "t", "task": "open_qa", "question": f"Question number {i}?", "answer": "x"}
                      for i in range(len(values))])
    return frame.with_columns(pl.Series("evol_score", values, dtype=pl.Float64))


def test_drop_bottom_removes_exactly_the_lowest_tenth_ties_by_id(cur_ctx) -> None:
    values = [float(v) for v in [1, 2, 2, 2, 2, 3, 3, 4, 5, 6] * 10 + [7, 8, 9, 10, 11, 12, 13]]  # 107 rows
    frame = _scored(values)
    res = get_step("filter")({"drop_bottom": 0.10}).apply(frame, cur_ctx)
    assert res.rejected.height == 10 == math.floor(0.10 * 107)  # ten 1.0s: exactly the lowest tenth
    assert set(res.rejected["evol_score"]) == {1.0} and res.kept["evol_score"].min() == 2.0
    assert set(res.rejected["reason"]) == {"bottom_percentile"}
    res = get_step("filter")({"drop_bottom": 0.20}).apply(frame, cur_ctx)  # 21 rows: ten 1.0s + 11 of 40 2.0s
    assert res.rejected.height == 21 and res.rejected["evol_score"].max() == 2.0
    tied_out = res.rejected.filter(pl.col("evol_score") == 2.0)["id"]
    tied_in = res.kept.filter(pl.col("evol_score") == 2.0)["id"]
    assert tied_out.len() == 11 and tied_out.max() < tied_in.min()  # ties at the cut: lowest ids go
    info = res.stats["drop_bottom"]
    assert info["cut"] == 2.0 and info["lowest_kept"] == 2.0 and info["dropped"] == 21
    assert res.stats["report_tables"][0]["title"].startswith("Quality cut: bottom 0.2 by evol_score")
    shuffled = get_step("filter")({"drop_bottom": 0.20}).apply(frame.sample(fraction=1.0, shuffle=True, seed=1),
                                                               cur_ctx)
    assert set(shuffled.rejected["id"]) == set(res.rejected["id"])  # independent of row order


def test_drop_bottom_counts_missing_scores_lowest_and_needs_the_column(cur_ctx) -> None:
    res = get_step("filter")({"drop_bottom": 0.25, "drop_bottom_by": "evol_score"}).apply(
        _scored([None, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]), cur_ctx)
    assert res.rejected.height == 2 and res.rejected["evol_score"].to_list()[0] is None
    with pytest.raises(RecipeError, match="drop_bottom needs a `quality_score` column"):
        get_step("filter")({"drop_bottom": 0.1, "drop_bottom_by": "quality_score"}).apply(_scored([1.0]), cur_ctx)
    assert get_step("filter")({"drop_bottom": 0.1}).scope == "global" and get_step("filter")({}).scope == "row"


RECIPE = """name: scored-sft
description: test recipe - quality stage
license: mit
sources:
  - name: medqa
    format: medqa
    path: {src}
    split: train
steps:
  - normalize: {{}}
  - validate: {{}}
  - dedup: {{}}
  - decontaminate: {{}}
  - score: {{}}
  - filter: {{drop_bottom: 0.10, drop_bottom_by: evol_score}}
  - template: {{}}
"""


def test_build_with_score_and_cut_reconciles_and_reports(data_dir: Path, work: Path) -> None:
    from curate.cli import app

    src = work / "medqa.json"
    src.write_text(json.dumps(json.loads((data_dir / "medqa/train_subset1030.json").read_text())[:80]))
    (work / "recipes").mkdir()
    (work / "recipes" / "scored-sft.yaml").write_text(RECIPE.format(src=src))
    with ScriptedServer(LogprobScorer()) as srv:
        res = CliRunner().invoke(app, ["build", "scored-sft", "-q", "--teacher-url", srv.url,
                                       "--teacher-model", "scorer"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    path = Path(res.stdout.strip().splitlines()[-1])
    m = json.loads((path / "manifest.json").read_text())
    assert m["rows_in"] == 80 == m["rows_out"] + m["rows_rejected"]
    filt = next(s for s in m["steps"] if s["name"] == "filter")
    assert filt["rows_rejected"] == math.floor(0.10 * filt["rows_in"])
    report = (path / "report.md").read_text()
    assert "Histogram of evol_score" in report and "Quality cut: bottom 0.1 by evol_score" in report
    assert "<- cut" in report
    scores = pl.read_parquet(path / "scores" / "score.parquet")
    assert scores.height == next(s for s in m["steps"] if s["name"] == "score")["rows_in"]


@pytest.mark.slow
def test_score_step_against_transformers_serve(tiny_serve, tmp_path, medqa_rows) -> None:
    """A real server (tiny random model): every row is scored or rejected `unscored`, nothing lost."""
    ctx = make_ctx(tmp_path, tiny_serve["url"], tiny_serve["model"])
    step = get_step("score")({"max_attempts": 1, "log_every_s": 60,
                              "teacher": {"profile": "vllm-local", "max_concurrency": 4, "timeout_s": 60}})
    res = step.apply(medqa_rows.head(6), ctx)
    assert res.kept.height + res.rejected.height == 6
    assert set(res.rejected["reason"]) <= {"unscored"}, res.rejected["detail"].to_list()
    assert res.stats["client"]["failures"] == 0
    assert set(res.scores["score_method"].drop_nulls()) <= {"logprobs", "parsed"}
