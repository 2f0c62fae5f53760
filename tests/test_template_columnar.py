"""The columnar `template` step (issue 12) against the row renderer it replaced, kept here as the reference.

The reference is the issue-11 renderer verbatim (iter_rows + str.format + a messages list per row). The
step must give the same `messages` (byte for byte) and the same template choices on every real file the
templates cover and on generated rows.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.recipe import SourceSpec
from curate.record import DEFAULT_SUBTASK, MESSAGE, OPTION, SUBTASKS, TASKS
from curate.sources import read_source
from curate.steps import BuildContext, get_step
from curate.steps.template import AT_LEAST_N_WORDS, TemplateParams
from curate.steps.template_render import PY_WHITESPACE, compile_template
from curate.templates import TABLE, Instruction

# --- the reference: the row renderer of issue 11 ------------------------------------------------------

DEFAULT_SUBJECT = {"note_generation": "clinical note"}
_BLANKS = re.compile(r"\n{3,}")


def reasoned_expr(has_cot: bool, include_explanation: bool) -> pl.Expr:
    filled = lambda c: pl.col(c).fill_null("").str.strip_chars().str.len_chars() > 0  # noqa: E731
    closed = pl.col("task").is_in(["mcq", "yes_no_maybe"])
    answer = pl.col("answer").fill_null("")
    long_open = (~closed & (answer.str.count_matches(r"[.!?](\s|$)") >= 2)
                 & (answer.str.count_matches(r"\S+") >= 40))
    out = long_open | (pl.lit(include_explanation) & closed & filled("explanation"))
    return (out | filled("cot")) if has_cot else out


def choose(row_id: str, seed: int, n: int) -> int:
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def render_options(options: list[dict[str, Any]] | None) -> str:
    return "\n".join(f"{o['label']}. {o['text']}" for o in options or [])


def gold_text(row: dict[str, Any]) -> str:
    if row["task"] == "mcq":
        text = next((o["text"] for o in row["options"] or [] if o["label"] == row["answer"]), "")
        return f"Answer: {row['answer']}. {text}".rstrip()
    if row["task"] == "yes_no_maybe":
        return f"Answer: {row['answer'].lower()}"
    return row["answer"] or ""


def template_key(task: str, subtask: str | None, context: str | None, table: dict) -> str:
    key = subtask if subtask in table else DEFAULT_SUBTASK.get(task, "open_qa")
    return "qa_with_context" if key == "open_qa" and context and "qa_with_context" in table else key


def pick(table: dict, key: str, task: str, reasoned: bool, row_id: str, seed: int) -> tuple[str, int]:
    items = table.get(key) or ()
    ok = [i for i, t in enumerate(items) if reasoned or not t.explains]
    if not ok:
        key = DEFAULT_SUBTASK.get(task, "open_qa")
        ok = [i for i, t in enumerate(table[key]) if not t.explains]
    return key, ok[choose(row_id, seed, len(ok))]


def fill(text: str, row: dict[str, Any], key: str, question: str, with_fields: bool) -> str:
    out = text.format(
        question=question,
        options=render_options(row["options"]) if with_fields else "",
        context=(row["context"] or "") if with_fields else "",
        subject=row.get("subject") or DEFAULT_SUBJECT.get(key, "answer"),
    )
    return _BLANKS.sub("\n\n", out).strip()


def reference(frame: pl.DataFrame, p: TemplateParams, seed: int, base: dict = TABLE) -> tuple[pl.Series, list[str]]:
    """(messages, chosen "key:index" per row), exactly as the issue-11 step rendered them."""
    table = {**base, **{k: tuple(Instruction(t) for t in v) for k, v in p.templates.items()}}
    has_cot = "cot" in frame.columns
    work = frame.with_columns(reasoned_expr(has_cot, p.include_explanation).alias("_reasoned"))
    cols = ["id", "task", "question", "context", "options", "answer", "explanation", "_reasoned"]
    cols += [c for c in ("subtask", "subject", "turns", "cot") if c in frame.columns]
    messages, chosen = [], []
    system = [{"role": "system", "content": p.system_prompt}] if p.system_prompt else []
    for row in work.select(cols).iter_rows(named=True):
        task, turns = row["task"], row.get("turns") or []
        key = template_key(task, row.get("subtask"), row["context"], table)
        key, idx = pick(table, key, task, row["_reasoned"], row["id"], seed)
        text = table[key][idx].text
        chosen.append(f"{key}:{idx}")
        if turns:
            first = next(i for i, t in enumerate(turns) if t["role"] == "user")
            msgs = [dict(t) for t in turns]
            msgs[first]["content"] = fill(text, row, key, turns[first]["content"], with_fields=False)
            messages.append(([] if msgs[0]["role"] == "system" else system) + msgs)
            continue
        user = fill(text, row, key, row["question"] or "", with_fields=True)
        if has_cot and row["cot"]:
            assistant = row["cot"]
        else:
            assistant = gold_text(row)
            if p.include_explanation and row["explanation"] and task != "open_qa":
                assistant = f"{assistant}\n\n{row['explanation']}"
        messages.append(system + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}])
    return pl.Series("messages", messages, dtype=pl.List(MESSAGE)), chosen


# --- comparison --------------------------------------------------------------------------------------


def assert_same(frame: pl.DataFrame, seed: int = 0, **params: Any) -> dict:
    """Runs the step and the reference on `frame`; returns the step's stats."""
    step = get_step("template")(params)
    result = step.apply(frame, BuildContext(recipe_name="t", work_dir=Path("/tmp"), seed=seed))
    want, chosen = reference(frame, step.params, seed)
    got = result.kept["messages"]
    assert result.kept.height == frame.height and result.rejected.height == 0
    bad = [i for i, (a, b) in enumerate(zip(got.to_list(), want.to_list(), strict=True)) if a != b]
    assert not bad, f"{len(bad)} rows differ, first {bad[0]}:\n{got[bad[0]]}\n!=\n{want[bad[0]]}"
    assert got.equals(want)  # dtype too
    counts = pl.Series(chosen, dtype=pl.Utf8).value_counts(sort=True)
    assert list(result.stats["templates_used"].items()) == [tuple(r) for r in counts.iter_rows()]
    return result.stats


