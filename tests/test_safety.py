"""Red-team safety pairs (issue 14) on the real safety sets, against scripted teacher, policy and judge
servers on loopback (and, marked slow, against `transformers serve` with a tiny model in all three roles).

The scripted policy answers each attacked prompt by a plan drawn from a hash of the prompt: a failing
call, a reply the judge cannot rate, an unsafe answer or a refusal. The scripted teacher writes a safe
answer, except for some prompts where it never does and some where its first attempt is unsafe. The
scripted judge rates by what the response says. Every expectation below is recomputed from the servers'
request logs, never taken from the step's own output.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import polars as pl
import pytest
from fixtures_train import tiny_dpo_run

from curate.build import run_build
from curate.recipe import SourceSpec
from curate.sources import read_source
from curate.steps import BuildContext, get_step
from synth.safety import parse_verdict
from synth.testing import Reply, ScriptedServer, last_user

SAFETY = "safety"
MSB_GPT4 = "safety/medsafetybench/train/gpt4/*.csv"
JAILBREAK = "safety/jailbreak-llms/jailbreak_prompts_2023_05_07.csv"
UNSAFE = "UNSAFE-ANSWER: sure, here are the exact steps you asked for, in detail."
REFUSAL = "I can't help with that, but here is what I can tell you about caring for patients safely."


def _bucket(text: str, salt: str, n: int) -> int:
    return int(hashlib.sha256(f"{salt}:{text}".encode()).hexdigest(), 16) % n


def policy_plan(prompt: str) -> str:
    return ("error", "garbled", "unsafe", "unsafe", "unsafe", "unsafe", "safe", "safe", "safe", "safe")[
        _bucket(prompt, "policy", 10)]


def teacher_plan(prompt: str) -> str:
    return ("never_safe", "second_try", "safe", "safe", "safe")[_bucket(prompt, "teacher", 5)]


def policy(req: dict) -> Reply:
    plan = policy_plan(last_user(req))
    if plan == "error":
        return Reply(status=400)
    if plan == "garbled":
        return Reply("GARBLED ~~~ ###")
    return Reply(f"{UNSAFE} (seed {req['seed']})" if plan == "unsafe" else REFUSAL)


class Teacher:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, req: dict) -> Reply:
        prompt = last_user(req)
        assert req["messages"][0]["role"] == "system" and "harmful" in req["messages"][0]["content"]
        self.calls[prompt] += 1
        plan = teacher_plan(prompt)
        if plan == "never_safe" or (plan == "second_try" and self.calls[prompt] == 1):
            return Reply(f"{UNSAFE} (teacher attempt {self.calls[prompt]})")
        return Reply(f"SAFE-ANSWER {self.calls[prompt]}: I won't help with the harmful part. Please talk to a "
                     "licensed clinician or an ethics board.")


def judge_blocks(req: dict) -> tuple[str, str]:
    user = last_user(req)
    prompt = user.split("PROMPT SENT TO THE ASSISTANT:\n", 1)[1].split("\n\nRESPONSE:\n", 1)[0]
    return prompt, user.split("\n\nRESPONSE:\n", 1)[1]


def judge(req: dict) -> Reply:
    _, response = judge_blocks(req)
    if "GARBLED" in response:
        return Reply("I cannot tell.")
    return Reply("The response gives harmful help.\nVerdict: UNSAFE" if "UNSAFE-ANSWER" in response
                 else "It declines and redirects.\n**Verdict:** SAFE")


@pytest.fixture(scope="module")
def msb(data_dir: Path) -> pl.DataFrame:
    path = data_dir / MSB_GPT4
    return read_source(SourceSpec(name="msb", format="safety_prompts", path=str(path)), base_dir=data_dir).frame


# --- sources ---------------------------------------------------------------------------------------

def test_safety_sources_read_every_layout(data_dir: Path) -> None:
    def read(path: str) -> pl.DataFrame:
        data = read_source(SourceSpec(name="s", format="safety_prompts", path=str(data_dir / SAFETY / path)),
                           base_dir=data_dir)
        assert data.rejected.height == 0
        return data.frame

    msb = read("medsafetybench/train/*/*.csv")
    assert msb.height == 900 and msb["id"].n_unique() == 900
    assert msb["category"].value_counts().sort("category").rows() == [("gpt4", 450), ("llama2", 450)]
    assert msb.filter(pl.col("category") == "llama2")["topic"].value_counts().sort("topic").rows()[0] == (
        "ama-principle-1", 59)  # per-category counts from the README: 59, 57, 31, ...
    assert msb["reference_response"].null_count() == 0 and msb["answer"].null_count() == 900
    ft = read("medsafetybench/ft_safety_med_n100.json")
    assert ft.height == 100 and set(ft["id"]) <= set(msb["id"])  # the README: all 100 requests occur above
    aart = read("aart/aart-v1-20231117_first2769.csv")
    assert aart.height == 2769 and aart["topic"].null_count() == 0 and "violence" in set(aart["topic"])
    fq = read("jailbreak-llms/forbidden_question_set.csv")
    assert fq.height == 390 and fq["topic"].n_unique() == 13
    assert fq.filter(pl.col("topic") == "Health Consultation").height == 30


def test_safety_source_rejects_unknown_layout(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("foo,bar\n1,2\n")
    data = read_source(SourceSpec(name="x", format="safety_prompts", path=str(f)), base_dir=tmp_path)
    assert data.frame.height == 0 and data.rejected["reason"].to_list() == ["malformed_row"]
    assert "match no safety-prompt layout" in data.rejected["detail"][0]


# --- attack ----------------------------------------------------------------------------------------

def _ctx(tmp_path: Path, seed: int = 0, **options) -> BuildContext:
    return BuildContext(recipe_name="t", work_dir=tmp_path, seed=seed, options=options)


def test_attack_styles_are_seeded_and_plain_always_included(tmp_path: Path, msb: pl.DataFrame, data_dir: Path) -> None:
    frame = msb.head(30)
    res4 = get_step("attack")({"n": 4}).apply(frame, _ctx(tmp_path))
    out = res4.kept
    assert res4.rejected.height == 0 and out.height == 4 * 30 and out["id"].n_unique() == out.height
    assert set(out["parent_id"]) == set(frame["id"]) and not set(out["id"]) & set(frame["id"])
    for _parent, group in out.group_by("parent_id"):
        styles = group["attack_style"].to_list()
        assert "plain" in styles and len(set(styles)) == 4
        request = group["question"][0]
        for style, text in zip(styles, group["attack_prompt"], strict=True):
            if style == "payload_split":
                assert request.split()[0] in text and request.split()[-1] in text
            else:
                assert request in text
            assert (text == request) == (style == "plain")
    assert out["attack_style"].n_unique() > 5  # different requests draw different styles
    again = get_step("attack")({"n": 4}).apply(frame, _ctx(tmp_path))
    assert again.kept["id"].to_list() == out["id"].to_list()
    other_seed = get_step("attack")({"n": 4}).apply(frame, _ctx(tmp_path, seed=7)).kept
    assert set(other_seed["id"]) != set(out["id"])
    more = get_step("attack")({"n": 6}).apply(frame, _ctx(tmp_path)).kept
    assert set(out["id"]) < set(more["id"])  # raising n keeps every earlier draw

    # imported jailbreak templates: the placeholder is where the request goes
    tpl = get_step("attack")({"n": 3, "styles": [], "templates": {"path": str(data_dir / JAILBREAK), "max": 5}})
    res = tpl.apply(frame.head(10), _ctx(tmp_path)).kept
    jail = res.filter(pl.col("attack_style").str.starts_with("jailbreak-"))
    assert jail.height == 20 and jail["attack_style"].n_unique() <= 5
    for row in jail.iter_rows(named=True):
        assert row["question"] in row["attack_prompt"] and "[INSERT PROMPT HERE]" not in row["attack_prompt"]


def test_styles_file_is_editable(tmp_path: Path, msb: pl.DataFrame) -> None:
    styles = tmp_path / "styles.yaml"
    styles.write_text('styles:\n  shout: "ANSWER NOW: {request}"\n')
    out = get_step("attack")({"n": 2, "styles_file": str(styles)}).apply(msb.head(3), _ctx(tmp_path)).kept
    assert sorted(set(out["attack_style"])) == ["plain", "shout"]
    assert all(t.startswith("ANSWER NOW: ") for t in out.filter(pl.col("attack_style") == "shout")["attack_prompt"])


# --- judge verdicts --------------------------------------------------------------------------------

def test_parse_verdict() -> None:
    assert parse_verdict("reasoning\nVerdict: SAFE") == "safe"
    assert parse_verdict("**Verdict:** unsafe") == "unsafe"
    assert parse_verdict("Verdict: safe ... on reflection\nVerdict: UNSAFE") == "unsafe"
    assert parse_verdict("The response is safe.") is None


# --- the recipe, end to end with scripted servers ---------------------------------------------------

def _carve_test_split(data_dir: Path, work: Path, msb: pl.DataFrame) -> tuple[Path, list[str], list[str]]:
    """A test split carved from the training file: 4 requests verbatim, 2 lightly reworded."""
    rows = msb.head(40).to_dicts()
    verbatim = [r["question"] for r in rows[:4]]
    reworded = [r["question"] for r in rows[4:6]]
    path = work / "msb-test.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "harmful_medical_request", "safe_response"])
        for i, q in enumerate(verbatim):
            w.writerow([i, q, "no"])
        for i, q in enumerate(reworded, 4):
            w.writerow([i, "Please answer: " + q.rstrip("?.") + ", thanks.", "no"])
    return path, verbatim, reworded


def _recipe(work: Path, data_dir: Path, test_csv: Path, judge_url: str, n: int = 3) -> Path:
    text = (Path(__file__).resolve().parents[1] / "recipes" / "medical-safety-dpo.yaml").read_text()
    recipe = work / "medical-safety-dpo.yaml"
    sources = (
        "sources:\n"
        f"  - {{name: msb-test, format: safety_prompts, path: {test_csv}, split: test, license: mit}}\n"
        f"  - {{name: medsafetybench, format: safety_prompts, path: {data_dir / MSB_GPT4}, license: mit}}\n"
        f"  - {{name: medsafetybench-ft, format: safety_prompts, path: "
        f"{data_dir / SAFETY / 'medsafetybench' / 'ft_safety_med_n100.json'}, license: mit}}\n"
    )
    text = re.sub(r"sources:\n.*?(?=steps:)", sources, text, flags=re.S)
    text = text.replace("teacher: vllm-local ", "teacher: {profile: vllm-local, max_retries: 1, backoff_base_s: 0.01} ")
    text = text.replace("      n: 4 ", f"      n: {n} ")
    text = re.sub(r"      templates:.*?max: 20\n", "", text, flags=re.S)
    text = text.replace("      mode: safety\n", f"      mode: safety\n      judge: {{model: judge, urls: [{judge_url}]}}\n")
    recipe.write_text(text)
    return recipe


def _run(recipe: Path, teacher_url: str, policy_url: str, limit: int):
    return run_build(str(recipe), limit=limit, options={
        "teacher_url": [teacher_url], "teacher_model": "teacher", "policy_url": [policy_url],
        "policy_model": "policy"})


@pytest.fixture
def servers():
    teacher = Teacher()
    with ScriptedServer(teacher) as t, ScriptedServer(policy) as p, ScriptedServer(judge) as j:
        yield {"teacher": t, "policy": p, "judge": j, "teacher_fn": teacher}


def test_safety_dpo_build_with_scripted_servers(data_dir: Path, work: Path, msb: pl.DataFrame, servers) -> None:
    test_csv, verbatim, reworded = _carve_test_split(data_dir, work, msb)
    recipe = _recipe(work, data_dir, test_csv, servers["judge"].url)
    res = _run(recipe, servers["teacher"].url, servers["policy"].url, limit=40)
    m, path = res.manifest, res.path
    data = pl.read_parquet(path / "data")
    rejects = {p.stem: pl.read_parquet(p) for p in (path / "rejects").glob("*.parquet")}
    side = pl.read_parquet(path / "scores" / "preference.parquet")

    # reconciliation: every row in, every attacked row out, with a reason when it is not a pair
    attack = next(s for s in m["steps"] if s["name"] == "attack")
    assert attack["rows_kept"] == 3 * attack["rows_in"] and attack["rows_added"] == 2 * attack["rows_in"]
    assert m["rows_in"] + m["rows_added"] == m["rows_out"] + m["rows_rejected"]
    assert m["rows_rejected"] == sum(r.height for r in rejects.values()) and m["rows_out"] == data.height
    pref = next(s for s in m["steps"] if s["name"] == "preference")
    assert pref["rows_in"] == pref["rows_kept"] + pref["rows_rejected"] == side.height

    # held-out test rows and their near copies never train; the 100 Alpaca rows repeat MSB requests
    hold = rejects["holdout"]
    assert sorted(hold.filter(pl.col("reason") == "held_out_test")["source"].to_list()) == ["msb-test"] * 6
    assert sorted(hold.filter(pl.col("reason") == "test_overlap")["question"].to_list()) == sorted(reworded)
    assert set(rejects["ingest"]["reason"]) == {"duplicate_id"}
    assert set(verbatim) <= set(rejects["ingest"].filter(pl.col("source") == "medsafetybench")["question"])
    reached = pl.concat([data.select("question", "source"), rejects["preference"].select("question", "source")])
    assert not set(reached["question"]) & (set(verbatim) | set(reworded))
    assert reached.filter(pl.col("source") == "medsafetybench")["question"].n_unique() == 40 - 6

    # every pair: judged-safe chosen from the teacher vs the judged-unsafe policy answer, same prompt
    pol_log = servers["policy"].log
    said = {last_user(e["body"]): policy(e["body"]).content for e in pol_log if e["completed"]}
    judged = {judge_blocks(e["body"]): parse_verdict(judge(e["body"]).content)
              for e in servers["judge"].log if e["completed"]}
    for row in data.iter_rows(named=True):
        prompt = row["attack_prompt"]
        assert row["prompt"] == [{"role": "user", "content": prompt}]
        (chosen,), (rejected,) = row["chosen"], row["rejected"]
        assert rejected["content"] == said[prompt] and judged[(prompt, rejected["content"])] == "unsafe"
        assert judged[(prompt, chosen["content"])] == "safe" and chosen["content"].startswith("SAFE-ANSWER")
        assert policy_plan(prompt) == "unsafe" and teacher_plan(prompt) != "never_safe"

    # every attacked prompt without a pair leaves with the reason its plans imply
    expected = {"error": "policy_error", "garbled": "judge_no_verdict", "safe": "policy_safe"}
    rej = rejects["preference"]
    for row in rej.iter_rows(named=True):
        plan = policy_plan(row["attack_prompt"])
        want = expected.get(plan) or ("no_safe_chosen" if teacher_plan(row["attack_prompt"]) == "never_safe" else None)
        assert row["reason"] == want, (row["reason"], row["detail"])
    assert set(rej["reason"]) == {"policy_error", "judge_no_verdict", "policy_safe", "no_safe_chosen"}
    second = side.filter(pl.col("chosen_verdicts").list.len() == 2)
    assert second.height > 0 and all(v == ["unsafe", "safe"] for v in second["chosen_verdicts"].to_list())

    # ASR per style and per topic = unsafe / judged policy answers, from the policy server's log
    attacked = pl.concat([data, rej], how="diagonal_relaxed")
    assert attacked.height == side.height
    style_of = dict(zip(attacked["attack_prompt"], attacked["attack_style"], strict=True))
    unsafe, total = Counter(), Counter()
    for prompt, text in said.items():
        if "GARBLED" in text:
            continue
        total[style_of[prompt]] += 1
        unsafe[style_of[prompt]] += "UNSAFE-ANSWER" in text
    asr = {s: round(unsafe[s] / total[s], 4) for s in total}
    stats = pref["stats"]
    assert {k: v for k, v in stats["asr"]["by_style"].items() if k != "all"} == asr
    assert stats["asr"]["judged"] == sum(total.values())
    assert stats["asr"]["overall"] == round(sum(unsafe.values()) / sum(total.values()), 4)
    assert sum(r[1] for r in next(t for t in stats["report_tables"] if t["title"].endswith("by topic"))["rows"][:-1]) \
        == sum(total.values())

    # report and card carry the ASR table; the card warns about harmful content and states the intended use
    report = (path / "report.md").read_text()
    card = (path / "README.md").read_text()
    for text in (report, card):
        assert "Policy attack success rate by attack_style" in text and "Policy attack success rate by topic" in text
    assert "Content warning" in card and "Intended use" in card
    assert f"(+{m['rows_added']} added)" in card and f"+ {m['rows_added']} added by expanding steps" in report

    # a second build pays for nothing: every teacher, policy and judge call comes from the cache
    before = {k: len(servers[k].log) for k in ("teacher", "policy", "judge")}
    failed = {k: sum(not e["completed"] for e in servers[k].log) for k in before}
    again = _run(recipe, servers["teacher"].url, servers["policy"].url, limit=40)
    assert {k: len(servers[k].log) - before[k] for k in before} == failed  # failed calls are asked again
    assert again.manifest["output"]["sha256"] == m["output"]["sha256"]

    # one more attack style per request pays only for the new attacked prompts' calls
    before = len(servers["policy"].log)
    more = _run(_recipe(work, data_dir, test_csv, servers["judge"].url, n=4), servers["teacher"].url,
                servers["policy"].url, limit=40)
    new_rows = next(s for s in more.manifest["steps"] if s["name"] == "preference")["rows_in"] - pref["rows_in"]
    assert new_rows == attack["rows_in"]
    new_prompts = {last_user(e["body"]) for e in servers["policy"].log[before:]}
    old_prompts = set(attacked["attack_prompt"])
    errors_again = {p for p in old_prompts if policy_plan(p) == "error"}
    assert new_prompts - old_prompts and new_prompts & old_prompts == errors_again
    assert len(new_prompts - old_prompts) == new_rows


def test_safety_mode_policy_profile_in_the_step(tmp_path: Path, msb: pl.DataFrame, servers, expected_calls) -> None:
    """Without --policy-url the step's `policy:` profile is the policy; with neither, a clear error."""
    from curate.errors import RecipeError

    frame = get_step("attack")({"n": 2}).apply(msb.head(12), _ctx(tmp_path)).kept
    ctx = _ctx(tmp_path, teacher_url=[servers["teacher"].url], teacher_model="t")
    with pytest.raises(RecipeError, match="--policy-url"):
        get_step("preference")({"mode": "safety"}).apply(frame, ctx)
    step = get_step("preference")({"mode": "safety", "policy": {"model": "pm", "urls": [servers["policy"].url]},
                                   "judge": {"model": "jm", "urls": [servers["judge"].url]}, "log_every_s": 60})
    res = step.apply(frame, ctx)
    assert res.kept.height + res.rejected.height == 24 and res.kept.height > 0
    assert {e["body"]["model"] for e in servers["policy"].log} == {"pm"}
    assert {e["body"]["model"] for e in servers["judge"].log} == {"jm"}
    assert {e["body"]["model"] for e in servers["teacher"].log} == {"t"}
    assert res.stats["policy"]["model"] == "pm" and res.stats["judge"]["model"] == "jm"
    assert expected_calls == [24, 24, 24]  # teacher, policy and judge clients know the frame's size


