"""`preference` step and the `medqa-dpo` recipe on real MedQA rows against a scripted policy on loopback.

The scripted policy never sees the gold answer (the prompts are blind); it looks the question up in
the real MedQA file and answers by a per-question plan: always right, always wrong, never an answer
line, right or wrong depending on the request seed, right-but-echo, or a failing call. The tests
check every pair against gold and every rejected question against what the policy really said.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import polars as pl
import pytest
from fixtures_train import tiny_dpo_run

from curate.build import run_build
from curate.steps import get_step
from synth.pairs import Sample, judge_pair, verifiable_pair
from synth.testing import Reply, ScriptedServer, last_user
from tests.fixtures_teacher import make_ctx

MEDQA = "medqa/train_subset1030.json"
PLANS = ("right", "wrong", "silent", "mixed", "mixed", "mixed", "echo", "error")
REASONING = (
    "The vignette asks us to identify the single explanation that accounts for every finding. Looking at the "
    "time course, the examination and the laboratory results together, most alternatives contradict at "
    "least one key observation, which narrows the choice considerably."
)


def _key(question: str) -> str:
    return " ".join(question.split())


def plan_of(question: str) -> str:
    return PLANS[int(hashlib.sha256(_key(question).encode()).hexdigest(), 16) % len(PLANS)]


class Student:
    """A blind scripted policy: looks the question up (it is never told the gold answer)."""

    def __init__(self, frame: pl.DataFrame):
        self.table = {_key(r["question"]): (r["answer"], [o["label"] for o in r["options"]])
                      for r in frame.iter_rows(named=True)}
        self.said: dict[str, list[str | None]] = {}

    def __call__(self, req: dict) -> Reply:
        user = last_user(req)
        assert "Correct option" not in user and "Answer: " not in user  # blind: no gold in the prompt
        question = _key(re.search(r"Question:\n(.*?)\n\nOptions:", user, re.S).group(1))
        gold, labels = self.table[question]
        wrong = next(x for x in labels if x != gold)
        plan, seed = plan_of(question), int(req["seed"])
        if plan == "error":
            return Reply(status=400)
        if plan == "silent":
            return Reply(REASONING)
        if plan == "echo":  # right answers only restate the question
            answer = gold if seed % 2 else wrong
            self.said.setdefault(question, []).append(answer)
            return Reply(f"{question}\n\nAnswer: {gold}" if seed % 2 else f"{REASONING}\n\nAnswer: {wrong}")
        answer = {"right": gold, "wrong": wrong}.get(plan, gold if seed % 2 else wrong)
        self.said.setdefault(question, []).append(answer)
        return Reply(f"{REASONING}\n\nAnswer: {answer}")


def expected_reason(plan: str, said: list[str], gold: str) -> str | None:
    if plan == "error":
        return "teacher_error"
    if plan == "silent":
        return "no_parseable_answer"
    right = sum(a == gold for a in said)
    if 0 < right < len(said):
        return "no_usable_chosen" if plan == "echo" else None
    return "all_correct" if right else "all_wrong"


@pytest.fixture(scope="module")
def medqa_frame(data_dir: Path) -> pl.DataFrame:
    from curate.recipe import SourceSpec
    from curate.sources import read_source

    path = data_dir / MEDQA
    return read_source(SourceSpec(name="medqa", format="medqa", path=str(path)), base_dir=path.parent).frame


def _build(data_dir: Path, url: str, limit: int, out: Path | None = None):
    return run_build("medqa-dpo", source_overrides={"medqa": str(data_dir / MEDQA)}, limit=limit, out=out,
                     options={"teacher_url": [url], "teacher_model": "scripted"})


def test_medqa_dpo_build_pairs_and_reasons(data_dir: Path, work: Path, medqa_frame, monkeypatch) -> None:
    monkeypatch.setenv("MEDCURATE_BENCHMARKS", str(data_dir))
    student = Student(medqa_frame)
    with ScriptedServer(student) as srv:
        res = _build(data_dir, srv.url, 80)
        first_calls = len(srv.log)
        m = res.manifest
        data = pl.read_parquet(res.path / "data")
        rej = pl.read_parquet(res.path / "rejects" / "preference.parquet")
        side = pl.read_parquet(res.path / "scores" / "preference.parquet")

        # every row accounted for, overall and in the preference step
        n_rejects = sum(pl.read_parquet(p).height for p in (res.path / "rejects").glob("*.parquet"))
        assert m["rows_in"] == 80 == m["rows_out"] + m["rows_rejected"] == data.height + n_rejects
        step = next(s for s in m["steps"] if s["name"] == "preference")
        assert step["rows_in"] == step["rows_kept"] + step["rows_rejected"] == side.height
        assert data.height > 5 and rej.height > 5

        # kept pairs: chosen ends at the gold answer, rejected at a wrong one; the prompt is blind
        gold_of = {_key(r["question"]): r["answer"] for r in medqa_frame.iter_rows(named=True)}
        for row in data.iter_rows(named=True):
            gold = gold_of[_key(row["question"])]
            assert row["answer"] == gold
            assert [x["role"] for x in row["prompt"]] == ["system", "user"]
            assert row["question"] in row["prompt"][-1]["content"] and "Correct option" not in row["prompt"][-1]["content"]
            (chosen,), (rejected,) = row["chosen"], row["rejected"]
            assert chosen["role"] == rejected["role"] == "assistant"
            assert chosen["content"].endswith(f"\n\nAnswer: {gold}")
            wrong = re.search(r"Answer: (\S+)$", rejected["content"]).group(1)
            assert wrong != gold and wrong in "ABCD"
            assert plan_of(row["question"]) == "mixed"

        # every question without a usable pair leaves with the reason the policy's answers imply
        assert rej["reason"].null_count() == 0 and rej["detail"].null_count() == 0
        for row in rej.iter_rows(named=True):
            q = _key(row["question"])
            assert row["reason"] == expected_reason(plan_of(q), student.said.get(q, []), gold_of[q]), row["detail"]
        kept_plans = {plan_of(q) for q in data["question"]}
        assert kept_plans == {"mixed"}
        assert set(rej["reason"]) >= {"all_correct", "all_wrong", "no_parseable_answer", "teacher_error",
                                      "no_usable_chosen"}

        # side-car: every sample of every row, with its parsed answer and outcome
        assert side["pref_samples"].list.len().to_list() == [4] * side.height
        kept_side = side.filter(pl.col("pref_outcome") == "kept")
        assert kept_side.height == data.height
        for r in kept_side.iter_rows(named=True):
            gold = data.filter(pl.col("id") == r["id"])["answer"][0]
            assert r["pref_parsed"][r["pref_chosen_k"] - 1] == gold != r["pref_parsed"][r["pref_rejected_k"] - 1]
            assert 0 < r["pref_n_correct"] < 4

        # the report carries the agreement histogram
        tables = step["stats"]["report_tables"]
        agreement = next(t for t in tables if t["title"].startswith("Agreement"))
        assert sum(r[1] for r in agreement["rows"]) == step["rows_in"]
        by_correct = side.group_by("pref_n_correct").len()
        for label, rows, _, _ in agreement["rows"]:
            n = int(label.split("/")[0])
            assert rows == by_correct.filter(pl.col("pref_n_correct") == n)["len"].sum()
        assert sum(r[3] for r in agreement["rows"]) == data.height
        assert "Agreement" in (res.path / "report.md").read_text()
        assert m["teacher"]["model"] == "scripted" and m["teacher"]["params"]["n"] == 4

        # a re-run pays for no completed call (failed calls are asked again) and gives the same bytes
        failed = sum(1 for e in srv.log if not e["completed"])
        res2 = _build(data_dir, srv.url, 80, out=work / "again")  # own folder: build ids are per second
        assert len(srv.log) - first_calls == failed
        assert res2.manifest["output"]["sha256"] == m["output"]["sha256"]


def test_cli_build_and_dry_run_estimate(data_dir: Path, work: Path, medqa_frame) -> None:
    """`curate build medqa-dpo ... --dry-run` counts N calls per row and the ones the cache already holds."""
    from typer.testing import CliRunner

    from curate.cli import app

    src = f"medqa={data_dir / MEDQA}"
    with ScriptedServer(Student(medqa_frame)) as srv:
        args = ["build", "medqa-dpo", "--source", src, "--limit", "20", "--teacher-url", srv.url,
                "--teacher-model", "scripted", "-q"]
        before = CliRunner().invoke(app, [*args, "--dry-run"])
        assert before.exit_code == 0, before.output
        est = json.loads(before.stdout[before.stdout.index("{"):])["preference"]
        assert est["rows"] == 20 and est["calls_min"] == 80 and est["cache_hits"] == 0 and not srv.log
        built = CliRunner().invoke(app, args)
        assert built.exit_code == 0, built.output
        completed = sum(e["completed"] for e in srv.log)
        after = CliRunner().invoke(app, [*args, "--dry-run"])
        est = json.loads(after.stdout[after.stdout.index("{"):])["preference"]
        assert est["cache_hits"] == completed and est["calls_to_pay_min"] == 80 - completed


def test_transient_faults_do_not_change_the_pairs(tmp_path: Path, medqa_frame) -> None:
    """503 / 429 / dropped connections / cut bodies are retried: the pairs equal a clean run's."""
    frame = medqa_frame.head(24)
    params = {"n": 3, "log_every_s": 60,
              "teacher": {"profile": "vllm-local", "backoff_base_s": 0.01, "backoff_max_s": 0.05}}
    with ScriptedServer(Student(medqa_frame)) as srv:
        clean = get_step("preference")(params).apply(frame, make_ctx(tmp_path / "clean", srv.url))
        srv.inject("503", "429", "drop", "cut", "500")
        faulty = get_step("preference")(params).apply(frame, make_ctx(tmp_path / "faulty", srv.url))
    assert faulty.stats["client"]["policy"]["retries"] == 5
    assert faulty.kept.height > 0 and faulty.kept.equals(clean.kept)
    # same reasons; a failing call's detail may count one more attempt when a fault hit it first
    assert faulty.rejected.drop("detail").equals(clean.rejected.drop("detail"))