def read(fmt: str, path: Path, **kw: Any) -> pl.DataFrame:
    return read_source(SourceSpec(name="s", format=fmt, path=str(path), **kw), base_dir=path.parent).frame


REAL = [  # (format, path under shared/data): every shape the templates cover
    ("medmcqa", "medmcqa/dev_first3683.json"),  # MCQ with explanations
    ("medqa", "medqa/test.jsonl"),  # MCQ without
    ("headqa", "headqa/train.json"),  # 5 options
    ("pubmedqa", "pubmedqa/train.json"),  # yes/no/maybe with context and long answers
    ("medquad", "instruct/medquad"),  # open QA: open_qa / treatment / diagnosis sub-tasks
    ("medinstruct", "instruct/medinstruct/MedInstruct-test.jsonl"),  # open instructions (GPT-4 answers)
    ("ultramedical", "instruct/ultramedical/examples.json"),  # mcq / open_qa / qa_with_context, turns
    ("chatdoctor", "dialogue/chatdoctor/genmedgpt5k_first4000.json"),  # dialogue with its own system turn
    ("sharegpt", "chat-formats/fastchat/dummy_conversation.json"),  # 2-6 turns
    ("messages", "chat-formats/llama-factory/kto_en_demo.json"),  # multi-turn
    ("counsel-chat", "dialogue/counsel-chat/20200325_counsel_chat_train.csv"),  # mental_health
    ("mts-dialog", "dialogue/mts-dialog/MTS-Dialog-TrainingSet.csv"),  # summarization, note_generation + subject
    ("aci-bench", "dialogue/aci-bench/train.csv"),  # summarization, whole notes
    ("alpaca", "chat-formats/llms-from-scratch/instruction-data.json"),  # open_qa with context (input)
]


