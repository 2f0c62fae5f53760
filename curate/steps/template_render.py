"""Columnar rendering for the `template` step (issue 12): polars expressions, no Python per row.

Rules (the row renderer of issue 11, kept as the reference in tests/test_template_columnar.py; the output
is byte-identical on every real file the templates cover and on generated rows):

- key: the row's `subtask` if it has templates, else its task's (`DEFAULT_SUBTASK`, `open_qa` for an
  unknown task); `open_qa` with a non-empty `context` becomes `qa_with_context`.
- choice: `explains` templates only for reasoned rows; a key with none left falls back to its task's
  non-explaining templates. Index = sha256("{seed}:{id}")[:8] (big-endian) mod the number allowed.
- user text: the template with {question} (a conversation: its first user turn), {options} (`A. text`
  per line), {context}, {subject} (`DEFAULT_SUBJECT` per key, else "answer"); a conversation gets no
  options or context. Then 3+ newlines become 2 and the ends are stripped of Python's whitespace.
- assistant: a non-empty `cot`, else `Answer: C. text` (MCQ) / `Answer: yes` (yes/no/maybe) / the
  answer, plus "\\n\\n" + the explanation when asked, present and the task is not `open_qa`.
- a conversation keeps every turn; only its first user turn is replaced; the system prompt goes first
  unless the conversation starts with its own.

The one Python loop left is hashlib's sha256 over the ids (0.7 s per 1M ids on the shared 2-core
machine): polars' own hash is not stable across versions, and another hash would change which template
every existing row gets. A template is compiled into literal parts and placeholders; one that uses
Python format syntax beyond the four bare placeholders (a conversion, a format spec, an index) cannot be
compiled and its rows are formatted by `str.format` (0 of the 80 shipped templates; recipe templates
are limited to the bare placeholders at load, see `check_template`, so they always compile).

Two inputs the row renderer crashed on are handled: a conversation with no user turn is a ValueError naming
the row (run `validate` first), and a yes/no/maybe row with a null answer renders `Answer: `.
"""

from __future__ import annotations

import hashlib
import string

import polars as pl

from curate.record import DEFAULT_SUBTASK, MESSAGE
from curate.templates import Instruction

#: {subject} when a row has none, per template key.
DEFAULT_SUBJECT = {"note_generation": "clinical note"}
PLACEHOLDERS = ("question", "options", "context", "subject")
#: Exactly the characters Python's str.strip() removes (str.isspace); Rust's whitespace lacks \x1c-\x1f.
PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                 "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")

Table = dict[str, tuple[Instruction, ...]]


def compile_template(text: str) -> list[tuple[str, str | None]] | None:
    """[(literal, placeholder or None), ...], or None when the text needs `str.format` itself."""
    parts = []
    for literal, name, spec, conv in string.Formatter().parse(text):
        if name is not None and (name not in PLACEHOLDERS or spec or conv):
            return None
        parts.append((literal, name))
    return parts


def choice_hashes(ids: pl.Series, seed: int) -> pl.Series:
    """sha256("{seed}:{id}")'s first 8 bytes as UInt64, per row (the template step's seeded choice)."""
    sha, from_bytes = hashlib.sha256, int.from_bytes
    keys = (f"{seed}:" + ids.fill_null("None")).to_list()  # f"{None}" is "None"
    return pl.Series([from_bytes(sha(k.encode()).digest()[:8], "big") for k in keys], dtype=pl.UInt64)


def allowed(table: Table) -> pl.DataFrame:
    """(key, reasoned) -> indices a row may get: all for reasoned rows, the non-explaining ones else."""
    rows = [(k, r, [i for i, t in enumerate(items) if r or not t.explains])
            for k, items in table.items() for r in (True, False)]
    return pl.DataFrame(rows, schema={"_key": pl.Utf8, "_r": pl.Boolean, "_ok": pl.List(pl.UInt32)}, orient="row")


def choose_templates(work: pl.DataFrame, table: Table, seed: int) -> pl.DataFrame:
    """Adds `_key` (final key) and `_tid` ("key:index") to `work` (columns id, task, context, _reasoned)."""
    task_key = pl.col("task").replace_strict(DEFAULT_SUBTASK, default="open_qa", return_dtype=pl.Utf8)
    key = task_key
    if "subtask" in work.columns:
        key = pl.when(pl.col("subtask").is_in(list(table))).then(pl.col("subtask")).otherwise(task_key)
    if "qa_with_context" in table:
        has_context = pl.col("context").fill_null("").str.len_bytes() > 0
        key = pl.when((key == "open_qa") & has_context).then(pl.lit("qa_with_context")).otherwise(key)
    ok = allowed(table)
    work = (work.with_columns(key.alias("_key"), task_key.alias("_task_key"), pl.col("_reasoned").fill_null(False))
            .join(ok, left_on=["_key", "_reasoned"], right_on=["_key", "_r"], how="left", maintain_order="left"))
    fell = pl.col("_ok").list.len().fill_null(0) == 0  # e.g. `explanation` rows whose answer explains nothing
    work = work.with_columns(pl.when(fell).then(pl.col("_task_key")).otherwise(pl.col("_key")).alias("_key"),
                             (pl.col("_reasoned") & ~fell).alias("_r2")).drop("_ok")
    work = work.join(ok, left_on=["_key", "_r2"], right_on=["_key", "_r"], how="left", maintain_order="left")
    n = pl.col("_ok").list.len().fill_null(0)
    if (empty := work.filter(n == 0)).height:
        raise ValueError(f"template: no template for key {empty['_key'][0]!r} (row id {empty['id'][0]!r})")
    hashes = choice_hashes(work["id"], seed)
    index = pl.col("_ok").list.get((pl.lit(hashes) % n.cast(pl.UInt64)).cast(pl.Int64))
    return work.with_columns(pl.concat_str([pl.col("_key"), pl.lit(":"), index.cast(pl.Utf8)]).alias("_tid"))