def test_growing_n_pays_only_new_samples(tmp_path: Path, medqa_frame, expected_calls) -> None:
    frame = medqa_frame.head(12)
    student = Student(medqa_frame)
    with ScriptedServer(student) as srv:
        ctx = make_ctx(tmp_path / "work", srv.url)
        small = get_step("preference")({"n": 2, "log_every_s": 60}).apply(frame, ctx)
        calls_2 = len(srv.log)
        assert calls_2 == 2 * frame.height
        assert expected_calls == [2 * frame.height]  # the client knows its size (HTTP helper for large frames)
        failed = sum(not e["completed"] for e in srv.log)  # failed calls are not cached: asked again
        big = get_step("preference")({"n": 5, "log_every_s": 60}).apply(frame, ctx)
        assert len(srv.log) - calls_2 == 3 * frame.height + failed  # samples 1-2 came from the cache
        seeds = [e["body"]["seed"] for e in srv.log if e["completed"]]
        assert len(set(seeds)) == len(seeds)  # each (row, k) is its own call, and none was paid twice
    s_small, s_big = small.scores.sort("id"), big.scores.sort("id")
    for a, b in zip(s_small["pref_samples"], s_big["pref_samples"], strict=True):
        assert b.to_list()[:2] == a.to_list()  # sample k is the same response forever
    assert big.kept.height >= small.kept.height


