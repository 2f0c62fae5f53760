"""decontaminate_rephrase: reworded benchmark items that the 13-gram pass misses are caught by BM25 + judge,
with the right set and item id; real training rows are kept; calls are cached; no teacher = skipped loudly."""

from __future__ import annotations

import json
import logging
import random
import sys
from pathlib import Path

import polars as pl
import pytest
from fixtures_curation import run_step
from fixtures_teacher import make_ctx
from typer.testing import CliRunner

from curate.benchpack import read_pack_set
from curate.record import to_frame
from curate.steps import BuildContext, get_step
from synth.rephrase_prompts import parse_verdict
from synth.testing import Reply, ScriptedServer, last_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _rephrase import rephrase  # noqa: E402

PICKS = [("medqa_test", 40), ("medqa_test", 900), ("medmcqa_dev", 3900), ("medmcqa_test", 77),
         ("mmlu_professional_medicine_test", 30), ("mmlu_clinical_knowledge_test", 12), ("headqa_test", 2000)]


def _rephrased() -> tuple[pl.DataFrame, dict[str, str]]:
    """Reworded real benchmark items; returns the rows and {reworded question: "set:item id"}."""
    rng = random.Random(3)
    rows, truth = [], {}
    for name, i in PICKS:
        item = read_pack_set(name).row(i, named=True)
        q, opts = rephrase(item["question"], [o["text"] for o in item["options"]], rng)
        truth[q] = f"{name}:{item['source_id']}"
        rows.append({"source": "leak", "source_id": truth[q], "task": "mcq", "question": q,
                     "options": [{"label": "ABCDE"[j], "text": t} for j, t in enumerate(opts)], "answer": "A"})
    return to_frame(rows), truth


def oracle_judge(truth: dict[str, str], originals: dict[str, str]):
    """A judge that knows which benchmark item each planted row rewords (and nothing else is a leak)."""
    def respond(req: dict) -> Reply:
        user = last_user(req)
        train, bench = (" ".join(x.split()) for x in user.split("\n\nBENCHMARK item:\n", 1))
        for q, ref in truth.items():  # spacing ignored: `normalize` may have collapsed it
            if " ".join(q.split()) in train and " ".join(originals[ref].split()) in bench:
                return Reply("Same case and the same question, reworded.\nVerdict: same")
        return Reply("These ask different things.\nVerdict: different")
    return respond


@pytest.fixture(scope="module")
def leaks() -> tuple[pl.DataFrame, dict[str, str], dict[str, str]]:
    frame, truth = _rephrased()
    originals = {}
    for name, i in PICKS:
        item = read_pack_set(name).row(i, named=True)
        originals[f"{name}:{item['source_id']}"] = item["question"].strip()
    return frame, truth, originals


def test_rephrased_leaks_are_rejected_with_item_id_and_real_rows_kept(leaks, medqa_rows, tmp_path, cur_ctx):
    frame, truth, originals = leaks
    mixed = pl.concat([medqa_rows, frame.select(medqa_rows.columns)])
    ngram = run_step("decontaminate", mixed, cur_ctx)
    assert ngram.rejected.filter(pl.col("source") == "leak").height < len(truth) / 2  # the 13-gram pass misses most
    with ScriptedServer(oracle_judge(truth, originals)) as srv:
        ctx = make_ctx(tmp_path / "work", srv.url)
        step = get_step("decontaminate_rephrase")({})
        res = step.apply(ngram.kept, ctx)
        calls = len(srv.log)
        again = step.apply(ngram.kept, ctx)  # every call came from the cache
        assert len(srv.log) == calls and again.rejected.equals(res.rejected)
    planted = {q: ref for q, ref in truth.items() if q in set(ngram.kept["question"])}
    assert set(res.rejected["question"]) == set(planted)  # every planted leak, nothing else
    assert set(res.kept["id"]) >= set(medqa_rows["id"]) & set(ngram.kept["id"])
    for q, reason, detail in res.rejected.select("question", "reason", "detail").iter_rows():
        assert reason == "benchmark_rephrase" and detail.startswith(planted[q] + " (judge: same; bm25 rank ")
    table = res.stats["benchmarks"]
    assert len(table) == 11 and all(t["found"] for t in table.values())
    by_set: dict[str, int] = {}
    for ref in planted.values():
        by_set[ref.split(":")[0]] = by_set.get(ref.split(":")[0], 0) + 1
    assert {k: v["rephrased_hits"] for k, v in table.items() if v["rephrased_hits"]} == by_set
    sc = res.scores.filter(pl.col("rephrase_bench").is_not_null())
    assert sc.height == len(planted) and sc["rephrase_verdict"].str.ends_with("Verdict: same").all()
    assert res.stats["rows_judged"] < ngram.kept.height  # the gate spares rows with no close benchmark item