def _options_text() -> pl.Expr:
    field = lambda f: pl.element().struct.field(f).fill_null("None")  # noqa: E731  f"{None}" is "None"
    return (pl.col("options").list.eval(pl.concat_str([field("label"), pl.lit(". "), field("text")]))
            .list.join("\n").fill_null(""))


def fill_templates(work: pl.DataFrame, table: Table, values: dict[str, pl.Expr]) -> pl.Expr:
    """The user text per row from its `_tid`: compiled templates as literal/placeholder slots, in one pass."""
    used = work["_tid"].unique().to_list()
    texts = {tid: table[tid.rsplit(":", 1)[0]][int(tid.rsplit(":", 1)[1])].text for tid in used}
    parts = {tid: compile_template(t) for tid, t in texts.items()}
    width = max([len(p) for p in parts.values() if p] or [0])
    pieces: list[pl.Expr] = []
    for slot in range(width):
        lit_map = {tid: p[slot][0] if slot < len(p) else "" for tid, p in parts.items() if p}
        name_map = {tid: p[slot][1] if slot < len(p) else None for tid, p in parts.items() if p}
        literal = pl.col("_tid").replace_strict(lit_map, default="", return_dtype=pl.Utf8)
        name = pl.col("_tid").replace_strict(name_map, default=None, return_dtype=pl.Utf8)
        value = pl.lit("")
        for placeholder, expr in values.items():
            value = pl.when(name == placeholder).then(expr).otherwise(value)
        pieces += [literal, value]
    out = pl.concat_str(pieces or [pl.lit("")])
    if odd := [tid for tid, p in parts.items() if p is None]:  # Python format syntax: str.format those rows
        rows = work.with_row_index("_i").filter(pl.col("_tid").is_in(odd)).select("_i", "_tid", **values)
        formatted = [texts[r.pop("_tid")].format(**{k: r[k] for k in values}) for r in rows.iter_rows(named=True)]
        by_row = pl.int_range(pl.len(), dtype=pl.UInt32).replace_strict(
            rows["_i"], pl.Series(formatted, dtype=pl.Utf8), default=None, return_dtype=pl.Utf8)
        out = pl.coalesce(by_row, out)
    return out.str.replace_all(r"\n{3,}", "\n\n").str.strip_chars(PY_WHITESPACE)


def gold_answer(work: pl.DataFrame) -> pl.Expr:
    """`Answer: C. text` (MCQ), `Answer: yes` (yes/no/maybe), else the answer text."""
    opts = (work.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"), "answer", "options")
            .filter(pl.col("options").list.len() > 0).explode("options")
            .filter(pl.col("options").struct.field("label").eq_missing(pl.col("answer")))
            .group_by("_i").agg(pl.col("options").first().struct.field("text").fill_null("None").alias("_text")))
    match = pl.int_range(pl.len(), dtype=pl.UInt32).replace_strict(opts["_i"], opts["_text"], default="",
                                                                   return_dtype=pl.Utf8)
    mcq = pl.concat_str([pl.lit("Answer: "), pl.col("answer").fill_null("None"), pl.lit(". "), match])
    yes_no = pl.concat_str([pl.lit("Answer: "), pl.col("answer").str.to_lowercase().fill_null("")])
    return (pl.when(pl.col("task") == "mcq").then(mcq.str.strip_chars_end(PY_WHITESPACE))
            .when(pl.col("task") == "yes_no_maybe").then(yes_no).otherwise(pl.col("answer").fill_null("")))


def assistant_text(work: pl.DataFrame, *, has_cot: bool, include_explanation: bool) -> pl.Expr:
    """A non-empty chain of thought, else the gold answer plus the explanation when asked (not for open_qa)."""
    explained = pl.col("explanation").fill_null("").str.len_bytes() > 0
    explain = pl.lit(include_explanation) & explained & pl.col("task").ne_missing("open_qa")
    answer = pl.concat_str([gold_answer(work),
                            pl.when(explain).then(pl.lit("\n\n") + pl.col("explanation")).otherwise(pl.lit(""))])
    if has_cot:
        answer = pl.when(pl.col("cot").fill_null("").str.len_bytes() > 0).then(pl.col("cot")).otherwise(answer)
    return answer