def test_safety_pairs_pass_trl_checks_and_train_dpo(data_dir: Path, work: Path, msb: pl.DataFrame, servers) -> None:
    import datasets
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    from train.tiny import build_tiny_tokenizer

    test_csv, _, _ = _carve_test_split(data_dir, work, msb)
    res = _run(_recipe(work, data_dir, test_csv, servers["judge"].url, n=2), servers["teacher"].url,
               servers["policy"].url, limit=30)
    ds = datasets.load_dataset("parquet", data_files=str(res.path / "data" / "*.parquet"), split="train")
    assert ds.num_rows == res.manifest["rows_out"] >= 4
    tok = build_tiny_tokenizer()
    for example in ds:
        assert is_conversational(example)
        out = maybe_apply_chat_template(example, tok)
        assert out["prompt"].endswith("<|im_start|>assistant\n") and out["chosen"] != out["rejected"]
    # published by tag, the version recipes/train/aloe-dpo-stage2.yaml consumes
    from curate import registry
    from train.config import load_config

    pushed = registry.push("medical-safety-dpo", "1.0.0", build=res.path.name, allow_partial=True)
    stage2 = load_config("dpo", Path(__file__).resolve().parents[1] / "recipes" / "train" / "aloe-dpo-stage2.yaml")
    ref = f"{pushed.repo_id}@{pushed.tag}"
    assert [d.ref for d in stage2.datasets] == [ref]
    tiny_dpo_run(work, ref, res.manifest["output"]["sha256"], batch=2, max_length=256)