def test_unsupported_tasks_and_yes_no_maybe(tmp_path: Path, data_dir: Path) -> None:
    from curate.recipe import SourceSpec
    from curate.sources import read_source

    path = data_dir / "pubmedqa" / "train.json"
    frame = read_source(SourceSpec(name="pubmedqa", format="pubmedqa", path=str(path)), base_dir=path.parent,
                        limit=10).frame
    open_row = frame.head(2).with_columns(pl.lit("open_qa").alias("task"), pl.lit("some text").alias("answer"),
                                          pl.concat_str(pl.col("id"), pl.lit("x")).alias("id"))
    frame = pl.concat([frame, open_row])
    golds = {_key(r["question"]): r["answer"] for r in frame.head(10).iter_rows(named=True)}

    def ynm(req: dict) -> Reply:
        user = last_user(req)
        q = _key(re.search(r"Question:\n(.*)$", user, re.S).group(1))
        gold = golds[q]
        other = "no" if gold != "no" else "yes"
        return Reply(f"{REASONING}\n\nAnswer: {gold if int(req['seed']) % 2 else other}")

    with ScriptedServer(ynm) as srv:
        res = get_step("preference")({"n": 6, "log_every_s": 60}).apply(frame, make_ctx(tmp_path, srv.url))
    assert res.kept.height + res.rejected.height == frame.height
    assert res.rejected.filter(pl.col("task") == "open_qa")["reason"].to_list() == ["unsupported_task"] * 2
    assert res.kept.height > 0
    for row in res.kept.iter_rows(named=True):
        assert row["chosen"][0]["content"].endswith(f"Answer: {row['answer']}")
        assert not row["rejected"][0]["content"].endswith(f"Answer: {row['answer']}")
        assert "Context:" in row["prompt"][-1]["content"]