def test_without_a_teacher_the_pass_is_skipped_loudly(medqa_rows, tmp_path, caplog) -> None:
    ctx = BuildContext(recipe_name="t", work_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="medcurate"):
        res = get_step("decontaminate_rephrase")({}).apply(medqa_rows, ctx)
    assert res.kept.height == medqa_rows.height and res.rejected.height == 0
    assert "SKIPPED: no teacher configured" in res.stats["skipped"] and "SKIPPED" in caplog.text
    assert res.stats["report_tables"][0]["rows"][0][0] == res.stats["skipped"]


def test_verdict_parsing() -> None:
    assert parse_verdict("Reasoning...\nVerdict: same") == "same"
    assert parse_verdict("Verdict: same? no.\n**Verdict:** different") == "different"
    assert parse_verdict("VERDICT = Same") == "same"
    assert parse_verdict("Answer: A") is None


def test_medqa_sft_build_runs_the_pass_only_with_a_teacher(leaks, data_dir, work, monkeypatch) -> None:
    """The shipped recipe: without a teacher the report says the pass was skipped; with --teacher-url the
    reworded leaks are rejected naming their items, and the build reconciles."""
    from curate.cli import app

    monkeypatch.delenv("MEDCURATE_BENCHMARKS", raising=False)
    frame, truth, originals = leaks
    train = json.loads((data_dir / "medqa/train_subset1030.json").read_text())[:150]
    for row in frame.iter_rows(named=True):
        train.append({"question": row["question"], "options": {o["label"]: o["text"] for o in row["options"]},
                      "answer_idx": "A", "answer": row["options"][0]["text"], "meta_info": "leak"})
    src = work / "leaky.json"
    src.write_text(json.dumps(train))
    res = CliRunner().invoke(app, ["build", "medqa-sft", "--source", f"medqa={src}", "-q"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    path = Path(res.stdout.strip().splitlines()[-1])
    assert "decontaminate_rephrase SKIPPED: no teacher configured" in (path / "report.md").read_text()
    with ScriptedServer(oracle_judge(truth, originals)) as srv:
        res = CliRunner().invoke(app, ["build", "medqa-sft", "--source", f"medqa={src}", "-q",
                                       "--teacher-url", srv.url, "--teacher-model", "judge"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    path = Path(res.stdout.strip().splitlines()[-1])
    m = json.loads((path / "manifest.json").read_text())
    assert m["rows_in"] == m["rows_out"] + m["rows_rejected"] == 150 + len(truth)
    step = next(s for s in m["steps"] if s["name"] == "decontaminate_rephrase")
    rejected = pl.read_parquet(path / "rejects" / "decontaminate_rephrase.parquet")
    ngram = pl.read_parquet(path / "rejects" / "decontaminate.parquet")
    caught = {" ".join(q.split()): d for q, d in rejected.select("question", "detail").iter_rows()}
    leak_keys = {" ".join(q.split()) for q in truth}
    assert step["rows_rejected"] == rejected.height and set(caught) <= leak_keys  # only leaks, no real row
    for q, ref in truth.items():  # each leak: caught by one pass or the other, naming its item
        key = " ".join(q.split())
        if key in caught:
            assert caught[key].startswith(ref + " (judge: same")
        else:
            assert any(" ".join(x.split()) == key for x in ngram["question"]), q
    assert len(caught) > len(truth) - len(caught)  # the judge pass caught most of them
    card = (path / "README.md").read_text()
    assert "rephrased" in card.lower()


@pytest.mark.slow
def test_rephrase_pass_against_transformers_serve(tiny_serve, tmp_path, leaks, medqa_rows) -> None:
    """A real server (tiny random model, so its verdicts rarely parse): the pass completes and reconciles;
    rows without a parsable verdict are kept and counted, never lost."""
    frame, _, _ = leaks
    rows = pl.concat([medqa_rows.head(6), frame.head(3).select(medqa_rows.columns)])
    ctx = make_ctx(tmp_path, tiny_serve["url"], tiny_serve["model"])
    step = get_step("decontaminate_rephrase")({"max_tokens": 8, "max_attempts": 1, "top_k": 2, "log_every_s": 60,
                                               "teacher": {"profile": "vllm-local", "max_concurrency": 4,
                                                           "timeout_s": 60}})
    res = step.apply(rows, ctx)
    assert res.kept.height + res.rejected.height == rows.height
    assert set(res.rejected["reason"]) <= {"benchmark_rephrase"}
    assert res.stats["client"]["failures"] == 0 and res.stats["rows_judged"] >= 3
    assert res.stats["unjudged"] + res.stats["rephrased_hits"] >= 1