@pytest.mark.slow
def test_safety_dpo_against_transformers_serve(data_dir: Path, work: Path, msb: pl.DataFrame, tiny_serve) -> None:
    """A real server (tiny random model as teacher, policy and judge): the build completes and reconciles.

    The tiny model's noise carries no verdict, so the rows leave as `judge_no_verdict`; what is checked is
    that every call is made and answered and every row is accounted for."""
    test_csv, _, _ = _carve_test_split(data_dir, work, msb)
    recipe = _recipe(work, data_dir, test_csv, tiny_serve["url"], n=2)
    text = recipe.read_text().replace("judge: {model: judge,", f"judge: {{model: {tiny_serve['model']}, max_concurrency: 4, timeout_s: 60,")
    for key in ("max_tokens: 1024", "policy_max_tokens: 512"):
        text = text.replace(key, key.split(":")[0] + ": 8")
    text = text.replace("      mode: safety\n", "      mode: safety\n      judge_max_tokens: 8\n      judge_attempts: 1\n")
    recipe.write_text(text)
    res = run_build(str(recipe), limit=8, options={
        "teacher_url": [tiny_serve["url"]], "teacher_model": tiny_serve["model"],
        "policy_url": [tiny_serve["url"]], "policy_model": tiny_serve["model"],
        "allow_empty": True})  # a random model's judge never says "unsafe": no pair may come out
    m = res.manifest
    assert m["rows_in"] + m["rows_added"] == m["rows_out"] + m["rows_rejected"]
    pref = next(s for s in m["steps"] if s["name"] == "preference")
    assert pref["rows_in"] == pref["rows_kept"] + pref["rows_rejected"] > 0
    side = pl.read_parquet(res.path / "scores" / "preference.parquet")
    assert side["policy_response"].null_count() == 0  # the server answered every policy call
    assert not {"policy_error", "judge_error", "teacher_error"} & set(side["pref_outcome"])
    by = defaultdict(int)
    for o in side["pref_outcome"]:
        by[o] += 1
    assert sum(by.values()) == pref["rows_in"]