def test_judge_mode_best_vs_worst_with_margin(tmp_path: Path, medqa_frame) -> None:
    frame = medqa_frame.head(16)
    # response quality by seed; the judge scores the quality word it finds in the response
    quality = {0: ("excellent", 9), 1: ("poor", 2), 2: ("fair", 5)}

    def policy_and_judge(req: dict) -> Reply:
        user = last_user(req)
        if "RESPONSE:" in user:
            resp = user.split("RESPONSE:", 1)[1]
            word = next(w for w, _ in quality.values() if w in resp)
            return Reply(f"Assessed.\nScore: {dict(quality.values())[word]}")
        q = _key(re.search(r"Question:\n(.*?)\n\nOptions:", user, re.S).group(1))
        bucket = int(hashlib.sha256(q.encode()).hexdigest(), 16) % 3
        seed = int(req["seed"])
        word = "fair" if bucket == 0 else quality[seed % 3][0] if bucket == 1 else ("fair", "poor")[seed % 2]
        return Reply(f"A {word} answer. {REASONING}\n\nAnswer: A")

    with ScriptedServer(policy_and_judge) as srv:
        res = get_step("preference")({"mode": "judge", "n": 4, "min_margin": 4, "log_every_s": 60}).apply(
            frame, make_ctx(tmp_path, srv.url))
    assert res.kept.height + res.rejected.height == frame.height
    side = res.scores
    for row in side.iter_rows(named=True):
        scores = [s for s in row["pref_scores"] if s is not None]
        margin = max(scores) - min(scores)
        expect = "tie" if margin == 0 else "margin_below_threshold" if margin < 4 else "kept"
        assert row["pref_outcome"] == expect and row["pref_margin"] == margin
        if expect == "kept":
            assert row["pref_scores"][row["pref_chosen_k"] - 1] == max(scores)
            assert row["pref_scores"][row["pref_rejected_k"] - 1] == min(scores)
    assert set(res.rejected["reason"]) <= {"tie", "margin_below_threshold"}
    for row in res.kept.iter_rows(named=True):
        # a margin >= 4 needs the excellent (9) answer on top; the bottom is a poor (2) or fair (5) one
        assert "excellent" in row["chosen"][0]["content"]
        assert any(w in row["rejected"][0]["content"] for w in ("poor", "fair"))
    assert any(t["title"].startswith("Judge score margin") for t in res.stats["report_tables"])
    assert res.stats["judge"]["template"].startswith("judge@")


def test_judge_on_its_own_endpoint(tmp_path: Path, medqa_frame, second_server) -> None:
    """An explicit `judge:` profile gets the judge calls; the policy (CLI --teacher-url) gets the samples."""
    frame = medqa_frame.head(6)
    second_server.responder = lambda req: Reply(f"Fine.\nScore: {2 + int(req['seed']) % 8}")
    with ScriptedServer(lambda req: Reply(f"{REASONING}\n\nAnswer: B")) as policy:
        judge = {"model": "judge-model", "urls": [second_server.url]}
        res = get_step("preference")({"mode": "judge", "n": 3, "min_margin": 1, "judge": judge,
                                      "log_every_s": 60}).apply(frame, make_ctx(tmp_path, policy.url))
        assert len(policy.log) == 18 and all("RESPONSE:" not in last_user(e["body"]) for e in policy.log)
    assert len(second_server.log) == 18
    assert all("RESPONSE:" in last_user(e["body"]) and e["body"]["model"] == "judge-model" for e in second_server.log)
    assert res.stats["judge"]["model"] == "judge-model" and res.stats["teacher"]["model"] == "scripted"
    assert set(res.stats["client"]) == {"policy", "judge"}
    assert res.kept.height + res.rejected.height == 6


