"""The `cot` step's decisions on real MedQA and MedMCQA rows with scripted wrong, echoed, truncated,
unanswered, failing and multi-choice replies equal a plain reference loop (seeds, prompts, verdicts, attempt
counts, details, requests sent): the guard for any restructuring of how the step sends and verifies calls
(issue 17c tried verifying whole waves at once; see the `verify` docstring for why it stayed per reply)."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest

from curate.recipe import SourceSpec
from curate.sources import read_source
from curate.steps import get_step
from synth.prompts import COT_TEMPLATES, fields
from synth.runner import derive_seed
from synth.steps.cot import verify
from synth.testing import Reply, ScriptedServer, last_user
from tests.fixtures_teacher import make_ctx

KINDS = ("good", "wrong", "echo", "truncated", "no_answer", "error", "two_choices", "good")


def _rows(data_dir, medqa_rows) -> pl.DataFrame:
    spec = SourceSpec(name="medmcqa", format="medmcqa", path=str(data_dir / "medmcqa" / "dev_first3683.json"))
    mmcqa = read_source(spec, base_dir=data_dir, limit=60).frame
    return pl.concat([medqa_rows.head(60), mmcqa.select(medqa_rows.columns)], how="vertical_relaxed")


def _explain(label: str) -> str:
    return ("Restating the vignette, the decisive clue is the combination of timing, examination and laboratory "
            "results; each alternative leaves at least one of those unexplained, while one mechanism accounts "
            f"for all of them together.\n\nAnswer: {label}")


def responder(rows_by_question: dict[str, dict]):
    """A reply chosen by the request seed (so attempts of a row differ) and built from the row."""

    def reply(req: dict) -> Reply:
        user = last_user(req)
        row = next(r for q, r in rows_by_question.items() if q in user)
        gold = row["answer"]
        wrong = next(o["label"] for o in row["options"] if o["label"] != gold)
        kind = KINDS[int(hashlib.sha256(str(req["seed"]).encode()).hexdigest(), 16) % len(KINDS)]
        return {
            "good": Reply(_explain(gold)),
            "wrong": Reply(_explain(wrong)),
            "echo": Reply(f"{row['question']}\n\nAnswer: {gold}"),
            "truncated": Reply(_explain(gold), finish_reason="length"),
            "no_answer": Reply("It is hard to decide between these."),
            "error": Reply(status=400, error_body='{"error": {"message": "bad request"}}'),
            "two_choices": Reply([_explain(wrong), _explain(gold)]),
        }[kind]

    return reply


def reference(row: dict, reply_for, step) -> tuple[str | None, int, str | None, str | None]:
    """The step's rule written out plainly: call, verify each choice (first acceptable wins), ask again."""
    template = COT_TEMPLATES[row["task"]]
    messages = template.render(fields(row))
    reason = detail = None
    for attempt in range(1, step.params.max_attempts + 1):
        params = step.gen_params(derive_seed(7, row["id"], attempt))
        rep = reply_for({"messages": messages, **params})
        if rep.status != 200:
            return None, attempt, "teacher_error", None
        texts = rep.content if isinstance(rep.content, list) else [rep.content]
        for text in texts:
            v = verify(row, text, rep.finish_reason, min_new_words=15, max_copied=0.6)
            if v.cot is not None:
                return v.cot, attempt, None, None
        reason, detail = v.reason, f"{attempt} attempt(s); last: {v.detail}"
    return None, step.params.max_attempts, reason, detail


def test_cot_decisions_equal_a_reference_loop(tmp_path, data_dir, medqa_rows):
    frame = _rows(data_dir, medqa_rows)
    rows = frame.to_dicts()
    reply_for = responder({r["question"]: r for r in rows})
    with ScriptedServer(reply_for) as srv:
        step = get_step("cot")({"log_every_s": 60, "seed": 7, "max_attempts": 3})
        res = step.apply(frame, make_ctx(tmp_path, srv.url))
        sent = len(srv.log)
    out = pl.concat([res.kept.select("id", "cot", "cot_attempts").with_columns(reason=pl.lit(None, pl.Utf8),
                                                                              detail=pl.lit(None, pl.Utf8)),
                     res.rejected.select("id", pl.lit(None, pl.Utf8).alias("cot"),
                                         res.scores.join(res.rejected.select("id"), on="id")["cot_attempts"],
                                         "reason", "detail")])
    got = {r["id"]: r for r in out.to_dicts()}
    expected = {r["id"]: reference(r, reply_for, step) for r in rows}
    reasons = set()
    for rid, (cot, attempts, reason, detail) in expected.items():
        g = got[rid]
        assert (g["cot"], g["cot_attempts"], g["reason"]) == (cot, attempts, reason), rid
        if reason != "teacher_error":
            assert g["detail"] == detail, rid
        reasons.add(reason)
    assert {None, "teacher_error", "wrong_answer", "echo", "truncated", "no_answer"} <= reasons  # every path ran
    assert sent == sum(a for _, a, _, _ in expected.values())  # only rejected rows were asked again


@pytest.mark.parametrize("max_attempts", [1, 2])
def test_cot_stops_at_max_attempts(tmp_path, medqa_rows, max_attempts):
    frame = medqa_rows.head(8)
    with ScriptedServer(lambda req: Reply("It is hard to decide between these.")) as srv:
        res = get_step("cot")({"log_every_s": 60, "max_attempts": max_attempts}).apply(frame, make_ctx(tmp_path, srv.url))
        assert len(srv.log) == 8 * max_attempts
    assert res.kept.height == 0 and set(res.rejected["reason"]) == {"no_answer"}
    assert res.scores["cot_attempts"].to_list() == [max_attempts] * 8