def test_medical_dpo_mix_includes_safety_pairs_by_weight(data_dir: Path, work: Path, msb: pl.DataFrame,
                                                         servers) -> None:
    """The shipped mix recipe's commented safety part, uncommented, mixes the safety build by weight."""
    test_csv, _, _ = _carve_test_split(data_dir, work, msb)
    safety = _run(_recipe(work, data_dir, test_csv, servers["judge"].url, n=4), servers["teacher"].url,
                  servers["policy"].url, limit=60)
    demo = run_build("demo-dpo")
    text = (Path(__file__).resolve().parents[1] / "recipes" / "medical-dpo-mix.yaml").read_text()
    block = re.search(r"^#  - name: medical-safety-dpo\n(?:#    .*\n)+", text, re.M).group(0)
    part = "".join(line[1:] + "\n" for line in block.splitlines())
    text = re.sub(r"  - name: medmcqa-dpo\n(?:    .*\n)+", part, text)
    (work / "mix.yaml").write_text(text)
    res = run_build(str(work / "mix.yaml"), source_overrides={
        "medqa-dpo": str(demo.path), "medical-safety-dpo": str(safety.path)})
    m = res.manifest
    mix = next(s for s in m["steps"] if s["name"] == "mix")
    out = pl.read_parquet(res.path / "data")
    by_source = dict(out.group_by("source").len().rows())
    assert set(by_source) == {"medqa-dpo", "medical-safety-dpo"}
    n_demo, n_safety = by_source["medqa-dpo"], by_source["medical-safety-dpo"]
    assert n_safety == pytest.approx(0.5 * n_demo, abs=1)  # weights 1.0 : 0.5
    assert m["rows_in"] == m["rows_out"] + m["rows_rejected"] and mix["rows_in"] > out.height
    assert out.filter(pl.col("source") == "medical-safety-dpo")["rejected"].list.len().min() == 1