@pytest.mark.parametrize(("fmt", "rel"), REAL, ids=[r[0] for r in REAL])
def test_same_messages_as_the_row_renderer_on_real_files(data_dir: Path, fmt: str, rel: str) -> None:
    frame = read(fmt, data_dir / rel)
    assert frame.height > 0
    stats = assert_same(frame, seed=0)
    assert sum(stats["templates_used"].values()) == frame.height
    assert_same(frame, seed=7, system_prompt="You are a careful medical assistant.", include_explanation=False)


def test_same_messages_without_subtasks_and_with_a_chain_of_thought(data_dir: Path) -> None:
    notes = read("aci-bench", data_dir / "dialogue/aci-bench/train.csv")
    used = assert_same(notes.with_columns(pl.lit(None, dtype=pl.Utf8).alias("subtask")))["templates_used"]
    assert {k.split(":")[0] for k in used} == {"summarization"}  # the task's own templates
    mcq = read("medmcqa", data_dir / "medmcqa/dev_first3683.json").head(600)
    cot = pl.when(pl.int_range(pl.len()) % 3 == 0).then(pl.lit("Reasoning first.\nAnswer: B"))
    cot = cot.when(pl.int_range(pl.len()) % 3 == 1).then(pl.lit(""))
    stats = assert_same(mcq.with_columns(cot.otherwise(None).alias("cot")), seed=3)
    assert stats["explaining_templates_used"] > 0
    quad = read("medquad", data_dir / "instruct/medquad").drop("subtask", "subject", "turns")
    assert_same(quad)  # columns a step may not have


def test_custom_recipe_templates(data_dir: Path) -> None:
    templates = {"mcq": ["Q {{literal}} about {subject}:\n\n\n\n{question}\n{options}\n{context}"],
                 "open_qa": ["{question}", "Say it in JSON {{\"a\": 1}}.\n\n{question}\n\n{context}"],
                 "dialogue": ["Doctor mode ({subject}).\n\n{question}"]}
    mcq = read("medmcqa", data_dir / "medmcqa/dev_first3683.json").head(500)
    out = get_step("template")({"templates": templates}).apply(mcq, BuildContext(recipe_name="t", work_dir=Path("/tmp")))
    first = out.kept["messages"].list.get(0).struct.field("content")
    assert first.str.starts_with("Q {literal} about ").all()
    assert_same(mcq, templates=templates)
    assert_same(read("alpaca", data_dir / "chat-formats/llms-from-scratch/instruction-data.json"), templates=templates)
    assert_same(read("chatdoctor", data_dir / "dialogue/chatdoctor/genmedgpt5k_first4000.json").head(300),
                templates=templates, system_prompt="S")


def test_a_shipped_template_with_python_format_syntax_falls_back_to_str_format(
        data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = ("Q: {question!r}\n{options:>30}\n{subject!s:.3}", "Plain: {question}\n\n{options}")
    assert compile_template(odd[0]) is None and compile_template(odd[1]) is not None
    table = {**TABLE, "mcq": tuple(Instruction(t) for t in odd)}
    monkeypatch.setattr("curate.steps.template.TABLE", table)
    mcq = read("medqa", data_dir / "medqa/test.jsonl").head(300)
    step = get_step("template")({})
    got = step.apply(mcq, BuildContext(recipe_name="t", work_dir=Path("/tmp"))).kept["messages"]
    want, chosen = reference(mcq, step.params, 0, base=table)
    assert got.equals(want) and {"mcq:0", "mcq:1"} == set(chosen)


def test_a_conversation_without_a_user_turn_is_a_clear_error() -> None:
    frame = rows_frame([{**BLANK, "task": "dialogue", "turns": [{"role": "assistant", "content": "Hi"}]}])
    with pytest.raises(ValueError, match="no user turn.*validate"):
        get_step("template")({}).apply(frame, BuildContext(recipe_name="t", work_dir=Path("/tmp")))


def test_python_whitespace_set() -> None:
    assert set(PY_WHITESPACE) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


# --- generated rows -----------------------------------------------------------------------------------

FRAME_SCHEMA = {"id": pl.Utf8, "task": pl.Utf8, "question": pl.Utf8, "context": pl.Utf8, "options": pl.List(OPTION),
                "answer": pl.Utf8, "explanation": pl.Utf8, "subject": pl.Utf8, "turns": pl.List(MESSAGE),
                "subtask": pl.Utf8}
BLANK = dict.fromkeys(FRAME_SCHEMA) | {"id": "x", "task": "open_qa"}


def rows_frame(rows: list[dict], cot: list[str | None] | None = None) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=FRAME_SCHEMA)
    return frame if cot is None else frame.with_columns(pl.Series("cot", cot, dtype=pl.Utf8))


