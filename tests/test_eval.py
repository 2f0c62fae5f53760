"""`train eval` / `train compare` (issue 15): exact scores against a scripted server that knows a known
subset of real benchmark questions, zero-shot (through lm-eval), sc-cot and medprompt; caching and resume;
the tiny SFT checkpoint through lm-eval's transformers backend on CPU."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synth.cache import CACHE_FILE, CallCache
from synth.testing import Reply, ScriptedServer, last_user, oracle
from train.cli import app
from train.evaluation.config import MULTIMEDQA
from train.evaluation.questions import load_set

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "train"
runner = CliRunner()
LIMIT = 6  # questions per benchmark: 9 MultiMedQA sets -> 54 questions


def _cli(*args: str):
    result = runner.invoke(app, list(args))
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


class Oracle:
    """Knows every question of the evaluated sets; answers correctly exactly the rows it is told to.

    Finds the question in the final user message and the gold option by its text among the options as
    shown (so shuffled options are answered consistently)."""

    def __init__(self, sets: dict[str, list[dict]], correct: set[str]):
        self.rows = [r for rows in sets.values() for r in rows]
        self.correct = correct  # row ids answered correctly
        self.samples: list[int] = []

    def row_of(self, user: str) -> dict:
        hits = [r for r in self.rows if f"Question: {r['question']}\n\n" in user]
        assert len(hits) == 1, user[:200]
        return hits[0]

    @staticmethod
    def shown(user: str, row: dict) -> list[tuple[str, str]]:
        if row["task"] == "yes_no_maybe":
            return [("yes", "yes"), ("no", "no"), ("maybe", "maybe")]
        texts = {o["text"] for o in row["options"]}
        return [(m.group(1), m.group(2)) for m in re.finditer(r"^([A-Z])\. (.*)$", user, re.MULTILINE)
                if m.group(2) in texts]

    def answer(self, user: str, right: bool) -> str:
        row = self.row_of(user)
        gold = next((o["text"] for o in row["options"] if o["label"] == row["answer"]), row["answer"])
        labels = self.shown(user, row)
        pick = next(lbl for lbl, text in labels if (text == gold) == right)
        return f"Reasoning about the findings.\n\nAnswer: {pick}"

    def __call__(self, request: dict) -> Reply | str:
        user = last_user(request)
        if "Correct option:" in user or re.search(r"^RESPONSE:\n", user, re.MULTILINE):
            return oracle(request)  # a `curate build medqa-cot` call (the medprompt example pool)
        row = self.row_of(user)
        seed = request.get("seed")
        if seed is not None and request.get("temperature"):
            self.samples.append(seed)
            # sc-cot, 3 samples: the known rows get 2 right of 3, the others 1 right of 3
            right = (seed % 3 != 2) if row["id"] in self.correct else (seed % 3 == 1)
            return self.answer(user, right)
        return self.answer(user, row["id"] in self.correct)


@pytest.fixture
def bench():
    """The first LIMIT questions of each MultiMedQA set of the shipped pack and the ids the oracle gets
    right (every third)."""
    sets = {b: load_set(b, limit=LIMIT).to_dicts() for b in MULTIMEDQA}
    correct = {r["id"] for rows in sets.values() for i, r in enumerate(rows) if i % 3 == 0}
    expected = {b: sum(r["id"] in correct for r in rows) / len(rows) for b, rows in sets.items()}
    return sets, correct, expected


def _config(work: Path, **over) -> Path:
    doc = yaml.safe_load((RECIPES / "eval-multimedqa.yaml").read_text())
    doc.update(over)
    path = work / f"eval-{len(list(work.glob('eval-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _eval(work: Path, url: str, *args: str, **over) -> dict:
    cfg = _config(work, **over)
    result, out = _cli("eval", str(cfg), "--base-url", url, "--model", "m", "--limit", str(LIMIT), *args)
    assert result.exit_code == 0, out
    return json.loads((Path(yaml.safe_load(cfg.read_text())["output_dir"]) / "eval.json").read_text())


def _check_exact(result: dict, expected: dict[str, float], sets: dict) -> None:
    for b, acc in expected.items():
        assert result["benchmarks"][b]["accuracy"] == pytest.approx(acc), b
        assert result["benchmarks"][b]["questions"] == LIMIT
    n = sum(len(r) for r in sets.values())
    mm = result["multimedqa"]
    assert mm["questions"] == n == 9 * LIMIT and mm["benchmarks"] == list(MULTIMEDQA) and not mm["complete"]
    assert mm["score"] == pytest.approx(sum(expected[b] * len(sets[b]) for b in sets) / n)


def test_zero_shot_through_lm_eval_scores_exactly_and_pays_no_call_twice(work, bench):
    sets, correct, expected = bench
    with ScriptedServer(Oracle(sets, correct)) as srv:
        result = _eval(work, srv.url, output_dir="out/zs")
        assert srv.count == 9 * LIMIT  # one greedy call per question
        _check_exact(result, expected, sets)
        acc = result["benchmarks"]["medqa_test"]["accuracy"]
        assert result["benchmarks"]["medqa_test"]["stderr"] == pytest.approx((acc * (1 - acc) / (LIMIT - 1)) ** 0.5)
        body = srv.log[0]["body"]
        assert body["model"] == "m" and body["temperature"] == 0 and body["messages"][-1]["role"] == "user"

        again = _eval(work, srv.url, output_dir="out/zs2", cache="out/zs/cache")
        assert srv.count == 9 * LIMIT  # the second evaluation came from lm-eval's response cache
        assert again["benchmarks"] == result["benchmarks"]


def test_sc_cot_majority_vote_over_varying_samples(work, bench, expected_calls):
    sets, correct, expected = bench
    responder = Oracle(sets, correct)
    with ScriptedServer(responder) as srv:
        result = _eval(work, srv.url, "--scheme", "sc-cot", output_dir="out/sc",
                       sc_cot={"samples": 3, "temperature": 0.7})
        assert srv.count == 3 * 9 * LIMIT and sorted(set(responder.samples)) == [0, 1, 2]
        assert expected_calls == [3 * 9 * LIMIT]  # the client knows the run's size (HTTP helper for large runs)
        _check_exact(result, expected, sets)
        preds = [json.loads(x) for x in (work / "out/sc/predictions-sc-cot.jsonl").read_text().splitlines()]
        assert all(len(set(p["votes"])) == 2 for p in preds)  # the samples disagree; the vote decides
        again = _eval(work, srv.url, "--scheme", "sc-cot", output_dir="out/sc", sc_cot={"samples": 3, "temperature": 0.7})
        assert srv.count == 3 * 9 * LIMIT and again["benchmarks"] == result["benchmarks"]
        assert again["client"]["cache_hits"] == 3 * 9 * LIMIT


def test_medprompt_with_cot_examples_by_tag_and_shuffled_options(work, bench, data_dir, monkeypatch):
    from curate.build import run_build

    sets, correct, expected = bench
    monkeypatch.setenv("MEDCURATE_BUILDS", str(work / "builds"))
    with ScriptedServer(Oracle(sets, correct)) as srv:
        build = run_build("medqa-cot", source_overrides={"medqa": str(data_dir / "medqa" / "train_subset1030.json")},
                          limit=30, options={"teacher_url": srv.url, "teacher_model": "m"})
        built = srv.count
        result = _eval(work, srv.url, "--scheme", "medprompt", output_dir="out/mp",
                       medprompt={"dataset": str(build.path), "k": 3, "ensembles": 3})
        _check_exact(result, expected, sets)
        calls = srv.log[built:]
        mcq = [c["body"] for c in calls if "Context:" not in last_user(c["body"])]
        assert all(len(b["messages"]) == 2 * 3 + 1 for b in mcq)  # 3 few-shot pairs before the question
        shot_q, shot_a = mcq[0]["messages"][0], mcq[0]["messages"][1]
        assert shot_q["role"] == "user" and shot_q["content"].startswith("Question: ")
        assert shot_a["role"] == "assistant" and shot_a["content"].rstrip().splitlines()[-1].startswith("Answer: ")
        orders = {}
        for b in mcq:
            user = b["messages"][-1]["content"]
            orders.setdefault(user.split("\n\n")[0], set()).add(user)
        assert all(len(v) == 3 for v in orders.values())  # 3 ensembles, each with its own option order
        # yes/no/maybe questions are not shuffled: their greedy ensembles are one call
        assert len(calls) == 3 * 8 * LIMIT + LIMIT
        assert result["examples"]["build_id"] == build.path.name


def test_killed_evaluation_resumes_without_paying_twice(work, bench):
    sets, correct, expected = bench
    responder = Oracle(sets, correct)

    def slow(request):
        reply = responder(request)
        return Reply(reply if isinstance(reply, str) else reply.content, delay=0.05)

    cfg = _config(work, output_dir="out/kill", scheme="sc-cot", sc_cot={"samples": 3, "temperature": 0.7},
                  concurrency=4, limit=LIMIT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with ScriptedServer(slow) as srv:
        cmd = [sys.executable, "-m", "train.cli", "eval", str(cfg), "--base-url", srv.url, "--model", "m"]
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while srv.count < 40 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        total = 3 * 9 * LIMIT
        with CallCache(work / "out/kill/cache" / CACHE_FILE) as cache:
            kept = len(cache)  # calls the killed run finished and committed
        sent = srv.count
        assert 0 < kept < total and not (work / "out/kill/eval.json").exists()
        assert len(srv.completed_bodies()) - kept <= 4  # at most the calls in flight were lost
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert srv.count - sent == total - kept  # the re-run asked only for what the killed run had not kept
    _check_exact(json.loads((work / "out/kill/eval.json").read_text()), expected, sets)


def test_killed_zero_shot_resumes_from_lm_eval_response_cache(work, bench):
    sets, correct, expected = bench
    responder = Oracle(sets, correct)
    cfg = _config(work, output_dir="out/kill-zs", concurrency=4, limit=LIMIT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    total = 9 * LIMIT
    with ScriptedServer(lambda req: Reply(responder(req), delay=0.1)) as srv:
        cmd = [sys.executable, "-m", "train.cli", "eval", str(cfg), "--base-url", srv.url, "--model", "m"]
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while len(srv.completed_bodies()) < 20 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        answered = len(srv.completed_bodies())
        assert 20 <= answered < total and not (work / "out/kill-zs/eval.json").exists()
        sent = srv.count
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        # the re-run asked again at most for the answers still in flight when the first run was killed
        assert total - answered <= srv.count - sent <= total - answered + 4
    _check_exact(json.loads((work / "out/kill-zs/eval.json").read_text()), expected, sets)


def test_compare_table_and_card(work, bench):
    sets, correct, expected = bench
    with ScriptedServer(Oracle(sets, correct)) as srv:
        _eval(work, srv.url, "--scheme", "sc-cot", output_dir="out/a", name="model-a",
              sc_cot={"samples": 3, "temperature": 0.7})
        _eval(work, srv.url, "--scheme", "sc-cot", output_dir="out/b", name="model-b",
              sc_cot={"samples": 1, "temperature": 0.7})
    result, out = _cli("compare", "out/a", "out/b")
    assert result.exit_code == 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith("| model-")]
    assert len(lines) == 2 and lines[0].split(" | ")[1] == "sc-cot"
    result, out = _cli("compare", "out/a", "out/b", "--json")
    data = json.loads(out)
    assert data["benchmarks"] == list(MULTIMEDQA)
    a = json.loads((work / "out/a/eval.json").read_text())
    assert data["models"][0]["multimedqa"] == a["multimedqa"]["score"]
    result, out = _cli("compare", "out/missing")
    assert result.exit_code == 2 and "no eval.json" in out


@pytest.mark.slow
def test_eval_tiny_sft_checkpoint_through_lm_eval_hf(work, train_data, write_config):
    sft_cfg = write_config("sft", recipe="tiny-sft", datasets=[train_data["tiny-sft-demo"]],
                           training={"max_steps": 2})
    result, out = _cli("sft", str(sft_cfg))
    assert result.exit_code == 0, out
    ckpt = work / "outputs" / "tiny-sft"
    cfg = _config(work, output_dir="out/tiny", max_tokens=8, aloe_size="8B")
    result, out = _cli("eval", str(cfg), "--checkpoint", str(ckpt), "--limit", "2")
    assert result.exit_code == 0, out
    res = json.loads((work / "out/tiny/eval.json").read_text())
    assert res["model"] == {"checkpoint": str(ckpt)} and res["multimedqa"]["questions"] == 18
    assert all(0.0 <= s["accuracy"] <= 1.0 and s["questions"] == 2 for s in res["benchmarks"].values())
    assert res["datasets"][0]["name"] == "local/demo" and res["datasets"][0]["version"] == "v1.0.0"
    card = (ckpt / "README.md").read_text()
    assert "## Evaluation" in card and "| medqa_test |" in card and "MultiMedQA" in card
    assert "Llama3.1-Aloe-Beta-8B (published)" in card and "unverified" in card
    from train.evaluation.report import size_of

    assert size_of(str(ckpt)) is None  # a 130k-parameter model matches no Aloe size by itself
    assert card.index("## Training data") < card.index("## Evaluation") < card.index("## Lineage")

    # log-likelihood over the answer labels: a random model scores near chance (1/4 MCQ, 1/3 PubMedQA)
    result, out = _cli("eval", str(cfg), "--checkpoint", str(ckpt), "--limit", "12", "--output", "out/ll",
                       "--set", "mode=loglikelihood")
    assert result.exit_code == 0, out
    ll = json.loads((work / "out/ll/eval.json").read_text())
    assert ll["multimedqa"]["questions"] == 9 * 12 and 0.1 < ll["multimedqa"]["score"] < 0.5
    assert json.loads((ckpt / "medcurate_training.json").read_text())["evaluations"]["zero-shot"]["rows"][0]["questions"] == 12
    result, out = _cli("compare", "out/tiny", "out/ll")  # the dataset version each score was bought with
    assert result.exit_code == 0 and out.count("`local/demo@v1.0.0`") == 2, out

    # the same model served: `lineage` names its training output, whose card gains the sc-cot scores too
    with ScriptedServer() as srv:
        result, out = _cli("eval", str(cfg), "--base-url", srv.url, "--model", "tiny", "--scheme", "sc-cot",
                           "--limit", "1", "--output", "out/served", "--set", f"lineage={ckpt}",
                           "--set", "sc_cot.samples=1")
    assert result.exit_code == 0, out
    served = json.loads((work / "out/served/eval.json").read_text())
    assert served["datasets"] == res["datasets"] and served["lineage"] == str(ckpt)
    card = (ckpt / "README.md").read_text()
    assert "### zero-shot (`--limit 12`" in card and "### sc-cot (`--limit 1`" in card


def test_multimedqa_sets_from_the_pack_match_the_original_files(data_dir):
    counts = {b: load_set(b).height for b in MULTIMEDQA}
    assert counts["medqa_test"] == 1273 and counts["medmcqa_dev"] == 4183 and counts["pubmedqa_test"] == 500
    assert sum(counts.values()) == 7045  # MultiMedQA as Aloe reports it: 1,273 + 4,183 + 500 + 1,089
    for b in ("medqa_test", "pubmedqa_test", "mmlu_anatomy_test"):
        pack, files = load_set(b, limit=20), load_set(b, root=str(data_dir), limit=20)
        assert pack["question"].to_list() == files["question"].to_list()
        assert pack["answer"].to_list() == files["answer"].to_list()


@pytest.mark.slow
def test_eval_against_transformers_serve(work, tiny_serve):
    """A real OpenAI-compatible server (tiny random Llama): zero-shot through lm-eval and sc-cot complete."""
    cfg = _config(work, output_dir="out/serve", max_tokens=8, benchmarks=["medqa_test", "pubmedqa_test"])
    for scheme in ("zero-shot", "sc-cot"):
        result, out = _cli("eval", str(cfg), "--base-url", tiny_serve["url"], "--model", tiny_serve["model"],
                           "--limit", "2", "--scheme", scheme, "--output", f"out/{scheme}",
                           "--set", "sc_cot.samples=2")
        assert result.exit_code == 0, out
        res = json.loads((work / f"out/{scheme}/eval.json").read_text())
        assert res["multimedqa"]["questions"] == 4 and res["model"] == {"served": tiny_serve["model"]}
        assert all(0.0 <= s["accuracy"] <= 1.0 and not s.get("failed") for s in res["benchmarks"].values())


def test_answers_are_scored_by_synths_parser_with_a_strict_bare_label_fallback():
    from train.evaluation.questions import majority, predict

    mcq = load_set("medqa_test", limit=1).row(0, named=True)
    ynm = load_set("pubmedqa_test", limit=1).row(0, named=True)
    assert predict("Step by step...\n\nAnswer: C", mcq) == "C"
    assert predict("**Answer:** (b)", mcq) == "B"
    assert predict("B", mcq) == "B" and predict("(D)", mcq) == "D"
    assert predict(f"The findings fit.\nB. {mcq['options'][1]['text']}", mcq) == "B"
    assert predict("A patient like this needs an ECG.", mcq) is None  # prose, not option A
    assert predict("Answer: B or C", mcq) is None
    assert predict("Answer: Maybe.", ynm) == "maybe" and predict("no", ynm) == "no"
    assert majority(["B", None, "C", "C", "B"]) == "B" and majority([None, None]) is None


def test_api_key_reaches_the_server_and_no_output_file(work, bench, monkeypatch):
    sets, correct, _ = bench
    secret = "sk-eval-secret-4711"
    monkeypatch.setenv("EVAL_TEST_KEY", secret)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-this-one")
    with ScriptedServer(Oracle(sets, correct)) as srv:
        for scheme in ("zero-shot", "sc-cot"):
            _eval(work, srv.url, "--scheme", scheme, output_dir=f"out/key-{scheme}", api_key_env="EVAL_TEST_KEY",
                  benchmarks=["mmlu_anatomy_test"], sc_cot={"samples": 1, "temperature": 0.7})
        assert srv.log and {e["headers"].get("authorization") for e in srv.log} == {f"Bearer {secret}"}
    leaked = [p for p in (work / "out").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == [] and os.environ["OPENAI_API_KEY"] == "sk-not-this-one"  # the process env is untouched
