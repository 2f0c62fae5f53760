"""`cot` and `judge` steps on real MedQA / PubMedQA rows against the scripted teacher: answer parsing,
verification, regeneration, rejection reasons, caching, determinism and the dry-run estimate."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from curate.steps import get_step
from synth import prompts
from synth.parse import find_answer, open_matches, parse_mcq, parse_score, parse_ynm
from synth.prompts import COT_TEMPLATES, fields
from synth.steps.cot import verify
from synth.testing import Reply, last_user, oracle
from tests.fixtures_teacher import make_ctx

OPTS = [{"label": "A", "text": "Hashimoto thyroiditis"}, {"label": "B", "text": "Graves disease"},
        {"label": "C", "text": "Subacute thyroiditis"}, {"label": "D", "text": "Toxic multinodular goitre"}]


def gold_of(req: dict) -> str:
    return re.search(r"^Correct (?:option|conclusion): (.+)$", last_user(req), re.M).group(1)


def explanation(gold: str) -> str:
    return ("We must decide what best explains this presentation. The findings point towards a single mechanism, "
            "and weighing each alternative against the timeline and the laboratory data leaves only one that fits "
            f"without contradiction.\n\nAnswer: {gold}")


def run(step_name: str, frame: pl.DataFrame, ctx, **params):
    step = get_step(step_name)({"log_every_s": 60, **params})
    res = step.apply(frame, ctx)
    assert res.kept.height + res.rejected.height == frame.height
    assert set(res.kept["id"]) | set(res.rejected["id"]) == set(frame["id"])
    return res


# -- parsing ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "label"), [
    ("blah\n\nAnswer: B", "B"),
    ("blah\n**Answer:** (B)", "B"),
    ("blah\nFinal answer: B. Graves disease", "B"),
    ("blah\nANSWER: b", "B"),
    ("blah\nAnswer: Option B", "B"),
    ("blah\nAnswer: Graves disease", "B"),
    ("Answer: A is tempting\nmore text\nAnswer: B", "B"),
    ("so the correct answer is (B).", "B"),
    ("blah\nAnswer: B or C", None),
    ("blah\nAnswer: B. Hashimoto thyroiditis", None),  # label and text disagree
    ("blah\nAnswer: E", None),
    ("no answer here", None),
])
def test_parse_mcq_answers(text, label):
    found = find_answer(text)
    assert (parse_mcq(found.text, OPTS) if found else None) == label


def test_parse_other_answers_and_scores():
    assert parse_ynm(find_answer("...\nAnswer: Yes.").text) == "yes"
    assert parse_ynm("perhaps") is None
    assert open_matches("intramuscular adrenaline 0.5 mg", "Intramuscular adrenaline")
    assert not open_matches("oral antihistamine", "Intramuscular adrenaline")
    assert parse_score("Clear and correct.\nScore: 8") == 8.0
    assert parse_score("**Score**: 7/10") == 7.0
    assert parse_score('{"score": 9, "why": "ok"}') == 9.0
    assert parse_score("I would give it 6 out of 10.") == 6.0
    assert parse_score("Score: 42") is None and parse_score("no idea") is None
    assert parse_score("7") == 7.0


def test_verify_reasons(medqa_rows):
    row = medqa_rows.row(0, named=True)
    gold, wrong = row["answer"], next(o["label"] for o in row["options"] if o["label"] != row["answer"])
    ok = verify(row, explanation(gold), "stop", min_new_words=15, max_copied=0.6)
    assert ok.reason is None and ok.cot.endswith(f"\n\nAnswer: {gold}")
    assert verify(row, explanation(gold), "length", min_new_words=15, max_copied=0.6).reason == "truncated"
    assert verify(row, explanation(wrong), "stop", min_new_words=15, max_copied=0.6).reason == "wrong_answer"
    assert verify(row, "I think it is this one.", "stop", min_new_words=15, max_copied=0.6).reason == "no_answer"
    echo = f"{row['question']}\n\nAnswer: {gold}"
    assert verify(row, echo, "stop", min_new_words=15, max_copied=0.6).reason == "echo"
    # trailing chatter after the answer line is dropped; the CoT ends with the canonical answer line
    tidy = verify(row, explanation(f"**{gold}**") + "\nHope this helps!", "stop", min_new_words=15, max_copied=0.6)
    assert tidy.cot.endswith(f"Answer: {gold}") and "Hope" not in tidy.cot


def test_prompts_are_gold_conditioned_with_few_shots(medqa_rows, pubmedqa_rows):
    row = medqa_rows.row(3, named=True)
    msgs = COT_TEMPLATES["mcq"].render(fields(row))
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert f"Correct option: {row['answer']}" in msgs[-1]["content"] and row["question"] in msgs[-1]["content"]
    assert all(m["content"].rstrip().endswith(("Answer: B", "Answer: C")) for m in msgs if m["role"] == "assistant")
    p = pubmedqa_rows.row(0, named=True)
    m2 = COT_TEMPLATES["yes_no_maybe"].render(fields(p))
    assert p["context"][:50] in m2[-1]["content"] and f"Correct conclusion: {p['answer']}" in m2[-1]["content"]
    versions = {t.version for t in COT_TEMPLATES.values()}
    assert len(versions) == 3


# -- the cot step ---------------------------------------------------------------------------------------------

def test_cot_keeps_verified_rows(tmp_path, scripted_server, medqa_rows):
    frame = medqa_rows.head(20)
    res = run("cot", frame, make_ctx(tmp_path, scripted_server.url))
    assert res.kept.height == 20 and res.rejected.height == 0
    for cot, gold in zip(res.kept["cot"], res.kept["answer"], strict=True):
        assert cot.endswith(f"\n\nAnswer: {gold}")
    assert res.kept["cot_attempts"].to_list() == [1] * 20
    assert res.scores.columns[:3] == ["id", "cot_attempts", "cot_status"] and res.scores.height == 20
    t = res.stats["teacher"]
    assert t["model"] == "scripted" and t["params"]["temperature"] == 0.7 and t["params"]["max_attempts"] == 3
    sent = scripted_server.log[0]["body"]
    assert sent["temperature"] == 0.7 and sent["top_p"] == 0.95 and sent["max_tokens"] == 1024
    assert isinstance(sent["seed"], int)


def test_cot_regenerates_with_new_seeds_then_rejects_with_reason(tmp_path, scripted_server, medqa_rows):
    frame = medqa_rows.head(6)
    ids = frame["id"].to_list()
    wrong = {r["id"]: next(o["label"] for o in r["options"] if o["label"] != r["answer"]) for r in frame.to_dicts()}
    qs = {r["question"]: r["id"] for r in frame.to_dicts()}
    calls: dict[str, int] = {}

    def script(req):
        user = last_user(req)
        rid = next(i for q, i in qs.items() if q in user)
        calls[rid] = calls.get(rid, 0) + 1
        k, gold = calls[rid], gold_of(req)
        plan = {
            ids[0]: [explanation(gold)],                                      # right at once
            ids[1]: [explanation(wrong[rid]), explanation(gold)],             # wrong, then right
            ids[2]: [Reply(explanation(gold), finish_reason="length")] * 2 + [explanation(gold)],  # cut twice
            ids[3]: [explanation(wrong[rid])] * 3,                            # always wrong
            ids[4]: ["Hmm, hard to say."] * 3,                                # never answers
            ids[5]: [Reply(explanation(gold), finish_reason="length")] * 3,   # always truncated
        }[rid]
        return plan[k - 1]

    scripted_server.responder = script
    res = run("cot", frame, make_ctx(tmp_path, scripted_server.url), max_attempts=3)
    kept = dict(zip(res.kept["id"], res.kept["cot_attempts"], strict=True))
    assert kept == {ids[0]: 1, ids[1]: 2, ids[2]: 3}
    rej = {r["id"]: (r["reason"], r["detail"]) for r in res.rejected.to_dicts()}
    assert rej[ids[3]][0] == "wrong_answer" and rej[ids[3]][1].startswith("3 attempt(s)")
    assert rej[ids[4]][0] == "no_answer" and rej[ids[5]][0] == "truncated"
    assert "cot" not in res.rejected.columns and {"reason", "detail"} <= set(res.rejected.columns)
    seeds = [e["body"]["seed"] for e in scripted_server.log if ids[3] in qs.values()
             and frame.filter(pl.col("id") == ids[3])["question"][0] in last_user(e["body"])]
    assert len(seeds) == 3 and len(set(seeds)) == 3, "each attempt must use a new seed"
    status = dict(zip(res.scores["id"], res.scores["cot_status"], strict=True))
    assert status[ids[0]] == "kept" and status[ids[5]] == "truncated"


def test_teacher_errors_reject_rows_but_never_crash(tmp_path, scripted_server, medqa_rows):
    frame = medqa_rows.head(5)
    target = frame["question"][2]
    scripted_server.responder = lambda req: Reply(fault="503") if target in last_user(req) else oracle(req)
    ctx = make_ctx(tmp_path, scripted_server.url)
    res = run("cot", frame, ctx, teacher={"profile": "vllm-local", "max_retries": 2, "backoff_base_s": 0.01})
    assert res.kept.height == 4
    (bad,) = res.rejected.to_dicts()
    assert bad["reason"] == "teacher_error" and "HTTP 503" in bad["detail"] and "3 attempts" in bad["detail"]
    assert res.stats["client"]["failures"] == 1


def test_unreachable_teacher_fails_the_build_instead_of_rejecting_every_row(tmp_path, scripted_server, medqa_rows):
    from curate.errors import MedcurateError

    url = scripted_server.url
    scripted_server.stop()
    with pytest.raises(MedcurateError, match="teacher not reachable"):
        get_step("cot")({}).apply(medqa_rows.head(3), make_ctx(tmp_path, url))


def test_yes_no_maybe_and_unsupported_tasks(tmp_path, scripted_server, pubmedqa_rows):
    frame = pl.concat([pubmedqa_rows.head(8), pubmedqa_rows.slice(8, 2).with_columns(task=pl.lit("dialogue"))])
    res = run("cot", frame, make_ctx(tmp_path, scripted_server.url))
    assert res.kept.height == 8
    assert all(c.endswith(f"Answer: {a}") for c, a in zip(res.kept["cot"], res.kept["answer"], strict=True))
    assert res.rejected["reason"].to_list() == ["unsupported_task"] * 2


def test_open_qa(tmp_path, scripted_server, medqa_rows):
    frame = medqa_rows.head(3).with_columns(
        task=pl.lit("open_qa"), options=pl.lit([], dtype=medqa_rows.schema["options"]),
        answer=pl.Series(["Intramuscular adrenaline", "Metformin", "Graves disease"]),
    )
    replies = {"Intramuscular adrenaline": "Intramuscular adrenaline (epinephrine)", "Metformin": "Insulin",
               "Graves disease": "Graves disease"}

    def script(req):
        gold = re.search(r"^Reference answer: (.+)$", last_user(req), re.M).group(1)
        return explanation(replies[gold])

    scripted_server.responder = script
    res = run("cot", frame, make_ctx(tmp_path, scripted_server.url), max_attempts=1)
    assert sorted(res.kept["answer"]) == ["Graves disease", "Intramuscular adrenaline"]
    assert res.rejected["reason"].to_list() == ["wrong_answer"]


def test_n_samples_first_acceptable_wins(tmp_path, scripted_server, medqa_rows):
    frame = medqa_rows.head(2)

    def script(req):
        gold = gold_of(req)
        other = "A" if gold != "A" else "B"
        return Reply([explanation(other), explanation(gold)])

    scripted_server.responder = script
    res = run("cot", frame, make_ctx(tmp_path, scripted_server.url), extra_body={"n": 2})
    assert res.kept.height == 2 and res.kept["cot_attempts"].to_list() == [1, 1]
    assert scripted_server.log[0]["body"]["n"] == 2 and len(scripted_server.log) == 2


def test_cache_makes_reruns_free_and_identical(tmp_path, scripted_server, medqa_rows, pubmedqa_rows):
    frame = pl.concat([medqa_rows.head(10), pubmedqa_rows.head(5)])
    ctx = make_ctx(tmp_path, scripted_server.url)
    first = run("cot", frame, ctx)
    n = len(scripted_server.log)
    assert n == 15
    second = run("cot", frame, ctx)
    assert len(scripted_server.log) == n and second.stats["client"]["cache_hits"] == 15
    assert first.kept.equals(second.kept) and first.rejected.equals(second.rejected)
    # editing the MCQ template invalidates only MCQ calls
    orig = prompts.COT_TEMPLATES["mcq"]
    from dataclasses import replace

    import synth.steps.cot as cot_mod

    edited = replace(orig, system=orig.system + " Be concise.")
    try:
        cot_mod.COT_TEMPLATES["mcq"] = edited
        third = run("cot", frame, ctx)
    finally:
        cot_mod.COT_TEMPLATES["mcq"] = orig
    assert len(scripted_server.log) == n + 10
    assert third.stats["client"]["cache_hits"] == 5
    assert third.stats["templates"]["mcq"] != first.stats["templates"]["mcq"]


def test_cache_path_override_is_shared_across_builds(tmp_path, scripted_server, medqa_rows):
    shared = tmp_path / "shared-calls.sqlite"
    frame = medqa_rows.head(4)
    run("cot", frame, make_ctx(tmp_path / "build-a", scripted_server.url), cache=str(shared))
    res = run("cot", frame, make_ctx(tmp_path / "build-b", scripted_server.url), cache=str(shared))
    assert len(scripted_server.log) == 4 and res.stats["client"]["requests"] == 0
    assert shared.is_file() and not (tmp_path / "build-b" / "teacher-calls.sqlite").exists()


def test_estimate_counts_calls_tokens_and_cache_hits(tmp_path, scripted_server, medqa_rows):
    frame = medqa_rows.head(12)
    ctx = make_ctx(tmp_path, scripted_server.url)
    step = get_step("cot")({"max_attempts": 2})
    before = step.estimate(frame, ctx)
    assert before["rows"] == 12 and before["calls_min"] == 12 and before["calls_max"] == 24
    assert before["cache_hits"] == 0 and before["calls_to_pay_min"] == 12
    chars = sum(sum(len(m["content"]) for m in COT_TEMPLATES["mcq"].render(fields(r))) for r in frame.to_dicts())
    assert before["tokens_in_est"] == pytest.approx(chars / 4, rel=0.01)
    assert len(scripted_server.log) == 0, "an estimate sends nothing"
    step.apply(frame.head(5), ctx)
    after = step.estimate(frame, ctx)
    assert after["cache_hits"] == 5 and after["calls_to_pay_min"] == 7
    assert "secret" not in json.dumps(after)


# -- judge -------------------------------------------------------------------------------------------------------

def test_judge_scores_rows_and_retries_unparsable(tmp_path, scripted_server, medqa_rows):
    ctx = make_ctx(tmp_path, scripted_server.url)
    cot = run("cot", medqa_rows.head(8), ctx)
    target = cot.kept["question"][0]
    never = cot.kept["question"][1]
    seen: dict[str, int] = {}

    def script(req):
        user = last_user(req)
        assert "RESPONSE:" in user and "Answer:" in user and "REFERENCE ANSWER:" in user
        if never in user:
            return "It is fine I guess."
        if target in user:
            seen[target] = seen.get(target, 0) + 1
            return "hmm" if seen[target] == 1 else "Solid reasoning.\nScore: 9"
        return f"Reasonable.\nScore: {3 + req['seed'] % 7}"

    scripted_server.reset()
    scripted_server.responder = script
    res = run("judge", cot.kept, ctx)
    assert res.kept.height == 7 and res.rejected["reason"].to_list() == ["no_score"]
    scores = dict(zip(res.kept["question"], res.kept["judge_score"], strict=True))
    assert scores[target] == 9.0 and all(1 <= s <= 10 for s in scores.values())
    assert res.scores.columns == ["id", "judge_score", "judge_attempts"] and res.scores.height == 8
    assert res.kept.columns[-1] == "judge_score" and res.kept["cot"].null_count() == 0
    body = scripted_server.log[0]["body"]
    assert body["temperature"] == 0.0 and body["messages"][0]["content"].startswith("You grade answers")
    assert res.stats["judge"]["model"] == "scripted"


def test_progress_reports_rows_and_rates(tmp_path, scripted_server, medqa_rows):
    calls: list[tuple[str, int]] = []
    advanced: list[int] = []
    infos: list[str] = []

    def start(description: str, total: int):
        calls.append((description, total))

        def advance(n: int = 1, **fields):
            advanced.append(n)
            if "info" in fields:
                infos.append(fields["info"])

        return advance

    ctx = make_ctx(tmp_path, scripted_server.url)
    ctx.start_progress = start
    run("cot", medqa_rows.head(10), ctx)
    assert calls == [("cot", 10)] and sum(advanced) == 10
    assert infos and re.fullmatch(r"[\d,]+ req/s · [\d,]+ tok/s · 0 cached · 0 retries", infos[-1])
    ctx.start_progress = lambda d, t: (lambda n: advanced.append(n))  # a plain callback still works
    run("cot", medqa_rows.head(10), ctx)
    assert sum(advanced) == 20


def test_judge_estimate(tmp_path, scripted_server, medqa_rows):
    ctx = make_ctx(tmp_path, scripted_server.url)
    judge = get_step("judge")({})
    before_cot = judge.estimate(medqa_rows.head(6), ctx)
    assert before_cot["calls_min"] == 6 and before_cot["cache_hits"] is None and "note" in before_cot
    cot = run("cot", medqa_rows.head(6), ctx)
    assert judge.estimate(cot.kept, ctx)["cache_hits"] == 0
    judge.apply(cot.kept, ctx)
    after = judge.estimate(cot.kept, ctx)
    assert after["cache_hits"] == 6 and after["calls_to_pay_min"] == 0 and after["tokens_in_est"] == 0


def test_inline_teacher_typos_fail_at_validation():
    with pytest.raises(ValueError, match="max_concurency"):
        get_step("cot")({"teacher": {"profile": "vllm-local", "max_concurency": 4}})


@pytest.mark.parametrize("name", ["medqa-cot", "medmcqa-cot", "pubmedqa-cot", "headqa-cot"])
def test_cot_recipes_validate(name):
    from curate.recipe import load_recipe
    from synth.config import resolve_teacher

    recipe, _, _ = load_recipe(name)
    steps = [s.name for s in recipe.steps]
    assert steps == ["normalize", "validate", "langid", "dedup", "decontaminate", "decontaminate_rephrase", "cot", "judge",
                     "filter", "template"]
    assert resolve_teacher(recipe.teacher).urls == ["http://127.0.0.1:8000/v1"]
    assert recipe.sources[0].hub and recipe.sources[0].format == name.removesuffix("-cot")