ALPHABET = st.characters(codec="utf-8", exclude_categories=["Cs"])  # any character polars can hold
piece = st.one_of(st.text(ALPHABET, max_size=30),
                  st.sampled_from(["{}", "{question}", "{{", "}", "\n\n\n\n", " \x1c\x1f\u3000", "İΣ", "\x85",
                                   "Answer: B", "yes", "MAYBE", "A"]))
text = st.one_of(st.lists(piece, max_size=6).map("".join),
                 st.tuples(piece, st.integers(200, 3000)).map(lambda t: t[0] * t[1]))  # very long text
maybe_text = st.one_of(st.none(), st.just(""), text)
option = st.fixed_dictionaries({"label": st.one_of(st.none(), st.sampled_from("ABCDE"), text),
                                "text": maybe_text})
turn = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": maybe_text})
conversation = st.lists(turn, max_size=5).map(lambda ts: [*ts, {"role": "user", "content": "hi"}]
                                             if all(t["role"] != "user" for t in ts) else ts)


SPACES = st.text(st.sampled_from(PY_WHITESPACE), min_size=1, max_size=3)
WORD = st.text(ALPHABET.filter(lambda c: not c.isspace()), min_size=1, max_size=4)


@st.composite
def words(draw: st.DrawFn) -> str:
    n = draw(st.one_of(st.integers(38, 41), st.integers(0, 90)))
    parts = [draw(WORD) + draw(SPACES) for _ in range(n)]
    return draw(st.sampled_from(["", " ", "\n\t"])) + "".join(parts) + draw(st.sampled_from(["", "x", "."]))


@st.composite
def row(draw: st.DrawFn) -> dict:
    task = draw(st.sampled_from([*TASKS, None, "other"]))
    answer = draw(text if task == "yes_no_maybe" else st.one_of(maybe_text, st.sampled_from("ABCDE"), words()))
    return {"id": draw(st.one_of(st.none(), text)), "task": task, "question": draw(maybe_text),
            "context": draw(maybe_text), "options": draw(st.one_of(st.none(), st.lists(option, max_size=5))),
            "answer": answer, "explanation": draw(maybe_text), "subject": draw(maybe_text),
            "turns": draw(st.one_of(st.none(), st.just([]), conversation)),
            "subtask": draw(st.one_of(st.none(), st.sampled_from([*SUBTASKS, "nope"])))}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows=st.lists(row(), min_size=1, max_size=12), cot=st.booleans(), seed=st.integers(0, 2**31),
       system=st.one_of(st.none(), st.just(""), text), include=st.booleans(), data=st.data())
def test_same_messages_on_generated_rows(rows: list[dict], cot: bool, seed: int, system: str | None,
                                         include: bool, data: st.DataObject) -> None:
    cots = data.draw(st.lists(maybe_text, min_size=len(rows), max_size=len(rows))) if cot else None
    assert_same(rows_frame(rows, cots), seed=seed, system_prompt=system, include_explanation=include)


def test_an_empty_frame_renders_nothing(data_dir: Path) -> None:
    empty = read("medqa", data_dir / "medqa/test.jsonl").head(0)
    stats = assert_same(empty, system_prompt="S")
    assert stats["templates_used"] == {}


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.one_of(st.none(), text, words()), min_size=1, max_size=20))
def test_the_word_threshold_regex_agrees_with_counting_words(texts: list[str | None]) -> None:
    answers = pl.Series(texts, dtype=pl.Utf8).fill_null("")
    assert answers.str.contains(AT_LEAST_N_WORDS).equals(answers.str.count_matches(r"\S+") >= 40)