def render_messages(work: pl.DataFrame, table: Table, *, has_cot: bool, include_explanation: bool,
                    system_prompt: str | None) -> pl.Series:
    """`messages` per row of `work` (after `choose_templates`)."""
    if "turns" not in work.columns:
        work = work.with_columns(pl.lit(None, dtype=pl.List(MESSAGE)).alias("turns"))
    if "subject" not in work.columns:
        work = work.with_columns(pl.lit(None, dtype=pl.Utf8).alias("subject"))
    turns, has_turns = pl.col("turns"), pl.col("_has_turns")
    work = work.with_columns(
        (turns.list.len().fill_null(0) > 0).alias("_has_turns"),
        turns.list.eval(pl.element().struct.field("role") == "user").list.arg_max().alias("_first"))
    work = work.with_columns(**_placeholder_values())
    user = fill_templates(work, table, {k: pl.col(f"_{k}") for k in PLACEHOLDERS})
    answer = assistant_text(work, has_cot=has_cot, include_explanation=include_explanation)
    work = work.with_row_index("_i").select("_i", "_has_turns", "_first", "turns", user.alias("_user"),
                                            answer.alias("_assistant"))  # only what the messages need
    message = lambda role, content: pl.struct(role=pl.lit(role), content=content).alias("m")  # noqa: E731
    chats = work.filter(has_turns)
    singles = (work.filter(~has_turns) if chats.height else work).with_columns(
        pl.lit(system_prompt, dtype=pl.Utf8).alias("_system"))
    roles = (["system"] if system_prompt else []) + ["user", "assistant"]
    parts = [singles.select(message(r, pl.col(f"_{r}")))["m"] for r in roles]
    out = singles.select("_i").with_columns(_stack(parts))
    if chats.height:
        out = pl.concat([out, _conversations(chats, system_prompt)]).sort("_i")
    return out["messages"]


def _placeholder_values() -> dict[str, pl.Expr]:
    """_question, _options, _context, _subject per row; a conversation: its first user turn, no options/context."""
    turns, has_turns, subject = pl.col("turns"), pl.col("_has_turns"), pl.col("subject")
    return {
        "_question": pl.when(has_turns).then(turns.list.get(pl.col("_first")).struct.field("content").fill_null("None"))
        .otherwise(pl.col("question").fill_null("")),
        "_options": pl.when(has_turns).then(pl.lit("")).otherwise(_options_text()),
        "_context": pl.when(has_turns).then(pl.lit("")).otherwise(pl.col("context").fill_null("")),
        "_subject": pl.when(subject.fill_null("") == "")
        .then(pl.col("_key").replace_strict(DEFAULT_SUBJECT, default="answer", return_dtype=pl.Utf8))
        .otherwise(subject),
    }


def _stack(parts: list[pl.Series]) -> pl.Series:
    """Row i's messages = parts[0][i], parts[1][i], ...: one gather and a reshape. (`concat_list` of struct
    columns took 0.88 s per 100k two-message rows, this 0.006 s.)"""
    rows, k = len(parts[0]), len(parts)
    if not rows:
        return pl.Series("messages", [], dtype=pl.List(MESSAGE))
    order = pl.select((pl.int_range(k * rows) // k) + (pl.int_range(k * rows) % k) * rows).to_series()
    return pl.concat(parts).gather(order).reshape((rows, k)).cast(pl.List(MESSAGE)).alias("messages")


def _conversations(chats: pl.DataFrame, system_prompt: str | None) -> pl.DataFrame:
    """(_i, messages): every turn kept, the first user turn's content replaced by `_user`; the system prompt
    first unless the conversation starts with its own. Exploded and re-imploded (per-row list slicing took
    0.74 s per 100k rows)."""
    turns = chats.select("_i", "_first", "_user", pl.col("turns").cast(pl.List(MESSAGE)),
                         pl.col("turns").list.eval(pl.int_range(pl.len())).alias("_pos"))
    long = turns.explode("turns", "_pos").unnest("turns").select(
        "_i", "_pos", "role",
        pl.when(pl.col("_pos") == pl.col("_first")).then(pl.col("_user")).otherwise(pl.col("content")).alias("content"))
    if system_prompt:
        own = pl.col("turns").list.first().struct.field("role") == "system"
        system = chats.filter(~own.fill_null(False)).select(
            "_i", pl.lit(-1, dtype=long["_pos"].dtype).alias("_pos"), pl.lit("system").alias("role"),
            pl.lit(system_prompt).alias("content"))
        long = pl.concat([system, long]).sort("_i", "_pos", maintain_order=True)
    return long.group_by("_i", maintain_order=True).agg(pl.struct("role", "content").alias("messages"))


def check_turns(work: pl.DataFrame) -> None:
    """A conversation needs a user turn to template (the row renderer raised StopIteration)."""
    if "turns" not in work.columns:
        return
    bad = work.filter((pl.col("turns").list.len() > 0)
                      & ~pl.col("turns").list.eval(pl.element().struct.field("role") == "user").list.any())
    if bad.height:
        raise ValueError(f"template: {bad.height} conversation(s) have no user turn (first: row id "
                         f"{bad['id'][0]!r}); run the `validate` step before `template` or fix the source rows")