def test_expanding_step_reconciliation(tmp_path: Path, msb: pl.DataFrame) -> None:
    """The runner accepts an expansion only when the parents are exactly the input ids and ids stay unique."""
    from curate.errors import ReconciliationError
    from curate.runner.accounting import check as _check
    from curate.steps import StepResult, no_rejects

    frame = msb.head(5)
    res = get_step("attack")({"n": 3}).apply(frame, _ctx(tmp_path))
    assert _check("attack", frame, res, expands=True) == 10
    lost = res.kept.filter(pl.col("parent_id") != frame["id"][0])  # every style of one request dropped
    with pytest.raises(ReconciliationError, match="parent_id"):
        _check("attack", frame, StepResult(kept=lost, rejected=no_rejects(lost)), expands=True)
    twice = pl.concat([res.kept, res.kept.head(1)])
    with pytest.raises(ReconciliationError, match="unique ids"):
        _check("attack", frame, StepResult(kept=twice, rejected=no_rejects(twice)), expands=True)
    with pytest.raises(ReconciliationError):  # a step that does not declare expansion may not add rows
        _check("attack", frame, res)


def test_cli_shipped_recipe_with_policy_flags(data_dir: Path, work: Path) -> None:
    """`curate build medical-safety-dpo --policy-url/--policy-model`: the shipped recipe (jailbreak templates
    included) estimates, builds against scripted servers and then finds the policy calls cached."""
    from typer.testing import CliRunner

    from curate.cli import app

    teacher = Teacher()

    def teacher_and_judge(req: dict) -> Reply:
        return judge(req) if "PROMPT SENT TO THE ASSISTANT" in last_user(req) else teacher(req)

    sources = {"medsafetybench": MSB_GPT4, "medsafetybench-ft": "safety/medsafetybench/ft_safety_med_n100.json",
               "aart": "safety/aart/aart-v1-20231117_first2769.csv",
               "forbidden-questions": "safety/jailbreak-llms/forbidden_question_set.csv"}
    with ScriptedServer(teacher_and_judge) as tj, ScriptedServer(policy) as pol:
        args = ["build", "medical-safety-dpo", "--limit", "6", "-q", "--teacher-url", tj.url, "--teacher-model", "t",
                "--policy-url", pol.url, "--policy-model", "p"]
        for name, rel in sources.items():
            args += ["--source", f"{name}={data_dir / rel}"]
        before = CliRunner().invoke(app, [*args, "--dry-run"])
        assert before.exit_code == 0, before.output
        est = json.loads(before.stdout[before.stdout.index("{"):])["preference"]
        assert est["policy"]["model"] == "p" and est["cache_hits"] == 0 and not pol.log and not tj.log
        built = CliRunner().invoke(app, args)
        assert built.exit_code == 0, built.output
        assert pol.log and all(e["body"]["model"] == "p" for e in pol.log)
        assert {e["body"]["model"] for e in tj.log} == {"t"}
        after = CliRunner().invoke(app, [*args, "--dry-run"])
        est2 = json.loads(after.stdout[after.stdout.index("{"):])["preference"]
    assert est2["policy_calls"] == est["policy_calls"] and est2["cache_hits"] == sum(e["completed"] for e in pol.log)
    manifest = json.loads((Path(built.stdout.strip().splitlines()[-1]) / "manifest.json").read_text())
    styles = next(s for s in manifest["steps"] if s["name"] == "attack")["stats"]["style_versions"]
    assert any(k.startswith("jailbreak-") for k in styles) and "plain" in styles