def test_pair_choice_is_seeded_and_reasons() -> None:
    def s(k: int, status: str) -> Sample:
        return Sample(k=k, text="t", status=status)

    samples = [s(1, "correct"), s(2, "wrong"), s(3, "correct"), s(4, "wrong")]
    a = verifiable_pair(samples, 0, "row")
    assert a.reason is None and a == verifiable_pair(list(reversed(samples)), 0, "row")
    assert {verifiable_pair(samples, seed, "row").chosen for seed in range(20)} == {1, 3}
    # adding sample 5 does not move the choice unless sample 5 wins its own draw
    more = [*samples, s(5, "unparsed")]
    assert verifiable_pair(more, 0, "row") == a
    assert verifiable_pair([s(1, "correct"), s(2, "error")], 0, "r").reason == "teacher_error"
    assert verifiable_pair([s(1, "unparsed"), s(2, "truncated")], 0, "r").reason == "no_parseable_answer"
    assert verifiable_pair([s(1, "echo"), s(2, "wrong")], 0, "r").reason == "no_usable_chosen"
    scored = [Sample(k=i, text="t", status="complete", score=v) for i, v in enumerate([7, 3, 7, 3], 1)]
    pair = judge_pair(scored, 0, "r", 4)
    assert pair.reason is None and pair.chosen in (1, 3) and pair.rejected in (2, 4) and pair.margin == 4
    assert judge_pair(scored[::2], 0, "r", 1).reason == "tie"
    assert judge_pair(scored, 0, "r", 5).reason == "margin_below_threshold"
    assert judge_pair(scored[:1], 0, "r", 1).reason == "too_few_scored"


def test_output_loads_with_datasets_and_trains_dpo(data_dir: Path, work: Path, medqa_frame, monkeypatch) -> None:
    """The build output is TRL's conversational preference format and a couple of DPO steps run on it."""
    import datasets
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    from train.tiny import build_tiny_tokenizer

    with ScriptedServer(Student(medqa_frame)) as srv:
        res = _build(data_dir, srv.url, 60)
    ds = datasets.load_dataset("parquet", data_files=str(res.path / "data" / "*.parquet"), split="train")
    assert ds.num_rows == res.manifest["rows_out"] > 0
    tok = build_tiny_tokenizer()
    for example in ds.select(range(min(5, ds.num_rows))):
        assert is_conversational(example)
        out = maybe_apply_chat_template(example, tok)
        assert set(out) >= {"prompt", "chosen", "rejected"}
        assert out["prompt"].endswith("<|im_start|>assistant\n") and "Answer:" in out["chosen"]

    tiny_dpo_run(work, str(res.path), res.manifest["output"]["sha256"], batch=4, max_length=512)


@pytest.mark.slow
def test_medqa_dpo_against_transformers_serve(data_dir: Path, work: Path, tiny_serve, monkeypatch) -> None:
    """A real OpenAI-compatible server (noise answers): the build completes and reconciles every row.

    Short generations keep the tiny CPU model fast; the shipped recipe is copied with those edits.
    """
    from curate.resources import recipes_dir

    text = (recipes_dir() / "medqa-dpo.yaml").read_text()
    for old, new in (("max_tokens: 1024", "max_tokens: 16"),
                     ("teacher: vllm-local", "teacher: {profile: vllm-local, max_concurrency: 4, timeout_s: 60}")):
        assert old in text
        text = text.replace(old, new)
    (work / "recipes").mkdir()
    (work / "recipes" / "medqa-dpo.yaml").write_text(text)
    res = run_build("medqa-dpo", source_overrides={"medqa": str(data_dir / MEDQA)}, limit=4,
                    options={"teacher_url": [tiny_serve["url"]], "teacher_model": tiny_serve["model"],
                             "allow_empty": True})  # noise answers may leave no pair: an empty build is expected
    m = res.manifest
    step = next(s for s in m["steps"] if s["name"] == "preference")
    assert step["rows_in"] == step["rows_kept"] + step["rows_rejected"]
    assert m["rows_in"] == m["rows_out"] + m["rows_rejected"] == 4
    side = pl.read_parquet(res.path / "scores" / "preference.parquet")
    assert side.height == step["rows_in"]
    completed = side.filter(pl.col("pref_outcome") != "teacher_error")
    assert completed.height == step["rows_in"], side["pref_outcome"].to_list()  # the server answered every call
    assert all(len(x) == 4 for x in completed["pref_samples"].to_list())
